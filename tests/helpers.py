"""The one set of helpers the tests share: run start.py, reserve ports, request, watch process trees.

Servers are started through `start_server` (or `Server`), made ready with `Server.wait_ready`, asked with
`request`/`get_json`, stopped with `stop`; processes are read through `proc_stat` (the one /proc/N/stat
parser) and `session_processes`; the cgroup v1 fixture is `cgroup` in conftest.py.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
START = REPO / "start.py"
APPS = Path(__file__).resolve().parent / "apps"
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian")


def granian_usable() -> bool:
    """Whether this interpreter has a Granian start.py accepts (2.6 or newer), as start.py reads its version."""
    import start

    return start.installed_version("granian") >= (2, 6)


def clean_env(**overrides: str) -> dict[str, str]:
    """A minimal environment, so that nothing from the developer's shell leaks into a test."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT") if key in os.environ}
    env.update(overrides)
    return env


# Sockets holding the ports handed out by reserve_port(); closed after each test (conftest.py).
RESERVED: list[socket.socket] = []


def reserve_port() -> int:
    """A TCP port held for the rest of the test, so that nothing else can take it before the server binds it.

    The port is bound (on every address, IPv4 and IPv6) with SO_REUSEADDR and never listens: the kernel
    then hands it to no one else, neither to bind(0) nor as a connection's local port, while a server
    binding it with SO_REUSEADDR, as Gunicorn, Uvicorn, Hypercorn, Granian and start.py all do, still
    can, on 127.0.0.1, 0.0.0.0 or ::. Nothing listens on it until a server does: connecting is refused.
    (A bind-close-rebind "free port" leaves a window in which any other process can take the port.)
    """
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:  # no IPv6 here (a container without it)
        sock = None
    try:
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", 0))
    except OSError:
        sock.close()
        sock = None
    if sock is None:  # IPv4's every address
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
    RESERVED.append(sock)
    return int(sock.getsockname()[1])


def release_ports() -> None:
    while RESERVED:
        RESERVED.pop().close()


def local_env(**env: str | None) -> dict[str, str]:
    """clean_env with HOST=127.0.0.1 and a reserved PORT (unless env has a BIND, or its own); None drops a name."""
    settings: dict[str, str | None] = {}
    if "BIND" not in env:
        settings["HOST"] = "127.0.0.1"
        if "PORT" not in env:
            settings["PORT"] = str(reserve_port())
    settings.update(env)
    return clean_env(**{key: value for key, value in settings.items() if value is not None})


def run_start(
    args: list[str], env: dict[str, str], cwd: Path, python: str = sys.executable, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(START), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def dry_run(env: dict[str, str], cwd: Path, start: Path = START, preexec_fn=None) -> dict:
    result = subprocess.run(
        [sys.executable, str(start), "--dry-run"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=preexec_fn,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def copy_app(tmp_path: Path, name: str = "basic", layout: str = "main.py") -> Path:
    """The test app copied into tmp_path as `main.py` or `app/main.py`; returns the app directory."""
    app_dir = tmp_path / "srv"
    target = app_dir / layout
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / name / "main.py", target)
    return app_dir


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def insecure_tls() -> ssl.SSLContext:
    """A client context that takes the test's own self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def connection(
    port: int,
    host: str = "127.0.0.1",
    tls: bool | ssl.SSLContext | None = None,
    uds: str | None = None,
    timeout: float = 10,
) -> http.client.HTTPConnection:
    """An HTTP connection (never through a proxy from the environment): TCP, TLS (True: any certificate) or a Unix socket."""
    if uds:
        return UnixHTTPConnection(uds, timeout)
    if tls:
        context = insecure_tls() if tls is True else tls
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def request(
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    tls: bool | ssl.SSLContext | None = None,
    uds: str | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], str]:
    """One GET on a fresh connection: status, headers (lower-case names), body as text."""
    conn = connection(port, host, tls, uds, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def get_json(port: int, path: str = "/", headers: dict[str, str] | None = None, **kwargs) -> dict:
    """One GET that must answer 200; its body as JSON."""
    status, _, body = request(port, path, headers, **kwargs)
    assert status == 200, body[-2000:]
    return json.loads(body)


class ProcStat(NamedTuple):
    """The fields of /proc/N/stat the tests read (after the command name, which may hold spaces and ')')."""

    state: str
    ppid: int
    pgrp: int
    session: int


def proc_stat(pid: int | str) -> ProcStat | None:
    """The one /proc/N/stat parser: state, parent pid, process group, session; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]))


def live_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def session_processes(session: int) -> list[int]:
    """Live (not zombie) processes of a session: each server is started in its own, so this finds every
    process of its tree, also those spawned after a signal or orphaned."""
    found = []
    for pid in live_pids():
        stat = proc_stat(pid)
        if stat is not None and stat.state != "Z" and stat.session == session:
            found.append(pid)
    return found


def children(pid: int) -> list[int]:
    found = []
    for child in live_pids():
        stat = proc_stat(child)
        if stat and stat.ppid == pid and stat.state != "Z":
            found.append(child)
    return sorted(found)


def descendants(pid: int) -> list[int]:
    result, queue = [], [pid]
    while queue:
        kids = children(queue.pop())
        result += kids
        queue += kids
    return result


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def pid_namespaces_work() -> bool:
    """Whether `unshare --pid` works here (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    try:
        subprocess.run(
            ["unshare", "--pid", "--fork", "--kill-child", "true"], check=True, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


# start.py as PID 1 of a new PID namespace, as in a container: the Server's pid is unshare, PID 1 its child.
PID1 = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, str(START)]


def namespace_pid(pid: int) -> int:
    """The PID a process has in its own (innermost) PID namespace: what it reports of itself (`/pid`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid


def worker_pids(pid: int) -> list[int]:
    """The server's worker processes: its children, less multiprocessing's resource tracker."""
    return [child for child in children(pid) if "resource_tracker" not in " ".join(cmdline(child))]


def wait_for_workers(pid: int, count: int, deadline_s: float = 20) -> list[int]:
    deadline = time.monotonic() + deadline_s
    workers = worker_pids(pid)
    while time.monotonic() < deadline and len(workers) != count:
        time.sleep(0.1)
        workers = worker_pids(pid)
    return workers


def all_gone(pids: list[int], deadline_s: float = 10) -> list[int]:
    """The pids still alive (not zombies) after waiting up to deadline_s."""
    deadline = time.monotonic() + deadline_s
    alive = pids
    while True:
        alive = [pid for pid in alive if (stat := proc_stat(pid)) is not None and stat.state != "Z"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def listening_port(env: dict[str, str]) -> int:
    """Where a test talks to the server: PORT, else the port of BIND's first HOST:PORT; 0 if neither."""
    if env.get("PORT"):
        return int(env["PORT"])
    first = (env.get("BIND") or "").split(",")[0]
    _, colon, tail = first.rpartition(":")
    return int(tail) if colon and tail.isdigit() and not first.startswith(("unix:", "fd:")) else 0


class Server:
    """`python start.py` (or `command`) started for real, in its own session (and process group) so nothing
    outlives the test; its stdout and stderr go to files beside app_dir."""

    def __init__(
        self,
        app_dir: Path,
        env: dict[str, str],
        start: Path = START,
        args: tuple[str, ...] = (),
        preexec_fn=None,
        command: list[str] | None = None,
    ) -> None:
        self.port = listening_port(env)
        self.log_dir = app_dir.parent
        self.stdout = open(self.log_dir / "stdout.log", "w+")  # noqa: SIM115 -- closed in kill_all()
        self.stderr = open(self.log_dir / "stderr.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            command or [sys.executable, str(start), *args],
            cwd=app_dir,
            env=env,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        self.pid = self.process.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_answer(
        self, path: str = "/", deadline_s: float = 40, port: int | None = None, **kwargs
    ) -> tuple[int, dict[str, str], str]:
        """The first answer on 127.0.0.1 (status, headers, body; kwargs: `request`'s tls, uds, host, headers);
        fails at once, with the server's output, if it exits first; `deadline_s` only stops a hung test."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                return request(port or self.port, path, timeout=2, **kwargs)
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        raise AssertionError(f"no answer on port {port or self.port} within {deadline_s}s:\n{self.output()[-3000:]}")

    def wait_ready(self, path: str = "/", deadline_s: float = 40, **kwargs) -> tuple[int, str]:
        """(status, body) of the first answer: see wait_answer."""
        status, _, body = self.wait_answer(path, deadline_s, **kwargs)
        return status, body

    def output(self) -> str:
        self.stdout.flush()
        self.stderr.flush()
        return (self.log_dir / "stdout.log").read_text() + (self.log_dir / "stderr.log").read_text()

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill_all(self) -> None:
        """Last resort for a failed test: kill the whole process group by its id."""
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.stdout.close()
        self.stderr.close()


def start_server(
    servers: list,
    app_dir: Path,
    env: dict[str, str],
    *,
    wait: bool = False,
    port: int | None = None,
    server_class: type[Server] = Server,
    ready: dict | None = None,
    expect_status: int | None = None,
    **options,
) -> Server:
    """The one runner: `python start.py` in app_dir with env (see local_env), put in `servers` (the conftest
    fixture kills whatever is left); `port` overrides where the test talks to it; with `wait`, only returned
    once it answers (`ready`: Server.wait_ready's arguments), with `expect_status` if given.
    options: Server's start, args, preexec_fn, command."""
    server = server_class(app_dir, env, **options)
    if port is not None:
        server.port = port
    servers.append(server)
    if wait:
        status, _ = server.wait_ready(**(ready or {}))
        assert expect_status is None or status == expect_status, server.output()
    return server


def uvicorn_alone(pid: int) -> bool:
    """Whether the process is Uvicorn in one process (which re-raises SIGTERM after its shutdown, README)."""
    argv = as_python_m(cmdline(pid))
    return argv[1:3] == ["-m", "uvicorn"] and "--workers" in argv and argv[argv.index("--workers") + 1] == "1"


def stop(server: Server, timeout: float = 30, uvicorn_reraise: bool = False) -> str:
    """SIGTERM by PID: exit status 0 (with uvicorn_reraise, also -SIGTERM from Uvicorn in one process) and the
    whole process tree gone; the server's output."""
    tree = descendants(server.pid)
    reraise_ok = uvicorn_reraise and uvicorn_alone(server.pid)
    status = server.terminate(timeout=timeout)
    assert status == 0 or (reraise_ok and status == -signal.SIGTERM), f"{status}\n{server.output()[-3000:]}"
    assert all_gone([server.pid, *tree]) == []
    return server.output()


def wait_until(predicate, deadline_s: float = 15, step: float = 0.05):
    """Poll predicate until it returns something true or the deadline passes; its last result."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def wait_for_output(server: Server, text: str, deadline_s: float = 15) -> str:
    """The server's output once it holds text (bounded)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        output = server.output()
        if text in output:
            return output
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the output within {deadline_s}s:\n{server.output()[-3000:]}")


def wait_until_workers_serve(url: str, count: int, deadline_s: float = 15) -> set[str]:
    """PIDs seen answering /pid on fresh connections, until `count` different workers have answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + deadline_s
    while len(seen) < count and time.monotonic() < deadline:
        try:
            seen.add(http_get(url, timeout=2)[1])
        except OSError:
            time.sleep(0.05)
    return seen


CGROUP_V1 = Path("/sys/fs/cgroup")


def cgroup_v1_writable(controller: str) -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and os.access(CGROUP_V1 / controller, os.W_OK)


def join_cgroup(path: Path):
    """A preexec_fn moving the child into a cgroup v1 directory before exec, so start.py already sees its limits."""

    def enter() -> None:
        (path / "cgroup.procs").write_text(str(os.getpid()))

    return enter


def as_python_m(argv: list[str]) -> list[str]:
    """A planned or running server's argv, as the `python -m SERVER ARGS...` it amounts to: start.py execs
    `python RUNTIME/hand_over.py [--fork-guard] SERVER ARGS...`, which runs the server's module so."""
    assert argv[1].endswith("/hand_over.py"), argv
    rest = argv[2:]
    if rest[:1] == ["--fork-guard"]:
        rest = rest[1:]
    return [argv[0], "-m", *rest]
