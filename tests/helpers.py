"""Helpers shared by the tests: run start.py, find free ports, watch process trees."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def wait_for_http(url: str, process: subprocess.Popen, deadline_s: float = 30) -> tuple[int, str]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before answering")
        try:
            return http_get(url, timeout=2)
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"no answer from {url} within {deadline_s}s")


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry))
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
        alive = [pid for pid in alive if (stat := proc_stat(pid)) is not None and stat[0] != "Z"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


class Server:
    """`python start.py` started for real, in its own process group so nothing outlives the test."""

    def __init__(
        self, app_dir: Path, env: dict[str, str], start: Path = START, args: tuple[str, ...] = (), preexec_fn=None
    ) -> None:
        self.port = int(env.get("PORT") or 0)
        self.log_dir = app_dir.parent
        self.stdout = open(self.log_dir / "stdout.log", "w+")  # noqa: SIM115 -- closed in stop()
        self.stderr = open(self.log_dir / "stderr.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(start), *args],
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

    def wait_ready(self, path: str = "/", deadline_s: float = 30) -> tuple[int, str]:
        return wait_for_http(self.url(path), self.process, deadline_s)

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
