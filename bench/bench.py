#!/usr/bin/env python3
"""asgi-start benchmark: launch overhead, time to first 200, throughput/p99, memory, CPU quota.

Run it through `bash bench/run.sh` (which makes the pinned venvs). Standard library only.

Rules kept throughout:
- every number that is compared is a ratio between runs of the same run of this script, with
  interleaved repetitions (round r runs A B C ..., round r+1 runs ... C B A) and medians;
- load goes to 127.0.0.1 only (HOST below), from wrk, bounded in time; every poll loop has a deadline;
- every server is started in its own session (process group) and stopped by that group's id;
  groups still alive at exit, on error or on Ctrl-C are killed; the cgroup made for case 5 is removed.

`--targets` (bash bench/run.sh --targets [--quick]) measures only the four performance targets of
issue 8 in one interleaved run under the image's conditions (the Dockerfile's CMD, files and
compileall mirrored into a snapshot; PYTHONDONTWRITEBYTECODE=1; a fresh empty TMPDIR per start) and
writes bench/TARGETS.md: time to first 200 start.py/direct, launcher code loaded per server process
(-X importtime plus a sitecustomize probe), --dry-run over `python -c pass`, and req/s start.py/direct
with the access log off. See "The targets of issue 8" in bench/README.md.

The launches are data (CASES below). To add an environment variant, add one line, e.g.
    Case("gunicorn LOG_FORMAT=json", "gunicorn", "start", "gunicorn", {"LOG_FORMAT": "json"}, vs="gunicorn start.py")
and it is run, measured (req/s, p99, memory) and put in the tables with its ratio to `vs`.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"  # the only address anything here listens on or connects to
BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APP_DIR = os.path.join(BENCH, "app")
START_PY = os.path.join(REPO, "start.py")  # replaced in main() by a snapshot taken at the start of the run
LAUNCHER_FILES = ("start.py", "gunicorn_conf.py", "hypercorn_conf.py")
CGROUP_CPU = "/sys/fs/cgroup/cpu"


class Case:
    """One way of starting a server.

    launcher: "start"         python start.py [-- server_args]               (the thing measured)
              "direct"        the equivalent hand-written command line, derived from start.py --dry-run
                              with no config file (every setting a flag), Uvicorn binding its own socket
              "direct-argv"   exactly the argv and env that --dry-run prints (config file included)
              "inboard"       python -m inboard.start, inboard's own defaults (the anchor)
              "direct-wrapped" the direct command, but serving start.py's proxy-headers wrapper around the
                              app (Granian: --factory asgi_start:granian_app), with the module written out
                              from start.py and nothing else of the launcher: the wrapper's own cost
    extra_env: variables added to the launch (start.py's or inboard's contract); the direct
               commands are derived from start.py's plan under the same variables.
    vs:        the case this one's ratios are taken against (None: it is a reference), or a tuple of
               cases: the first is the main one, the others are shown beside it.
    goal:      "tput>=0.97" / "ahead" / "ttfr<=1.05" style goals checked against `vs`.
    """

    def __init__(
        self,
        name,
        group,
        launcher,
        server,
        extra_env=None,
        server_args=(),
        *,
        path="/",
        vs=None,
        goal=None,
        ttfr=False,
        load=True,
        cgroup=False,
        note="",
    ):
        self.name, self.group, self.launcher, self.server = name, group, launcher, server
        self.extra_env = dict(extra_env or {})
        self.server_args = tuple(server_args)
        self.also = tuple(vs[1:]) if isinstance(vs, tuple) else ()
        vs = vs[0] if isinstance(vs, tuple) else vs
        self.path, self.vs, self.goal, self.ttfr, self.load, self.cgroup = path, vs, goal, ttfr, load, cgroup
        self.note = note


NO_LOG = {"ACCESS_LOG": ""}
SLOW = ("--loop", "asyncio", "--http", "h11")
CASES = [
    # --- gunicorn (default server) ---
    Case("gunicorn start.py", "gunicorn", "start", "gunicorn", ttfr=True, vs="gunicorn direct", goal="parity"),
    Case("gunicorn direct", "gunicorn", "direct", "gunicorn", ttfr=True),
    Case(
        "gunicorn direct-argv",
        "gunicorn",
        "direct-argv",
        "gunicorn",
        ttfr=True,
        load=False,
        note="the --dry-run argv itself: -c gunicorn_conf.py, which re-reads start.py",
    ),
    Case(
        "gunicorn inboard",
        "gunicorn",
        "inboard",
        "gunicorn",
        ttfr=True,
        vs="gunicorn start.py",
        goal="ahead",
        note="inboard 0.99 defaults (its gunicorn 26.2, its UvicornWorker, launcher resident)",
    ),
    Case("gunicorn LOG_FORMAT=json", "gunicorn", "start", "gunicorn", {"LOG_FORMAT": "json"}, vs="gunicorn start.py"),
    Case(
        "gunicorn ACCESS_LOG=''",
        "gunicorn",
        "start",
        "gunicorn",
        NO_LOG,
        vs=("gunicorn start.py", "gunicorn direct ACCESS_LOG=''"),
    ),
    Case(
        "gunicorn direct ACCESS_LOG=''",
        "gunicorn",
        "direct",
        "gunicorn",
        NO_LOG,
        note="the hand-written command without --access-logfile",
    ),
    Case(
        "gunicorn UvicornH11Worker",
        "gunicorn",
        "start",
        "gunicorn",
        {"WORKER_CLASS": "uvicorn_worker.UvicornH11Worker"},
        vs="gunicorn start.py",
    ),
    Case(
        "gunicorn WORKER_CLASS=asgi", "gunicorn", "start", "gunicorn", {"WORKER_CLASS": "asgi"}, vs="gunicorn start.py"
    ),
    Case(
        "gunicorn start.py /json",
        "gunicorn",
        "start",
        "gunicorn",
        path="/json",
        vs="gunicorn direct /json",
        goal="parity",
    ),
    Case("gunicorn direct /json", "gunicorn", "direct", "gunicorn", path="/json"),
    # --- uvicorn ---
    Case("uvicorn start.py", "uvicorn", "start", "uvicorn", ttfr=True, vs="uvicorn direct", goal="parity"),
    Case("uvicorn direct", "uvicorn", "direct", "uvicorn", ttfr=True),
    Case(
        "uvicorn inboard",
        "uvicorn",
        "inboard",
        "uvicorn",
        {"PROCESS_MANAGER": "uvicorn"},
        vs="uvicorn start.py",
        goal="ahead",
        note="inboard's uvicorn mode: uvicorn.run() in the launcher, 1 process",
    ),
    Case("uvicorn LOG_FORMAT=json", "uvicorn", "start", "uvicorn", {"LOG_FORMAT": "json"}, vs="uvicorn start.py"),
    Case("uvicorn ACCESS_LOG=''", "uvicorn", "start", "uvicorn", NO_LOG, vs="uvicorn start.py"),
    Case(
        "uvicorn asyncio+h11",
        "uvicorn",
        "start",
        "uvicorn",
        server_args=SLOW,
        vs="uvicorn start.py",
        note="start.py hands uvicorn a pre-bound TCP_NODELAY socket",
    ),
    Case(
        "uvicorn direct asyncio+h11",
        "uvicorn",
        "direct",
        "uvicorn",
        server_args=SLOW,
        vs="uvicorn asyncio+h11",
        note="uvicorn binds itself: Nagle + delayed ACK",
    ),
    # --- hypercorn ---
    Case("hypercorn start.py", "hypercorn", "start", "hypercorn", ttfr=True, vs="hypercorn direct", goal="parity"),
    Case("hypercorn direct", "hypercorn", "direct", "hypercorn", ttfr=True),
    Case(
        "hypercorn direct-argv",
        "hypercorn",
        "direct-argv",
        "hypercorn",
        ttfr=True,
        load=False,
        note="the --dry-run argv itself: -c file:hypercorn_conf.py",
    ),
    Case(
        "hypercorn LOG_FORMAT=json", "hypercorn", "start", "hypercorn", {"LOG_FORMAT": "json"}, vs="hypercorn start.py"
    ),
    Case("hypercorn ACCESS_LOG=''", "hypercorn", "start", "hypercorn", NO_LOG, vs="hypercorn start.py"),
    Case(
        "hypercorn WORKER_CLASS=uvloop",
        "hypercorn",
        "start",
        "hypercorn",
        {"WORKER_CLASS": "uvloop"},
        vs="hypercorn start.py",
    ),
    # --- granian ---
    Case("granian start.py", "granian", "start", "granian", ttfr=True, vs="granian direct", goal="parity"),
    Case("granian direct", "granian", "direct", "granian", ttfr=True),
    Case(
        "granian ACCESS_LOG=''",
        "granian",
        "start",
        "granian",
        NO_LOG,
        vs=("granian direct ACCESS_LOG=''", "granian start.py"),
        goal="parity",
    ),
    Case(
        "granian direct ACCESS_LOG=''",
        "granian",
        "direct",
        "granian",
        NO_LOG,
        note="the hand-written command with --no-access-log, serving main:app itself",
    ),
    Case(
        "granian wrapper only ACCESS_LOG=''",
        "granian",
        "direct-wrapped",
        "granian",
        NO_LOG,
        vs=("granian direct ACCESS_LOG=''", "granian ACCESS_LOG=''"),
        note="the direct command serving `--factory asgi_start:granian_app` (ASGI_START_APP=main:app): "
        "the launcher's proxy-headers/port wrapper without the rest of the launcher",
    ),
    # --- the four servers side by side, through start.py, one interleaved group ---
    *(
        Case(
            f"4 servers: {server}{label}",
            "4 servers",
            "start",
            server,
            extra,
            ttfr=not extra,
            vs=None if server == "granian" else f"4 servers: granian{label}",
        )
        for extra, label in (({}, ""), (NO_LOG, " ACCESS_LOG=''"))
        for server in ("gunicorn", "uvicorn", "hypercorn", "granian")
    ),
    # --- case 5: a 1-CPU cgroup v1 quota on this machine, WORKERS_PER_CORE=2 ---
    Case("quota start.py", "quota", "start", "gunicorn", {"WORKERS_PER_CORE": "2"}, cgroup=True),
    Case(
        "quota start.py, host CPU count",
        "quota",
        "start",
        "gunicorn",
        {"WORKERS_PER_CORE": "2", "PYTHON_CPU_COUNT": str(os.cpu_count())},
        cgroup=True,
        vs="quota start.py",
        note="same launcher, the anchors' rule (multiprocessing.cpu_count())",
    ),
    Case("quota inboard", "quota", "inboard", "gunicorn", {"WORKERS_PER_CORE": "2"}, cgroup=True, vs="quota start.py"),
]
CASES_BY_NAME = {case.name: case for case in CASES}
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian")

# Modules whose import by start.py would break the promise "no server or app module".
FORBIDDEN_IMPORTS = (
    "gunicorn",
    "uvicorn",
    "uvicorn_worker",
    "hypercorn",
    "granian",
    "h11",
    "httptools",
    "uvloop",
    "main",
    "asyncio",
    "logging",
    "subprocess",
    "typing",
    "dataclasses",
    "pathlib",
    "multiprocessing",
)


# --------------------------------------------------------------------------
# processes: every launch is a session; the groups are killed on any exit
# --------------------------------------------------------------------------

LIVE_GROUPS: set[int] = set()


def pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def kill_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the group, wait up to `grace` s, then SIGKILL it; return once it is empty (bounded)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and pids_in_group(pgid):
            time.sleep(0.02)
        if not pids_in_group(pgid):
            break
    LIVE_GROUPS.discard(pgid)


def kill_all_groups() -> None:
    for pgid in list(LIVE_GROUPS):
        kill_group(pgid, grace=2.0)


def join_cgroup(cgroup: str):
    def preexec() -> None:  # in the child before exec, so the launcher already sees the quota
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as file:
            file.write(str(os.getpid()))

    return preexec


class Server:
    """A launched server process tree (its own session); `stop()` ends the whole group.

    Its stdout and stderr go to a pipe that a thread drains, as a container runtime's log driver
    does (a file on this machine's shared disk was a noisier sink); the first 256 KiB and the
    last 32 KiB are kept for the report and for diagnostics.
    """

    HEAD, TAIL = 256 * 1024, 32 * 1024

    def __init__(self, argv, env, cgroup=None, head=None):
        self.head, self.tail, self.bytes = bytearray(), bytearray(), 0
        self.env = env
        if head is not None:
            self.HEAD = head
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=APP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=join_cgroup(cgroup) if cgroup else None,
        )
        LIVE_GROUPS.add(self.proc.pid)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.bytes += len(chunk)
            if len(self.head) < self.HEAD:
                self.head += chunk[: self.HEAD - len(self.head)]
            self.tail += chunk
            if len(self.tail) > 2 * self.TAIL:
                del self.tail[: len(self.tail) - self.TAIL]

    def output_head(self) -> str:
        return bytes(self.head).decode(errors="replace")

    def stop(self, grace: float = 5.0) -> float:
        started = time.perf_counter()
        kill_group(self.proc.pid, grace)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.reader.join(timeout=5)
        self.proc.stdout.close()
        return time.perf_counter() - started

    def log_tail(self, lines=15) -> str:
        return b"\n".join(bytes(self.tail).splitlines()[-lines:]).decode(errors="replace")


def http_status(port: int, path: str, timeout: float) -> int | None:
    """One GET on a fresh connection; the status code, or None if nothing answered (yet)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(request)
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else None


def wait_first_200(server: Server, port: int, path: str = "/", limit: float = 30.0) -> float:
    """Seconds from the launch to the first 200: a tight loop of connects (1 ms apart), bounded."""
    deadline = server.t0 + limit
    while True:
        now = time.perf_counter()
        if now > deadline:
            raise RuntimeError(f"no 200 within {limit:.0f} s\n{server.log_tail()}")
        if server.proc.poll() is not None:
            raise RuntimeError(f"exited with {server.proc.returncode} before answering\n{server.log_tail()}")
        if http_status(port, path, timeout=max(0.05, deadline - now)) == 200:
            return time.perf_counter() - server.t0
        time.sleep(0.001)


def assert_loopback_only(port: int) -> None:
    """Refuse to go on if anything listens on `port` at an address other than 127.0.0.1."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port and address != "0100007F":
                raise RuntimeError(f"something listens on port {port} at {address} ({table}), not 127.0.0.1 only")


_next_port = [23100 + os.getpid() % 1000]


def free_port() -> int:
    """A port nothing uses on 127.0.0.1, never reused within a run (no TIME_WAIT surprises)."""
    for _ in range(500):
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


# --------------------------------------------------------------------------
# /proc: the process tree, its memory and roles
# --------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def process_tree(root: int) -> dict[int, dict]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
        if not cmdline:
            continue
        tree[pid] = {"cmdline": cmdline, "children": sorted(children.get(pid, []))}
        todo += children.get(pid, [])
    return tree


def kib(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def roles(tree: dict[int, dict], root: int) -> dict[int, str]:
    out = {}
    for pid, info in tree.items():
        cmd = info["cmdline"]
        leaf = not [c for c in info["children"] if c in tree]
        if "resource_tracker" in cmd:
            out[pid] = "tracker"
        elif pid == root and ("start.py" in cmd or "inboard.start" in cmd):
            out[pid] = "launcher+server" if leaf else "launcher"
        elif leaf:
            out[pid] = "worker"
        else:
            out[pid] = "master"
    return out


def measure_memory(root: int) -> dict:
    tree = process_tree(root)
    role = roles(tree, root)
    procs = []
    for pid in tree:
        status, rollup = _read(f"/proc/{pid}/status"), _read(f"/proc/{pid}/smaps_rollup")
        procs.append(
            {
                "pid": pid,
                "role": role[pid],
                "rss": kib(status, "VmRSS"),
                "pss": kib(rollup, "Pss"),
                "cmd": tree[pid]["cmdline"][:120],
            }
        )
    workers = [p for p in procs if p["role"] in ("worker", "launcher+server")]
    launcher = [p for p in procs if p["role"].startswith("launcher")]
    return {
        "processes": len(procs),
        "workers": len(workers),
        "rss_kib": sum(p["rss"] for p in procs),
        "pss_kib": sum(p["pss"] for p in procs),
        "worker_pss_kib": statistics.median([p["pss"] for p in workers]) if workers else 0,
        "worker_rss_kib": statistics.median([p["rss"] for p in workers]) if workers else 0,
        "launcher_rss_kib": sum(p["rss"] for p in launcher if p["role"] == "launcher"),
        "launcher_pss_kib": sum(p["pss"] for p in launcher if p["role"] == "launcher"),
        "root_cmd": tree.get(root, {}).get("cmdline", "")[:160],
        "procs": procs,
    }


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(root: int) -> tuple[float, float, float, float]:
    """(wall s, machine busy s, this tree's CPU s, this script's + its reaped children's CPU s)."""
    fields = _read("/proc/stat").split("\n")[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / CLK_TCK
    tree = 0.0
    for pid in process_tree(root):
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            rest = stat.rsplit(")", 1)[1].split()
            tree += (int(rest[11]) + int(rest[12])) / CLK_TCK
    t = os.times()
    return time.monotonic(), busy, tree, t.user + t.system + t.children_user + t.children_system


def foreign_cpu_share(before, after) -> float:
    """Share of the machine's CPUs used by anything but the server tree, wrk and this script."""
    wall = after[0] - before[0]
    ours = (after[2] - before[2]) + (after[3] - before[3])
    return max(0.0, (after[1] - before[1]) - ours) / (wall * os.cpu_count())


def settle(server: Server, limit: float = 8.0, quiet: float = 0.6) -> None:
    """Wait until the tree's PID set has not changed for `quiet` s and its PSS is steady (bounded)."""
    deadline = time.perf_counter() + limit
    last, since, last_pss = None, time.perf_counter(), None
    while time.perf_counter() < deadline:
        pids = frozenset(process_tree(server.proc.pid))
        now = time.perf_counter()
        if pids != last:
            last, since = pids, now
        elif now - since >= quiet:
            pss = measure_memory(server.proc.pid)["pss_kib"]
            if last_pss and abs(pss - last_pss) <= 0.02 * last_pss:
                return
            last_pss = pss
        time.sleep(0.1)


# --------------------------------------------------------------------------
# commands: start.py, its --dry-run, the direct equivalents, inboard
# --------------------------------------------------------------------------


def without_generated(argv: list[str], generated: list[str]) -> list[str]:
    """argv minus every value naming a file start.py generates (and the flag before it)."""
    out: list[str] = []
    for item in argv:
        if any(path in item for path in generated):
            if out and out[-1].startswith("-") and "=" not in out[-1]:
                out.pop()
            continue
        out.append(item)
    return out


class Runner:
    def __init__(self, args, work, image=None):
        self.args, self.work = args, work
        self.py = os.path.join(args.servers_venv, "bin", "python")
        self.inboard_py = os.path.join(args.inboard_venv, "bin", "python") if args.inboard_venv else None
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        # image=None: the classic run (TMPDIR shared by every launch, python start.py).
        # image=ImageLayout: the image's conditions, as in `--targets`: its PYTHON* environment
        # (PYTHONDONTWRITEBYTECODE=1 always), a fresh empty TMPDIR for every start, its CMD as the argv.
        self.image = image
        self.tmp_root = os.path.join(work, "tmp")
        os.makedirs(self.tmp_root, exist_ok=True)
        self.start_argv = image.cmd if image else [self.py, START_PY]
        # start.py alone (no config file beside it): its plan puts every setting on the command line,
        # which is the hand-written "direct" command line.
        self.alone = os.path.join(work, "alone")
        os.makedirs(self.alone, exist_ok=True)
        for name in image.files if image else ("start.py",):
            if not (image and image.is_config(name)):
                shutil.copy2(os.path.join(os.path.dirname(START_PY), name), self.alone)
        self.launches = 0

    def wrapper_dir(self) -> str:
        """A directory holding only the module `asgi_start` (with its bytecode), written from start.py's
        own runtime_module_source(): what start.py's runtime directory serves the app through."""
        directory = os.path.join(self.work, "wrapper")
        if not os.path.isdir(directory):
            os.makedirs(directory)
            code = (
                "import importlib.util as u, sys\n"
                "spec = u.spec_from_file_location('asgi_start_launcher', sys.argv[1])\n"
                "module = u.module_from_spec(spec)\n"
                "spec.loader.exec_module(module)\n"
                "sys.stdout.write(module.runtime_module_source())\n"
            )
            done = subprocess.run(
                [self.py, "-c", code, os.path.join(self.alone, "start.py")],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            path = os.path.join(directory, "asgi_start.py")
            with open(path, "w") as file:
                file.write(done.stdout)
            subprocess.run([self.py, "-m", "compileall", "-q", path], check=True, timeout=60)
        return directory

    def fresh_tmpdir(self) -> str:
        return tempfile.mkdtemp(prefix="t", dir=self.tmp_root)

    def clean_tmpdirs(self) -> None:
        for entry in os.listdir(self.tmp_root):
            shutil.rmtree(os.path.join(self.tmp_root, entry), ignore_errors=True)

    def env(self, venv: str, extra: dict) -> dict:
        env = {
            "PATH": f"{os.path.join(venv, 'bin')}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "TMPDIR": self.work,
        }
        if self.image:
            env.update(self.image.env)
            env["TMPDIR"] = self.fresh_tmpdir()
        env.update(extra)
        return env

    def dry_run(self, case: Case, port: int, start_py: str | None = None, cgroup: str | None = None) -> dict:
        start_py = start_py or START_PY
        extra = {"HOST": HOST, "PORT": str(port), "SERVER": case.server, **case.extra_env}
        argv = [self.py, start_py, "--dry-run"] + (["--", *case.server_args] if case.server_args else [])
        if start_py == START_PY:
            argv = list(self.start_argv) + argv[2:]
        done = subprocess.run(
            argv,
            env=self.env(self.args.servers_venv, extra),
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=join_cgroup(cgroup) if cgroup else None,
        )
        if done.returncode != 0:
            raise RuntimeError(f"--dry-run failed ({done.returncode}): {done.stderr}")
        return json.loads(done.stdout)

    def command(self, case: Case, port: int, cgroup: str | None = None) -> tuple[list[str], dict, int]:
        """(argv, env, expected worker count) for one launch of `case` on `port`."""
        contract = {"HOST": HOST, "PORT": str(port), **case.extra_env}
        if case.launcher == "inboard":
            env = self.env(self.args.inboard_venv, {"APP_MODULE": "main:app", **contract})
            wpc = float(case.extra_env.get("WORKERS_PER_CORE", "1"))
            workers = 1 if case.server == "uvicorn" else max(int(wpc * os.cpu_count()), 2)  # its rule
            return [self.inboard_py, "-m", "inboard.start"], env, workers
        if case.launcher == "start":
            argv = list(self.start_argv) + (["--", *case.server_args] if case.server_args else [])
            env = self.env(self.args.servers_venv, {"SERVER": case.server, **contract})
            return argv, env, self.dry_run(case, port, cgroup=cgroup)["workers"]
        if case.launcher == "direct-argv":
            plan = self.dry_run(case, port)
            if plan.get("prebound_socket"):
                raise RuntimeError("direct-argv cannot reproduce a pre-bound socket")
            env = self.env(self.args.servers_venv, {"SERVER": case.server, **contract, **plan["env"]})
            return plan["argv"], env, plan["workers"]
        # "direct": what someone would type, derived from start.py's own plan without a config file:
        # every setting as a flag, minus what points into start.py's generated runtime directory
        # (its logging configuration), so the server logs with its own defaults
        plan = self.dry_run(case, port, os.path.join(self.alone, "start.py"))
        generated = [p for p in [plan.get("runtime_dir"), *plan.get("files", [])] if p]
        argv = without_generated(plan["argv"], generated)
        if case.server == "gunicorn" and "GUNICORN_CMD_ARGS" in plan["env"]:
            # GUNICORN_CMD_ARGS (start.py alone) -> the same flags on the command line
            argv = argv[:3] + without_generated(shlex.split(plan["env"]["GUNICORN_CMD_ARGS"]), generated) + argv[3:]
        wrapped = plan["env"].get("ASGI_START_APP")
        keep_wrapper = case.launcher == "direct-wrapped"
        if wrapped and argv and argv[-1].startswith("asgi_start:") and not keep_wrapper:
            # Hypercorn and Granian by hand serve the app itself, not start.py's proxy-headers wrapper
            argv = [*argv[:-1], wrapped]
            if argv[-2] == "--factory":  # Granian: the wrapper is a factory, the app is not
                del argv[-2]
        if case.server == "uvicorn" and "--fd" in argv:
            # Uvicorn binds the address itself, as `uvicorn --host --port` does
            index = argv.index("--fd")
            argv[index : index + 2] = ["--host", HOST, "--port", str(port)]
        kept = ("ASGI_START_APP", "ASGI_START_FORWARDED_ALLOW_IPS") if keep_wrapper else ()
        env = {
            k: v
            for k, v in plan["env"].items()
            if k != "GUNICORN_CMD_ARGS"
            and (k in kept or not k.startswith("ASGI_START_"))
            and not any(g in v for g in generated)
        }
        if keep_wrapper:
            # only the module `asgi_start` on the path: no sitecustomize, no logging configuration
            path = (self.image.env if self.image else {}).get("PYTHONPATH")
            env["PYTHONPATH"] = self.wrapper_dir() + (os.pathsep + path if path else "")
        # the same environment start.py would have exec'd the server with (the flags win anyway)
        return argv, self.env(self.args.servers_venv, {"SERVER": case.server, **contract, **env}), plan["workers"]

    def launch(
        self, case: Case, port: int, cgroup: str | None = None, argv_prefix=(), env_update=None, head=None
    ) -> tuple[Server, int, list]:
        argv, env, workers = self.command(case, port, cgroup)
        if argv_prefix:
            argv = [argv[0], *argv_prefix, *argv[1:]]
        if env_update:
            env = env_update(env)
        self.launches += 1
        return Server(argv, env, cgroup=cgroup, head=head), workers, argv


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------


def interleaved(names: list[str], rounds: int):
    """(round, name) in A B C / C B A / A B C order."""
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            yield r, name


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def hyperfine(commands: list[list[str]], env: dict, runs: int, warmup: int, out: str) -> list[dict]:
    argv = [
        "hyperfine",
        "-N",
        "--style",
        "none",
        "--warmup",
        str(warmup),
        "--runs",
        str(runs),
        "--export-json",
        out,
    ] + [shlex.join(c) for c in commands]
    subprocess.run(
        argv, env=env, cwd=APP_DIR, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120
    )
    with open(out) as file:
        return json.load(file)["results"]


def import_times(stderr: str) -> dict[str, tuple[int, int]]:
    """-X importtime lines -> {module: (self µs, cumulative µs)}."""
    out = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            out[match.group(4)] = (int(match.group(1)), int(match.group(2)))
    return out


def case1_launch(runner: Runner, args) -> dict:
    env = runner.env(args.servers_venv, {})
    # diagnostic: the same file imported as a module (`python -m start`), whose bytecode is cached in
    # __pycache__, unlike a script run by path, which the interpreter compiles on every start
    module_dir = os.path.join(runner.work, "module")
    os.makedirs(module_dir, exist_ok=True)
    for name in ("start.py", "gunicorn_conf.py", "hypercorn_conf.py"):
        shutil.copy(os.path.join(os.path.dirname(START_PY), name), module_dir)
    commands = {
        "bare": [runner.py, "-c", "pass"],
        "start": [runner.py, START_PY, "--dry-run"],
        "module": [runner.py, "-m", "start", "--dry-run"],
    }
    names = list(commands)
    result = {"servers": {}}
    for server in SERVERS:
        env_s = dict(env, SERVER=server, PYTHONPATH=module_dir)
        times: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {}
        extra_per_round = []
        for r in range(args.launch_rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate: each command leads once
            measured = hyperfine(
                [commands[n] for n in order], env_s, args.launch_runs, 3, os.path.join(runner.work, "hf.json")
            )
            per = {name: run["times"] for name, run in zip(order, measured)}
            for name, run in zip(order, measured):
                times[name] += run["times"]
                cpu.setdefault(name, []).append(run["user"] + run["system"])
            extra_per_round.append((statistics.median(per["start"]) - statistics.median(per["bare"])) * 1000)
        bare = statistics.median(times["bare"])
        result["servers"][server] = {
            "start_ms": statistics.median(times["start"]) * 1000,
            "bare_ms": bare * 1000,
            "module_ms": statistics.median(times["module"]) * 1000,
            "extra_ms": (statistics.median(times["start"]) - bare) * 1000,
            "module_extra_ms": (statistics.median(times["module"]) - bare) * 1000,
            "extra_round_ms": extra_per_round,
            "runs": len(times["start"]),
            "cpu_extra_ms": (statistics.median(cpu["start"]) - statistics.median(cpu["bare"])) * 1000,
            "module_cpu_extra_ms": (statistics.median(cpu["module"]) - statistics.median(cpu["bare"])) * 1000,
        }

    # what start.py imports beyond the bare interpreter (-X importtime), for --dry-run
    def imports(argv, extra):
        done = subprocess.run(
            [runner.py, "-X", "importtime", *argv],
            env=dict(env, **extra),
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return import_times(done.stderr)

    base = set(imports(["-c", "pass"], {}))
    result["imports"] = {}
    for server in SERVERS:
        totals, mods = [], {}
        for _ in range(5):
            mods = {m: t for m, t in imports([START_PY, "--dry-run"], {"SERVER": server}).items() if m not in base}
            totals.append(sum(t[0] for t in mods.values()))
        result["imports"][server] = {
            "modules": sorted(mods),
            "total_us": statistics.median(totals),
            "forbidden": sorted(m for m in mods if m.split(".")[0] in FORBIDDEN_IMPORTS),
        }
    result["imports_base_count"] = len(base)
    return result


def case2_ttfr(runner: Runner, args) -> dict:
    out: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for case in CASES:
        if case.ttfr:
            groups.setdefault(case.group, []).append(case.name)
    for _group, names in groups.items():
        for r, name in interleaved(names, args.ttfr_rounds):
            case = CASES_BY_NAME[name]
            port = free_port()
            server, _, argv = runner.launch(case, port)
            rec = out.setdefault(name, {"ms": [], "argv": argv, "stop_s": []})
            try:
                rec["ms"].append(wait_first_200(server, port) * 1000)
                assert_loopback_only(port)
            finally:
                rec["stop_s"].append(server.stop(grace=0.5))
            log(f"  ttfr {name:<28} round {r + 1}: {rec['ms'][-1]:.0f} ms")
    # the modules a real start (not --dry-run) imports before exec: -X importtime applies to start.py
    # only, since the exec'd server is a fresh interpreter without -X
    out["_real_start_imports"] = {}
    base = set(
        import_times(
            subprocess.run(
                [runner.py, "-X", "importtime", "-c", "pass"],
                capture_output=True,
                text=True,
                env=runner.env(args.servers_venv, {}),
            ).stderr
        )
    )
    for server in SERVERS:
        case = CASES_BY_NAME[f"{server} start.py"]
        port = free_port()
        srv, _, _ = runner.launch(case, port, argv_prefix=("-X", "importtime"))
        try:
            wait_first_200(srv, port)
        finally:
            srv.stop()
        mods = {m: t for m, t in import_times(srv.output_head()).items() if m not in base}
        out["_real_start_imports"][server] = {
            "modules": sorted(mods),
            "total_us": sum(t[0] for t in mods.values()),
            "forbidden": sorted(m for m in mods if m.split(".")[0] in FORBIDDEN_IMPORTS),
        }
    return out


def parse_wrk(text: str) -> dict:
    def seconds(value, unit):
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    out = {"rps": None, "p50_ms": None, "p99_ms": None, "non2xx": 0, "socket_errors": 0, "requests": 0}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["rps"] = float(match.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if match := re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\b", text, re.M):
            out[key] = seconds(match.group(1), match.group(2)) * 1000
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        out["non2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out["socket_errors"] = sum(int(g) for g in match.groups())
    if match := re.search(r"(\d+) requests in", text):
        out["requests"] = int(match.group(1))
    return out


def wrk(port: int, path: str, seconds: float, args) -> dict:
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        f"http://{HOST}:{port}{path}",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    LIVE_GROUPS.add(proc.pid)
    try:
        text, _ = proc.communicate(timeout=seconds + 15)
    finally:
        kill_group(proc.pid, grace=1.0)
        proc.wait(timeout=5)
    result = parse_wrk(text)
    if result["rps"] is None:
        raise RuntimeError(f"wrk said:\n{text}")
    return result


def cgroup_create(args) -> str | None:
    if os.geteuid() != 0 or not os.access(CGROUP_CPU, os.W_OK):
        return None
    path = os.path.join(CGROUP_CPU, f"asgi-start-bench-{os.getpid()}")
    os.mkdir(path)
    with open(os.path.join(path, "cpu.cfs_period_us"), "w") as file:
        file.write("100000")
    with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as file:
        file.write(str(int(args.quota * 100000)))
    return path


def cgroup_remove(path: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _read(os.path.join(path, "cgroup.procs")).split():
            os.rmdir(path)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{path} still has processes: {_read(os.path.join(path, 'cgroup.procs'))}")


def case3_load(runner: Runner, args, cgroup: str | None) -> dict:
    out: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for case in CASES:
        if case.load and (not case.cgroup or cgroup):
            groups.setdefault(case.group, []).append(case.name)
    for _group, names in groups.items():
        for r, name in interleaved(names, args.rounds):
            case = CASES_BY_NAME[name]
            port = free_port()
            server, expected, argv = runner.launch(case, port, cgroup=cgroup if case.cgroup else None)
            rec = out.setdefault(name, {"runs": [], "mem": [], "argv": argv, "expected_workers": expected})
            try:
                wait_first_200(server, port, case.path)
                assert_loopback_only(port)
                settle(server)
                mem = measure_memory(server.proc.pid)
                rec["mem"].append(mem)
                warm = wrk(port, case.path, args.warmup, args)
                before = cpu_snapshot(server.proc.pid)
                run = wrk(port, case.path, args.duration, args)
                after = cpu_snapshot(server.proc.pid)
                run["foreign_cpu"] = foreign_cpu_share(before, after)
                # the server tree's own CPU per request: far less sensitive to other work than req/s
                run["cpu_us_per_request"] = (after[2] - before[2]) / max(1, run["requests"]) * 1e6
                run["log_bytes_per_request"] = server.bytes / max(1, warm["requests"] + run["requests"])
                rec["runs"].append(run)
                summary = re.search(r"^.*asgi-start.*\bworkers? = .*$", server.output_head(), re.M)
                rec["summary"] = summary.group(0) if summary else None
            finally:
                server.stop()
            log(
                f"  load {name:<32} round {r + 1}: {run['rps']:>8.0f} req/s  p99 {run['p99_ms']:.2f} ms  "
                f"workers {mem['workers']}/{expected}  PSS {mem['pss_kib'] / 1024:.0f} MiB  "
                f"other CPU {run['foreign_cpu']:.0%}  server CPU {run['cpu_us_per_request']:.0f} µs/req"
                + (f"  non-2xx {run['non2xx']}" if run["non2xx"] else "")
                + (f"  socket errors {run['socket_errors']}" if run["socket_errors"] else "")
            )
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine(args) -> dict:
    cpu = re.search(r"^model name\s*:\s*(.*)$", _read("/proc/cpuinfo"), re.M)

    def versions(venv, names):
        code = (
            "import importlib.metadata as m, sys, json; out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))"
        )
        done = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c", code, *names], capture_output=True, text=True, timeout=30
        )
        return json.loads(done.stdout or "{}")

    python = subprocess.run(
        [os.path.join(args.servers_venv, "bin", "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "-C", REPO, "status", "--porcelain", "--", "start.py", "gunicorn_conf.py", "hypercorn_conf.py"],
        capture_output=True,
        text=True,
    ).stdout
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": python.strip(),
        "servers": versions(
            args.servers_venv,
            ["gunicorn", "uvicorn", "uvicorn-worker", "hypercorn", "granian", "uvloop", "httptools", "h11"],
        ),
        "inboard": versions(args.inboard_venv, ["inboard", "gunicorn", "uvicorn", "uvloop", "httptools"])
        if args.inboard_venv
        else {},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" [")[0],
        "hyperfine": subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.strip()
        if shutil.which("hyperfine")
        else "",
        "repo": REPO,
        "loadavg_start": " ".join(_read("/proc/loadavg").split()[:3]),
        "cpu_pressure_start": _read("/proc/pressure/cpu").split("\n")[0].replace("some ", ""),
        "git": git.strip() + (" + uncommitted changes to start.py or a config file" if dirty.strip() else ""),
        "start_sha256": sha256_of(START_PY),
    }


def sha256_of(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()[:16]


def fmt(value, spec=".0f", unit=""):
    return "–" if value is None else f"{value:{spec}}{unit}"


def ratio_stats(a_runs, b_runs):
    """Median and range of per-round ratios a/b (rounds paired by index)."""
    ratios = [a / b for a, b in zip(a_runs, b_runs) if a and b]
    if not ratios:
        return None, None, None
    return statistics.median(ratios), min(ratios), max(ratios)


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def report(info: dict, res: dict, args, elapsed: float) -> str:
    head, lines = [], []
    add = head.append
    m = info
    add("# asgi-start benchmark results\n")
    add(
        f"Generated by `bash bench/run.sh` on {m['date']} in {elapsed / 60:.1f} min. "
        "Every figure compared is a ratio between launches of this same run, taken in interleaved rounds "
        "(A B C, C B A, …) and reported as the median of the per-round ratios with their range; "
        "absolute numbers describe this machine only.\n"
    )
    add("| machine | |\n|---|---|")
    add(f"| CPU | {m['cpu']} ({m['cores']} CPUs, {m['affinity']} usable) |")
    add(f"| kernel | {m['kernel']} |")
    add(f"| Python | {m['python']} |")
    add("| servers (requirements/dev.txt) | " + ", ".join(f"{k} {v}" for k, v in m["servers"].items()) + " |")
    add("| anchor (bench/requirements-inboard.txt) | " + ", ".join(f"{k} {v}" for k, v in m["inboard"].items()) + " |")
    add(
        f"| load | {m['wrk']}, `-t{args.threads} -c{args.connections}`, {args.warmup} s warm-up + "
        f"{args.duration} s measured, {args.rounds} rounds; {m['hyperfine']} |"
    )
    add(f"| asgi-start | commit {m['git']}; start.py sha256 {m['start_sha256']}… |")
    add(f"| load average (1/5/15 min) | at start {m['loadavg_start']}; at end {m.get('loadavg_end', '?')} |")
    add(f"| CPU pressure (PSI some) | at start {m['cpu_pressure_start']}; at end {m.get('cpu_pressure_end', '?')} |\n")
    add = lines.append
    goals = []
    # ---- 1
    c1 = res.get("launch")
    if c1:
        add("## 1. Launch overhead: `python start.py --dry-run` vs `python -c pass`\n")
        add(
            "| SERVER | `-c pass` ms | start.py --dry-run ms | extra ms (median) | per-round extra | goal < 15 ms | "
            "extra CPU ms (user+sys) | diagnostic: `python -m start --dry-run` (cached bytecode): extra ms, extra CPU ms |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for server, s in c1["servers"].items():
            ok = s["extra_ms"] < 15
            goals.append((f"1. launch overhead ({server})", f"+{s['extra_ms']:.1f} ms", ok))
            add(
                f"| {server} | {s['bare_ms']:.1f} | {s['start_ms']:.1f} | **{s['extra_ms']:+.1f}** | "
                f"{min(s['extra_round_ms']):+.1f} … {max(s['extra_round_ms']):+.1f} | {verdict(ok)} | "
                f"{s['cpu_extra_ms']:+.1f} | {s['module_extra_ms']:+.1f}, {s['module_cpu_extra_ms']:+.1f} |"
            )
        add(
            f"\n{next(iter(c1['servers'].values()))['runs']} runs per command and SERVER, "
            f"in {args.launch_rounds} hyperfine rounds (command order rotated). CPU time (the median of the "
            "rounds' mean user+sys) is less sensitive than wall time to other work on the machine. A script run "
            "by path is compiled on every start (its bytecode is never cached); the diagnostic column runs the "
            "same file as an imported module, whose bytecode is cached in `__pycache__`.\n"
        )
        add(
            "Modules `start.py --dry-run` imports beyond the bare interpreter's "
            f"({c1['imports_base_count']} modules), from `-X importtime` (self time, median of 5):\n"
        )
        add("| SERVER | modules | total µs | server/app/heavy module imported |")
        add("|---|---|---|---|")
        for server, s in c1["imports"].items():
            ok = not s["forbidden"]
            goals.append(
                (f"1. no server/app module imported ({server}, --dry-run)", ", ".join(s["forbidden"]) or "none", ok)
            )
            add(
                f"| {server} | {', '.join(f'`{x}`' for x in s['modules'])} | {s['total_us']:.0f} | "
                f"{', '.join(s['forbidden']) or 'none'} |"
            )
        real = res.get("ttfr", {}).get("_real_start_imports")
        if real:
            add("\nA real start (not `--dry-run`) imports, before it execs the server:\n")
            add("| SERVER | modules | total µs | server/app/heavy module imported |")
            add("|---|---|---|---|")
            for server, s in real.items():
                goals.append(
                    (
                        f"1. no server/app module imported ({server}, real start)",
                        ", ".join(s["forbidden"]) or "none",
                        not s["forbidden"],
                    )
                )
                add(
                    f"| {server} | {', '.join(f'`{x}`' for x in s['modules'])} | {s['total_us']:.0f} | "
                    f"{', '.join(s['forbidden']) or 'none'} |"
                )
        add("")
    # ---- 2
    c2 = res.get("ttfr")
    if c2:
        add("## 2. Time to first 200 (process start → first `HTTP/1.1 200` on a fresh connection)\n")
        add("| launch | median ms | per-round ms | ratio start.py / this (median, range) | goal ≤ 1.05 |")
        add("|---|---|---|---|---|")
        for case in CASES:
            if case.name not in c2:
                continue
            rec = c2[case.name]
            ref_name = f"{case.server} start.py" if case.group != "quota" else None
            cell, ok = "", None
            if case.launcher in ("direct", "direct-argv", "inboard") and ref_name in c2:
                r, lo, hi = ratio_stats(c2[ref_name]["ms"], rec["ms"])
                cell = f"{r:.3f} ({lo:.2f} … {hi:.2f})"
                if case.launcher == "direct":
                    ok = r <= 1.05
                    goals.append((f"2. time to first 200, {case.server}: start.py / direct", f"{r:.3f}", ok))
                elif case.launcher == "direct-argv":
                    goals.append(
                        (
                            f"2. time to first 200, {case.server}: start.py / its own --dry-run argv",
                            f"{r:.3f}",
                            r <= 1.05,
                        )
                    )
                    ok = r <= 1.05
            add(
                f"| {case.name} | {med(rec['ms']):.0f} | {' '.join(f'{x:.0f}' for x in rec['ms'])} | {cell} | "
                f"{verdict(ok) if case.launcher != 'inboard' else '(anchor)'} |"
            )
        add(
            "\n`direct` is the hand-written equivalent (start.py's plan with every setting as a flag, no "
            "config file; Uvicorn with `--host/--port`); `direct-argv` is exactly the argv `--dry-run` prints "
            "(Gunicorn/Hypercorn with the default config file, which loads start.py again inside the server).\n"
        )
    # ---- 3 and 4
    c3 = res.get("load")
    if c3:
        add(f"## 3. Throughput and p99 latency (`wrk -t{args.threads} -c{args.connections}` on 127.0.0.1)\n")
        add(
            "| launch | path | workers | log B/req | other CPU | req/s (median) | p50 ms | p99 ms | server CPU µs/req | "
            "vs | req/s ratio (range) | p99 ratio | server CPU/req ratio (range) | goal |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for case in CASES:
            if case.name not in c3 or case.group == "quota":
                continue
            rec = c3[case.name]
            rps = [run["rps"] for run in rec["runs"]]
            p99 = [run["p99_ms"] for run in rec["runs"]]
            workers = med([mm["workers"] for mm in rec["mem"]])
            cpu = [run["cpu_us_per_request"] for run in rec["runs"]]
            cells = ["–", "–", "–", "–"]
            goal = ""
            if case.vs in c3:
                cells = ["", "", "", ""]
                for n, other in enumerate((case.vs, *case.also)):
                    if other not in c3:
                        continue
                    ref = c3[other]
                    r, lo, hi = ratio_stats(rps, [run["rps"] for run in ref["runs"]])
                    rp, _, _ = ratio_stats(p99, [run["p99_ms"] for run in ref["runs"]])
                    rc, clo, chi = ratio_stats(cpu, [run["cpu_us_per_request"] for run in ref["runs"]])
                    new = [
                        other,
                        f"**{r:.3f}** ({lo:.2f} … {hi:.2f})",
                        f"{rp:.2f}",
                        f"{rc:.3f} ({clo:.2f} … {chi:.2f})",
                    ]
                    cells = [f"{a}<br>{b}" if a else b for a, b in zip(cells, new)]
                    if n == 0:
                        main_r, main_rc = r, rc
                if case.goal == "parity":
                    ok = main_r >= 0.97
                    goals.append(
                        (
                            f"3. req/s {case.name} / {case.vs}",
                            f"{main_r:.3f} (server CPU per request: {main_rc:.3f})",
                            ok,
                        )
                    )
                    goal = "≥ 0.97: " + verdict(ok)
                elif case.goal == "ahead":
                    ok = main_r < 1.0
                    goals.append(
                        (
                            f"3. req/s {case.vs} / {case.name} (the anchor) > 1",
                            f"{1 / main_r:.3f} (server CPU per request: {1 / main_rc:.3f})",
                            ok,
                        )
                    )
                    goal = "anchor / start.py < 1: " + verdict(ok)
            errors = sum(run["non2xx"] + run["socket_errors"] for run in rec["runs"])
            add(
                f"| {case.name}{' ⚠ ' + str(errors) + ' errors' if errors else ''} | `{case.path}` | "
                f"{workers:g} | {med([run['log_bytes_per_request'] for run in rec['runs']]):.0f} | "
                f"{med([run['foreign_cpu'] for run in rec['runs']]):.0%} | {med(rps):.0f} | "
                f"{med([run['p50_ms'] for run in rec['runs']]):.2f} | {med(p99):.2f} | {med(cpu):.0f} | "
                f"{cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {goal} |"
            )
        notes = [f"- *{c.name}*: {c.note}" for c in CASES if c.note and c.name in c3 and c.group != "quota"]
        add(
            "\nRatios are this launch's over the `vs` launch's (req/s: > 1 is faster; p99: < 1 is better). "
            "*other CPU* is the median share of the machine's CPU time used during the measured seconds by "
            "processes other than the server tree, wrk and this script (from /proc/stat): work that was not "
            "ours and that the launches competed with. *server CPU µs/req* is the CPU time (user+sys) of the "
            "server's process tree per request during the measured seconds: on this shared machine it is a "
            "steadier measure of what a configuration costs than req/s, which follows the CPU left over."
        )
        if notes:
            add("\n" + "\n".join(notes))
        add("\n## 4. Memory after start-up (idle, whole process tree; PSS from `/proc/<pid>/smaps_rollup`)\n")
        add(
            "| launch | processes | workers | PSS MiB | RSS MiB (sum) | PSS per worker MiB | resident launcher | "
            "PSS vs | PSS ratio |"
        )
        add("|---|---|---|---|---|---|---|---|---|")
        for case in CASES:
            if case.name not in c3 or case.group == "quota" or case.path != "/" or case.launcher == "direct-argv":
                continue
            mem = c3[case.name]["mem"]
            pss = [mm["pss_kib"] for mm in mem]
            launcher = med([mm["launcher_rss_kib"] for mm in mem])
            roles_ = {p["role"] for p in mem[0]["procs"]}
            resident = (
                f"yes, RSS {launcher / 1024:.0f} MiB"
                if launcher
                else ("launcher is the server" if "launcher+server" in roles_ else "none")
            )
            vs, cell = "", ""
            if case.vs in c3:
                r, lo, hi = ratio_stats(pss, [mm["pss_kib"] for mm in c3[case.vs]["mem"]])
                vs, cell = case.vs, f"{r:.3f} ({lo:.2f} … {hi:.2f})"
            add(
                f"| {case.name} | {med([mm['processes'] for mm in mem]):g} | {med([mm['workers'] for mm in mem]):g} | "
                f"{med(pss) / 1024:.1f} | {med([mm['rss_kib'] for mm in mem]) / 1024:.1f} | "
                f"{med([mm['worker_pss_kib'] for mm in mem]) / 1024:.1f} | {resident} | {vs} | {cell} |"
            )
            if case.name == f"{case.server} start.py":
                ok = launcher == 0 and all("start.py" not in mm["root_cmd"] for mm in mem)
                goals.append(
                    (
                        f"4. no resident launcher after start.py ({case.server})",
                        f"PID {'is' if ok else 'is not'} the server: `{mem[0]['root_cmd'][:60]}…`",
                        ok,
                    )
                )
        add(
            "\nThe launched PID's command line after start-up shows that start.py exec'd: "
            + "; ".join(
                f"{c.server}: `{c3[c.name]['mem'][0]['root_cmd'][:90]}`"
                for c in CASES
                if c.launcher == "start" and c.name in c3 and c.name == f"{c.server} start.py"
            )
            + ".\n"
        )
        # ---- 5
        quota = [c for c in CASES if c.group == "quota" and c.name in c3]
        if quota:
            add(
                f"## 5. Worker count under a {args.quota:g}-CPU cgroup v1 quota "
                f"(cpu.cfs_quota_us={int(args.quota * 100000)}, period 100000) on this {os.cpu_count()}-CPU machine, "
                "WORKERS_PER_CORE=2\n"
            )
            add(
                "| launch | workers | PSS MiB | req/s | p50 ms | p99 ms | server CPU µs/req | req/s ratio vs start.py | "
                "p99 ratio | PSS ratio |"
            )
            add("|---|---|---|---|---|---|---|---|---|---|")
            base = c3.get("quota start.py")
            for case in quota:
                rec = c3[case.name]
                rps = [run["rps"] for run in rec["runs"]]
                p99 = [run["p99_ms"] for run in rec["runs"]]
                pss = [mm["pss_kib"] for mm in rec["mem"]]
                cells = ["", "", ""]
                if base and case.vs:
                    r, lo, hi = ratio_stats(rps, [run["rps"] for run in base["runs"]])
                    rp, plo, phi = ratio_stats(p99, [run["p99_ms"] for run in base["runs"]])
                    rm, _, _ = ratio_stats(pss, [mm["pss_kib"] for mm in base["mem"]])
                    cells = [f"{r:.3f} ({lo:.2f} … {hi:.2f})", f"{rp:.2f} ({plo:.2f} … {phi:.2f})", f"{rm:.2f}"]
                add(
                    f"| {case.name} | {med([mm['workers'] for mm in rec['mem']]):g} | {med(pss) / 1024:.1f} | "
                    f"{med(rps):.0f} | {med([run['p50_ms'] for run in rec['runs']]):.2f} | {med(p99):.2f} | "
                    f"{med([run['cpu_us_per_request'] for run in rec['runs']]):.0f} | " + " | ".join(cells) + " |"
                )
            if base and base.get("summary"):
                add(f"\nstart.py's summary line inside the cgroup: `{base['summary']}`")
            notes = [f"- *{c.name}*: {c.note}" for c in quota if c.note]
            add("\n" + "\n".join(notes) + "\n")
        elif res.get("quota_skipped"):
            add(f"## 5. Worker count under a CPU quota\n\nSkipped: {res['quota_skipped']}\n")
    # ---- the four servers side by side
    side = [c for c in CASES if c.group == "4 servers" and c.name in (c3 or {})]
    if side:
        add("## The four servers side by side (start.py, same app, one interleaved group)\n")
        add(
            "| server | access log | req/s: median (min … max) | req/s / granian (range) | p99 ms | "
            "server CPU µs/req: median (min … max) | CPU/req / granian (range) | PSS MiB | RSS MiB | processes | "
            "time to first 200 ms: median (min … max) | log B/req |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")

        def span(values, spec=".0f"):
            return f"**{med(values):{spec}}** ({min(values):{spec}} … {max(values):{spec}})"

        best = {}
        for case in side:
            rec = c3[case.name]
            rps = [run["rps"] for run in rec["runs"]]
            cpu = [run["cpu_us_per_request"] for run in rec["runs"]]
            ref = c3.get(case.vs) if case.vs else None
            ratio = cpu_ratio = "–"
            if ref:
                r, lo, hi = ratio_stats(rps, [run["rps"] for run in ref["runs"]])
                ratio = f"{r:.3f} ({lo:.2f} … {hi:.2f})"
                r, lo, hi = ratio_stats(cpu, [run["cpu_us_per_request"] for run in ref["runs"]])
                cpu_ratio = f"{r:.3f} ({lo:.2f} … {hi:.2f})"
            ttfr = (c2 or {}).get(case.name, {}).get("ms")
            log_on = "ACCESS_LOG" not in case.extra_env
            best.setdefault(log_on, []).append((med(rps), med(cpu), case.server))
            errors = sum(run["non2xx"] + run["socket_errors"] for run in rec["runs"])
            add(
                f"| {case.server}{' ⚠ ' + str(errors) + ' errors' if errors else ''} | {'on' if log_on else 'off'} | "
                f"{span(rps)} | {ratio} | {med([run['p99_ms'] for run in rec['runs']]):.2f} | {span(cpu)} | "
                f"{cpu_ratio} | {med([mm['pss_kib'] for mm in rec['mem']]) / 1024:.1f} | "
                f"{med([mm['rss_kib'] for mm in rec['mem']]) / 1024:.1f} | "
                f"{med([mm['processes'] for mm in rec['mem']]):g} | {span(ttfr) if ttfr else '–'} | "
                f"{med([run['log_bytes_per_request'] for run in rec['runs']]):.0f} |"
            )
        for log_on, rows in best.items():
            by_rps = sorted(rows, reverse=True)
            by_cpu = sorted(rows, key=lambda row: row[1])
            add(
                f"\nAccess log {'on' if log_on else 'off'}: by req/s "
                + " > ".join(f"{server} {rps:.0f}" for rps, _c, server in by_rps)
                + "; by server CPU per request "
                + " < ".join(f"{server} {cpu:.0f} µs" for _r, cpu, server in by_cpu)
                + "."
            )
        add(
            "\nRatios are per round (this server / granian in the same round). All eight launches of the group "
            "are interleaved in each round (A B C …, then … C B A), so drift on the machine hits them alike; "
            "memory is the whole tree after start-up, before load.\n"
        )
    # ---- the exact command lines
    launched = {}
    for key in ("ttfr", "load"):
        for name, rec in (res.get(key) or {}).items():
            if name in CASES_BY_NAME and "argv" in rec:
                launched.setdefault(name, rec["argv"])
    if launched:
        add("## Launches\n")
        add(
            "The exact argv of each launch (PORT is a fresh port per launch; HOST=127.0.0.1, PORT and SERVER "
            "are in every environment, inboard's with APP_MODULE=main:app; the working directory is bench/app).\n"
        )
        add("| launch | extra environment | argv |")
        add("|---|---|---|")
        for case in CASES:
            if case.name in launched:
                argv = " ".join(shlex.quote(a) for a in launched[case.name])
                argv = re.sub(r"\S*/bin/python", "python", argv).replace(os.path.dirname(START_PY) + "/", "")
                argv = re.sub(r"(127\.0\.0\.1:|--port )\d+", r"\1PORT", argv)
                env = " ".join(f"{k}={shlex.quote(v)}" for k, v in case.extra_env.items())
                add(f"| {case.name} | `{env}` | `{argv}` |" if env else f"| {case.name} | | `{argv}` |")
        add("")
    # ---- goals
    summary = ["## Goals\n", "| goal | measured | |", "|---|---|---|"]
    summary += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in goals]
    return "\n".join(head + summary + [""] + lines) + "\n"


# --------------------------------------------------------------------------
# --targets: the performance targets of issue 8, in one interleaved run, under the image's conditions
# --------------------------------------------------------------------------

TARGET_SERVERS = SERVERS
TTFR_GOAL, IMPORT_GOAL_MS, DRYRUN_GOAL_MS, TPUT_GOAL = 1.05, 2.0, 15.0, 0.97


class ImageLayout:
    """What the Dockerfile does with the launcher, mirrored into the snapshot directory.

    files:    the repository files the image copies to `/` (start.py, the config files, ...), by name
    compiled: the Dockerfile's python build steps on those files (compileall, py_compile), run on the
              snapshot ("/x" -> snapshot/x, also inside strings and as a prefix: "/start.pyc")
    cmd:      the image's CMD, "python" -> the servers venv, "/x" -> snapshot/x
    env:      the image's PYTHON* variables (PYTHONPATH's WORKDIR -> bench/app), PYTHONDONTWRITEBYTECODE=1
    """

    def __init__(self) -> None:
        self.files: list[str] = []
        self.compiled: list[str] = []
        self.cmd: list[str] = []
        self.cmd_image = ""
        self.env: dict[str, str] = {}
        self.notes: list[str] = []

    @staticmethod
    def is_config(name: str) -> bool:
        return name.endswith("_conf.py")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    return [(line.split(None, 1)[0].upper(), [*line.split(None, 1), ""][1].strip()) for line in joined]


def image_layout(repo: str, snapshot: str, python: str) -> ImageLayout:
    layout = ImageLayout()
    dockerfile = os.path.join(repo, "Dockerfile")
    copied: dict[str, str] = {}  # path in the image -> path in the repository
    raw_env: dict[str, str] = {}
    compile_runs: list[str] = []
    cmd = ""
    workdir = "/"
    for keyword, rest in dockerfile_instructions(_read(dockerfile)):
        if keyword == "WORKDIR":
            workdir = rest
        elif keyword == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep and key.startswith("PYTHON"):
                    raw_env[key] = value
        elif keyword == "COPY":
            tokens = shlex.split(rest)
            if any(t.startswith("--from") for t in tokens):
                continue
            tokens = [t for t in tokens if not t.startswith("--")]
            if len(tokens) < 2:
                continue
            *sources, dest = tokens
            for source in sources:
                if not os.path.isfile(os.path.join(repo, source)):
                    continue
                if dest == "/":
                    copied["/" + os.path.basename(source)] = source
                elif dest.startswith("/") and dest.count("/") == 1 and len(sources) == 1:
                    copied[dest] = source
        elif keyword == "RUN":
            compile_runs.append(rest)
        elif keyword == "CMD":
            cmd = rest
    if not copied:
        layout.notes.append(f"no launcher COPY to / found in {dockerfile}: using {', '.join(LAUNCHER_FILES)}")
        copied = {"/" + name: name for name in LAUNCHER_FILES}
    for image_path, source in copied.items():
        shutil.copy2(os.path.join(repo, source), os.path.join(snapshot, image_path[1:]))
        layout.files.append(image_path[1:])

    # "/start.py" -> "<snapshot>/start.py", also as a prefix ("/start.pyc") and inside a string
    image_paths = re.compile(
        r"(?<![\w./-])(" + "|".join(re.escape(p) for p in sorted(copied, key=len, reverse=True)) + r")"
    )

    def to_snapshot(text: str) -> str:
        return image_paths.sub(lambda m: os.path.join(snapshot, m.group(1)[1:]), text)

    # The build steps on the launcher files: each `python ...` command of a RUN that names one of them
    # (compileall, py_compile, ...), run with the servers' interpreter on the snapshot. Other commands
    # (useradd, venv, pip) are not the launcher's and are not run.
    for run in compile_runs:
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        parts: list[list[str]] = [[]]
        for token in lexer:
            if token in ("&&", ";", "||"):
                parts.append([])
            else:
                parts[-1].append(token)
        for tokens in parts:
            if not tokens or not any(image_paths.search(t) for t in tokens):
                continue
            if not os.path.basename(tokens[0]).startswith("python"):
                layout.notes.append(f"build step not run (not python): `{shlex.join(tokens)}`")
                continue
            subprocess.run(
                [python, *(to_snapshot(t) for t in tokens[1:])],
                check=True,
                capture_output=True,
                timeout=60,
                cwd=snapshot,
            )
            layout.compiled.append(" ".join(["python", *tokens[1:]]))
    if cmd:
        argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
        layout.cmd_image = shlex.join(argv)
        layout.cmd = [
            python if i == 0 and os.path.basename(a).startswith("python") else to_snapshot(a)
            for i, a in enumerate(argv)
        ]
    if not layout.cmd or not os.path.isabs(layout.cmd[0]) or not any(a.startswith(snapshot) for a in layout.cmd):
        layout.notes.append(f"no usable exec-form CMD in {dockerfile}: using python /start.py")
        layout.cmd_image = "python /start.py"
        layout.cmd = [python, os.path.join(snapshot, "start.py")]
    for key, value in raw_env.items():
        if key == "PYTHONPATH":
            parts = []
            for entry in value.split(":"):
                if entry.rstrip("/") == workdir.rstrip("/"):
                    parts.append(APP_DIR)
                elif entry == "/":
                    parts.append(snapshot)
                elif entry:
                    layout.notes.append(f"PYTHONPATH entry {entry} of the image has no counterpart here: dropped")
            if parts:
                layout.env[key] = ":".join(parts)
        else:
            layout.env[key] = value
    layout.env["PYTHONDONTWRITEBYTECODE"] = "1"
    return layout


# Installed as sitecustomize.py (its directory first on PYTHONPATH) in the import-time launches only.
# In every Python process of the launch (start.py before its exec, the server, its workers, spawned
# or forked) it: sends this process's stderr, where -X importtime writes, to a file of its own; and
# times every module load that goes through a file loader (imports, and config files that the
# servers load by path with spec_from_file_location, which -X importtime does not see), writing one
# record per load of a file in the launcher's directories (start.py's snapshot, this start's TMPDIR).
PROBE_SOURCE = r"""
import os, sys
_out = os.environ.get("ASGI_START_BENCH_PROBE")
if _out:
    import _frozen_importlib_external as _ext
    from time import perf_counter_ns as _now

    _dirs = tuple(d.rstrip("/") + "/" for d in os.environ.get("ASGI_START_BENCH_LAUNCHER", "").split(os.pathsep) if d)
    _me = {}
    _stack = []  # per load in progress: [start ns, nested loads ns, probe overhead at start, launcher name or None]
    _overhead = [0]

    def _begin(forked):
        _me["token"] = f"{os.getpid()}-{_now()}"
        fd = os.open(os.path.join(_out, f"stderr-{_me['token']}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        with open(os.path.join(_out, f"meta-{_me['token']}.txt"), "w") as file:
            file.write(repr({"pid": os.getpid(), "ppid": os.getppid(), "forked": forked, "argv": list(sys.orig_argv)}))

    _begin(False)
    os.register_at_fork(after_in_child=lambda: _begin(True))
    _exec_module = _ext._LoaderBasics.exec_module

    def _timed_exec_module(self, module):
        via_import = sys._getframe(1).f_code.co_name == "_load_unlocked"
        origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(module, "__file__", None) or ""
        launcher = origin.startswith(_dirs) if _dirs else False
        entry = [_now(), 0, _overhead[0], module.__name__ if launcher else None]
        outer = [e[3] for e in _stack if e[3]]
        _stack.append(entry)
        try:
            return _exec_module(self, module)
        finally:
            end = _now()
            _stack.pop()
            cumulative = end - entry[0] - (_overhead[0] - entry[2])
            if _stack:
                _stack[-1][1] += cumulative
            if launcher:
                record = {"name": module.__name__, "file": origin, "cum_ns": cumulative, "self_ns": cumulative - entry[1],
                          "via_import": via_import, "outer": outer, "pid": os.getpid()}
                with open(os.path.join(_out, f"events-{_me['token']}.txt"), "a") as file:
                    file.write(repr(record) + "\n")
            _overhead[0] += _now() - end

    _ext._LoaderBasics.exec_module = _timed_exec_module
"""


def setup_probe(work: str, python: str) -> str:
    directory = os.path.join(work, "probe")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "sitecustomize.py")
    with open(path, "w") as file:
        file.write(PROBE_SOURCE)
    subprocess.run([python, "-m", "compileall", "-q", path], check=True, timeout=60)  # cached, like a site module
    return directory


def importtime_lines(text: str) -> list[tuple[int, int, int, str]]:
    """-X importtime lines in order: (self µs, cumulative µs, depth, module)."""
    out = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if match:
            out.append((int(match.group(1)), int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    return out


def outermost(lines: list[tuple[int, int, int, str]], names: set[str]) -> list[tuple[int, int, int, str]]:
    """The lines of `names` modules not nested in another such line (importtime prints children first)."""
    out = []
    for i, (_s, _c, depth, name) in enumerate(lines):
        if name.split(".")[0] not in names:
            continue
        nested, level = False, depth
        for _s2, _c2, depth2, name2 in lines[i + 1 :]:  # walk up: each parent is the next line one level up
            if depth2 < level:
                if name2.split(".")[0] in names:
                    nested = True
                    break
                level = depth2
                if level == 0:
                    break
        if not nested:
            out.append(lines[i])
    return out


def module_names_under(directory: str) -> set[str]:
    names = set()
    for root, dirs, files in os.walk(directory):
        for name in files:
            if name.endswith((".py", ".pyc", ".so")) and name != "__init__.py":
                names.add(name.split(".")[0])
        names.update(d for d in dirs if os.path.exists(os.path.join(root, d, "__init__.py")))
    return names


def settle_tree(server: Server, quiet: float = 1.0, limit: float = 10.0, probe_out: str | None = None) -> None:
    """Wait until the tree's PID set has not changed for `quiet` s (and, with the probe, every process
    in it has started its probe), bounded by `limit`."""
    deadline = time.perf_counter() + limit
    last, since = None, time.perf_counter()
    while time.perf_counter() < deadline:
        pids = frozenset(process_tree(server.proc.pid))
        if probe_out:
            seen = {int(n.split("-")[1]) for n in os.listdir(probe_out) if n.startswith("meta-")}
            pids = pids | frozenset(["waiting"] if pids - seen else [])
        now = time.perf_counter()
        if pids != last:
            last, since = pids, now
        elif now - since >= quiet and "waiting" not in pids:
            return
        time.sleep(0.05)


def target_cases(server: str) -> dict[str, Case]:
    return {
        "start": Case(f"{server} start.py", server, "start", server),
        "direct": Case(f"{server} direct", server, "direct", server),
        "start_nolog": Case(f"{server} start.py ACCESS_LOG=''", server, "start", server, NO_LOG),
        "direct_nolog": Case(f"{server} direct ACCESS_LOG=''", server, "direct", server, NO_LOG),
    }


def ttfr_once(runner: Runner, case: Case) -> tuple[float, list[str]]:
    port = free_port()
    server, _, argv = runner.launch(case, port)
    try:
        ms = wait_first_200(server, port) * 1000
        assert_loopback_only(port)
    finally:
        server.stop(grace=0.5)
    return ms, argv


def import_probe(runner: Runner, case: Case, probe_dir: str) -> dict:
    """One start through start.py with -X importtime and the probe in every process: per process, the
    time spent loading launcher code, and the config file's load in the server's master."""
    out = tempfile.mkdtemp(prefix="probe-", dir=runner.work)
    snapshot = os.path.dirname(START_PY)
    tmpdir = {}

    def update(env: dict) -> dict:
        env = dict(env)
        tmpdir["path"] = env["TMPDIR"]
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        env["PYTHONPATH"] = probe_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["ASGI_START_BENCH_PROBE"] = out
        env["ASGI_START_BENCH_LAUNCHER"] = os.pathsep.join([snapshot, env["TMPDIR"]])
        return env

    port = free_port()
    server, workers, argv = runner.launch(case, port, env_update=update)
    root = server.proc.pid
    try:
        wait_first_200(server, port)
        assert_loopback_only(port)
        settle_tree(server, probe_out=out)
        alive = set(process_tree(root))
    finally:
        server.stop(grace=2.0)
    names = module_names_under(tmpdir["path"]) | module_names_under(snapshot)
    configs = {name for name in os.listdir(snapshot) if ImageLayout.is_config(name)}
    procs = []
    for entry in sorted(os.listdir(out)):
        if not entry.startswith("meta-"):
            continue
        token = entry[5:-4]
        meta = ast.literal_eval(_read(os.path.join(out, entry)))  # a repr() the probe wrote
        events = [ast.literal_eval(line) for line in _read(os.path.join(out, f"events-{token}.txt")).splitlines()]
        names |= {e["name"].split(".")[0] for e in events if e["via_import"]}
        procs.append((token, meta, events))
    result = {"argv": argv, "expected_workers": workers, "processes": [], "launcher_names": sorted(names)}
    for token, meta, events in procs:
        argv_text = " ".join(meta["argv"])
        if meta["pid"] == root and meta["argv"] == list(argv):
            role = "launcher"  # start.py itself before its exec: measured by the --dry-run target
        elif "resource_tracker" in argv_text or "forkserver" in argv_text:
            role = "helper"
        elif meta["pid"] == root:
            role = "master"
        else:
            role = "worker"
        lines = importtime_lines(_read(os.path.join(out, f"stderr-{token}.txt")))
        top = outermost(lines, names)
        importtime_us = sum(line[1] for line in top)
        plain = [e for e in events if os.path.basename(e["file"]) not in configs]
        plain_names = {e["name"] for e in plain}
        probe_us = sum(e["cum_ns"] for e in plain if not plain_names.intersection(e["outer"])) / 1000
        config = [
            {
                "file": os.path.basename(e["file"]),
                "cum_us": e["cum_ns"] / 1000,
                "self_us": e["self_ns"] / 1000,
                "nested_launcher_us": sum(p["cum_ns"] for p in plain if p["outer"][-1:] == [e["name"]]) / 1000,
            }
            for e in events
            if os.path.basename(e["file"]) in configs
        ]
        result["processes"].append(
            {
                "pid": meta["pid"],
                "role": role,
                "forked": meta["forked"],
                "alive_at_end": meta["pid"] in alive,
                "argv": argv_text[:160],
                "importtime_modules": [(name, cum, own) for own, cum, _d, name in top],
                "importtime_us": importtime_us,
                "probe_modules": [
                    (e["name"], os.path.basename(e["file"]), e["cum_ns"] / 1000, e["via_import"]) for e in plain
                ],
                "probe_us": probe_us,
                "launcher_us": max(importtime_us, probe_us),
                "config": config,
            }
        )
    shutil.rmtree(out, ignore_errors=True)
    return result


def timed_spawn(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall ms, CPU ms user+sys) of one run, output discarded; os.wait4 gives the child's own rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=APP_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def dryrun_round(runner: Runner, server: str, pairs: int, r: int) -> dict:
    """`--dry-run` the way the image starts it vs `python -c pass`, in alternating pairs, each with a
    fresh empty TMPDIR; the per-round figure is the difference of the medians."""
    base = runner.env(runner.args.servers_venv, {"SERVER": server, "HOST": HOST, "PORT": "8000"})
    commands = {"bare": [runner.py, "-c", "pass"], "start": [*runner.start_argv, "--dry-run"]}
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "start": []}
    for name in ("bare", "start"):  # warm-up, discarded
        timed_spawn(commands[name], dict(base, TMPDIR=runner.fresh_tmpdir()))
    for k in range(pairs):
        for name in ("bare", "start") if (k + r) % 2 == 0 else ("start", "bare"):
            times[name].append(timed_spawn(commands[name], dict(base, TMPDIR=runner.fresh_tmpdir())))
    wall = {n: [t[0] for t in v] for n, v in times.items()}
    cpu = {n: [t[1] for t in v] for n, v in times.items()}
    return {
        "bare_ms": wall["bare"],
        "start_ms": wall["start"],
        "extra_ms": statistics.median(wall["start"]) - statistics.median(wall["bare"]),
        "extra_cpu_ms": statistics.median(cpu["start"]) - statistics.median(cpu["bare"]),
        "extra_min_ms": min(wall["start"]) - min(wall["bare"]),
    }


def load_pair(runner: Runner, cases: dict[str, Case], sides: tuple[str, str], args) -> dict:
    """Both launches up at once (started in `sides` order), each warmed up, then 1 s wrk bursts in
    A B B A order until each had `args.duration` seconds: drift on a shared machine hits both alike."""
    servers, ports, out = {}, {}, {}
    try:
        for side in sides:
            ports[side] = free_port()
            servers[side], workers, argv = runner.launch(cases[side], ports[side])
            out[side] = {"argv": argv, "expected_workers": workers, "bursts": []}
            wait_first_200(servers[side], ports[side])
            assert_loopback_only(ports[side])
        for side in sides:
            settle_tree(servers[side], quiet=0.5)
            out[side]["processes"] = len(process_tree(servers[side].proc.pid))
        warm = {side: wrk(ports[side], "/", args.warmup, args)["requests"] for side in sides}
        a, b = sides
        for k in range(args.duration):
            for side in (a, b) if k % 2 == 0 else (b, a):
                before = cpu_snapshot(servers[side].proc.pid)
                run = wrk(ports[side], "/", 1, args)
                after = cpu_snapshot(servers[side].proc.pid)
                run["foreign_cpu"] = foreign_cpu_share(before, after)
                run["cpu_s"] = after[2] - before[2]
                out[side]["bursts"].append(run)
    finally:
        for server in servers.values():
            server.stop()
    for side in sides:
        bursts = out[side]["bursts"]
        requests = sum(b["requests"] for b in bursts)
        out[side].update(
            rps=statistics.mean(b["rps"] for b in bursts),
            p99_ms=statistics.median(b["p99_ms"] for b in bursts),
            requests=requests,
            non2xx=sum(b["non2xx"] for b in bursts),
            socket_errors=sum(b["socket_errors"] for b in bursts),
            foreign_cpu=statistics.mean(b["foreign_cpu"] for b in bursts),
            cpu_us_per_request=sum(b["cpu_s"] for b in bursts) / max(1, requests) * 1e6,
            log_bytes_per_request=servers[side].bytes / max(1, warm[side] + requests),
        )
    return out


def psi_some_total() -> int:
    match = re.search(r"^some .*total=(\d+)", _read("/proc/pressure/cpu"), re.M)
    return int(match.group(1)) if match else 0


def targets_run(runner: Runner, args) -> dict:
    servers = [s for s in TARGET_SERVERS if re.search(args.cases or "", s)]
    probe_dir = setup_probe(runner.work, runner.py)
    res: dict = {"servers": servers, "rounds": [], "argv": {}}
    for s in servers:
        res[s] = {"ttfr": [], "imports": [], "dryrun": [], "tput": []}
    for r in range(args.rounds):
        t0, psi0, load0 = time.monotonic(), psi_some_total(), _read("/proc/loadavg").split()[0]
        order_servers = servers[r % len(servers) :] + servers[: r % len(servers)]
        for server in order_servers:
            block = time.monotonic()
            cases = target_cases(server)
            rec = res[server]
            # 1. time to first 200: start.py / direct, in pairs whose order alternates
            for k in range(args.ttfr_pairs):
                pair = {}
                for side in ("start", "direct") if (r + k) % 2 == 0 else ("direct", "start"):
                    pair[side], argv = ttfr_once(runner, cases[side])
                    res["argv"].setdefault(cases[side].name, argv)
                rec["ttfr"].append(pair)
            runner.clean_tmpdirs()
            # 2. launcher code loaded per server process (start.py only)
            probe = import_probe(runner, cases["start"], probe_dir)
            rec["imports"].append(probe)
            runner.clean_tmpdirs()
            # 3. --dry-run over a bare interpreter
            rec["dryrun"].append(dryrun_round(runner, server, args.dryrun_pairs, r))
            runner.clean_tmpdirs()
            # 4. throughput with the access log off, start.py / direct, bursts in A B B A order
            sides = ("start_nolog", "direct_nolog") if r % 2 == 0 else ("direct_nolog", "start_nolog")
            pair = load_pair(runner, cases, sides, args)
            for side in sides:
                res["argv"].setdefault(cases[side].name, pair[side].pop("argv"))
            rec["tput"].append(pair)
            runner.clean_tmpdirs()
            ttfr = rec["ttfr"][-args.ttfr_pairs :]
            servers_procs = [p for p in probe["processes"] if p["role"] in ("master", "worker")]
            log(
                f"  round {r + 1} {server:<9} ttfr "
                + " ".join(f"{p['start']:.0f}/{p['direct']:.0f}" for p in ttfr)
                + " ms  launcher import "
                + "/".join(f"{p['launcher_us'] / 1000:.1f}" for p in servers_procs)
                + f" ms  dry-run +{rec['dryrun'][-1]['extra_ms']:.1f} ms  req/s "
                f"{pair['start_nolog']['rps']:.0f}/{pair['direct_nolog']['rps']:.0f}  "
                f"({time.monotonic() - block:.0f} s)"
            )
        wall = time.monotonic() - t0
        res["rounds"].append(
            {
                "seconds": wall,
                "cpu_pressure": (psi_some_total() - psi0) / 1e6 / wall,
                "loadavg_start": load0,
                "loadavg_end": _read("/proc/loadavg").split()[0],
            }
        )
    return res


def spread(values: list[float], spec: str = ".3f") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"**{statistics.median(values):{spec}}** ({min(values):{spec}} … {max(values):{spec}}, n={len(values)})"


def target_verdict(values: list[float], ok) -> str:
    """met / missed when the median and the whole range agree; otherwise the median's side, unresolved."""
    if not values:
        return "–"
    hits = [ok(v) for v in values]
    if all(hits):
        return "met"
    if not any(hits):
        return "**missed**"
    return ("median met" if ok(statistics.median(values)) else "**median missed**") + ", range straddles the goal"


def targets_report(info: dict, res: dict, args, elapsed: float, layout: ImageLayout) -> str:
    m = info
    out: list[str] = []
    add = out.append
    add("# asgi-start: the performance targets of issue 8\n")
    add(
        f"Generated by `bash bench/run.sh --targets{' --quick' if args.quick else ''}` on {m['date']} in "
        f"{elapsed / 60:.1f} min, {args.rounds} interleaved rounds. Each round runs, per server (server order "
        "rotated), the time-to-first-200 pairs, one import-time start, the `--dry-run` pairs and the throughput "
        "pair, with the order inside each pair alternating. Figures are medians of per-round (or per-pair) "
        "values, with their range and count; a range that straddles the goal is not resolved at this noise.\n"
    )
    add("| conditions | |\n|---|---|")
    add(
        f"| machine | {m['cpu']}, {m['cores']} CPUs ({m['affinity']} usable), kernel {m['kernel']}, Python {m['python']} |"
    )
    add("| servers | " + ", ".join(f"{k} {v}" for k, v in m["servers"].items()) + " |")
    add(f"| asgi-start | {m['repo']} commit {m['git']}; start.py sha256 {m['start_sha256']}… |")
    add(
        "| image layout (from the Dockerfile) | files copied to /: "
        + ", ".join(f"`{f}`" for f in layout.files)
        + "; compiled: "
        + ("; ".join(f"`{c}`" for c in layout.compiled) or "nothing")
        + f"; CMD `{layout.cmd_image}`"
        + ("; " + "; ".join(layout.notes) if layout.notes else "")
        + " |"
    )
    add(
        "| environment of every start | "
        + " ".join(f"`{k}={v.replace(APP_DIR, 'bench/app')}`" for k, v in layout.env.items())
        + ", a fresh empty `TMPDIR` per start (also per `--dry-run` and `python -c pass` run), working directory bench/app |"
    )
    add(
        f"| load | {m['wrk']} `-t{args.threads} -c{args.connections}`, 127.0.0.1; per round and server both "
        f"launches up, {args.warmup} s warm-up each, then {args.duration} × 1 s bursts each in A B B A order |"
    )
    pressures = [rd["cpu_pressure"] for rd in res["rounds"]]
    add(f"| load average (1/5/15 min) | at start {m['loadavg_start']}; at end {m.get('loadavg_end', '?')} |")
    add(f"| CPU pressure (PSI some) | at start {m['cpu_pressure_start']}; at end {m.get('cpu_pressure_end', '?')} |")
    foreign = [
        b["foreign_cpu"] for s in res["servers"] for p in res[s]["tput"] for side in p for b in p[side]["bursts"]
    ]
    add(
        f"| noise during the run | CPU pressure per round (share of time some task waited for a CPU, ours "
        f"included): {spread([x * 100 for x in pressures], '.0f')} %; other processes' share of the machine's "
        f"CPU while wrk measured: {spread([x * 100 for x in foreign], '.0f')} % |\n"
    )
    rows = []
    details: list[str] = []
    dadd = details.append
    for server in res["servers"]:
        rec = res[server]
        # 1
        ratios = [p["start"] / p["direct"] for p in rec["ttfr"]]
        rows.append(
            (
                "1. time to first 200, start.py / direct",
                server,
                spread(ratios),
                f"start.py {statistics.median([p['start'] for p in rec['ttfr']]):.0f} ms, direct "
                f"{statistics.median([p['direct'] for p in rec['ttfr']]):.0f} ms",
                f"≤ {TTFR_GOAL}",
                target_verdict(ratios, lambda x: x <= TTFR_GOAL),
            )
        )
        # 2
        worst, typical, config = [], [], []
        for probe in rec["imports"]:
            procs = [p for p in probe["processes"] if p["role"] in ("master", "worker")]
            if procs:
                worst.append(max(p["launcher_us"] for p in procs) / 1000)
                typical.append(statistics.median([p["launcher_us"] for p in procs]) / 1000)
            for p in procs:
                config += [c for c in p["config"]]
        n_procs = statistics.median(
            [len([p for p in pr["processes"] if p["role"] in ("master", "worker")]) for pr in rec["imports"]]
        )
        loaders = statistics.median(
            [
                len([p for p in pr["processes"] if p["role"] in ("master", "worker") and p["launcher_us"] > 0])
                for pr in rec["imports"]
            ]
        )
        loads = sorted(
            {
                f"`{name}` ({p['role']}, {'import' if via else 'by path'})"
                for pr in rec["imports"]
                for p in pr["processes"]
                if p["role"] in ("master", "worker")
                for name, _file, _us, via in p["probe_modules"]
            }
            | {
                f"`{name}` ({p['role']}, import)"
                for pr in rec["imports"]
                for p in pr["processes"]
                if p["role"] in ("master", "worker")
                for name, _c, _s in p["importtime_modules"]
            }
        )
        rows.append(
            (
                "2. launcher code loaded per server process (worst process of a start)",
                server,
                spread(worst, ".1f") + " ms",
                f"median process {spread(typical, '.1f')} ms; {loaders:g} of {n_procs:g} processes load launcher "
                f"code: {', '.join(loads) or 'none'}",
                f"< {IMPORT_GOAL_MS:g} ms",
                target_verdict(worst, lambda x: x < IMPORT_GOAL_MS),
            )
        )
        if config:
            rows.append(
                (
                    "2b. config file loaded by the server's master (report only)",
                    server,
                    spread([c["cum_us"] / 1000 for c in config], ".1f") + " ms",
                    f"`{config[0]['file']}`, of which launcher code it loads: "
                    f"{spread([c['nested_launcher_us'] / 1000 for c in config], '.1f')} ms, and its own code "
                    f"(no module loads): {spread([c['self_us'] / 1000 for c in config], '.1f')} ms",
                    "",
                    None,
                )
            )
        # 3
        extras = [d["extra_ms"] for d in rec["dryrun"]]
        rows.append(
            (
                "3. `--dry-run` over `python -c pass`",
                server,
                spread(extras, ".1f") + " ms",
                f"CPU (user+sys) {spread([d['extra_cpu_ms'] for d in rec['dryrun']], '.1f')} ms; fastest runs "
                f"(min − min) {spread([d['extra_min_ms'] for d in rec['dryrun']], '.1f')} ms; bare "
                f"{statistics.median([x for d in rec['dryrun'] for x in d['bare_ms']]):.1f} ms",
                f"≤ {DRYRUN_GOAL_MS:g} ms",
                target_verdict(extras, lambda x: x <= DRYRUN_GOAL_MS),
            )
        )
        # 4
        tput = rec["tput"]
        ratios = [p["start_nolog"]["rps"] / p["direct_nolog"]["rps"] for p in tput]
        cpu = [p["start_nolog"]["cpu_us_per_request"] / p["direct_nolog"]["cpu_us_per_request"] for p in tput]
        logb = [max(p[s]["log_bytes_per_request"] for s in p) for p in tput]
        errors = sum(p[s]["non2xx"] + p[s]["socket_errors"] for p in tput for s in p)
        rows.append(
            (
                "4. req/s with the access log off, start.py / direct",
                server,
                spread(ratios),
                f"server CPU per request {spread(cpu)}; start.py {statistics.median([p['start_nolog']['rps'] for p in tput]):.0f} "
                f"req/s, direct {statistics.median([p['direct_nolog']['rps'] for p in tput]):.0f} req/s; log "
                f"≤ {max(logb):.1f} B/req" + (f"; ⚠ {errors} errors" if errors else ""),
                f"≥ {TPUT_GOAL}",
                target_verdict(ratios, lambda x: x >= TPUT_GOAL),
            )
        )
        # details
        dadd(f"### {server}\n")
        dadd(
            "Time to first 200, per pair (start.py / direct, ms): "
            + ", ".join(f"{p['start']:.0f}/{p['direct']:.0f}" for p in rec["ttfr"])
            + "\n"
        )
        dadd(
            "`--dry-run` over bare, per round (wall ms): "
            + ", ".join(f"{d['extra_ms']:+.1f}" for d in rec["dryrun"])
            + "\n"
        )
        dadd(
            "req/s per round (start.py/direct): "
            + ", ".join(f"{p['start_nolog']['rps']:.0f}/{p['direct_nolog']['rps']:.0f}" for p in tput)
            + "; server CPU µs/req (start.py/direct): "
            + ", ".join(
                f"{p['start_nolog']['cpu_us_per_request']:.0f}/{p['direct_nolog']['cpu_us_per_request']:.0f}"
                for p in tput
            )
            + "; other processes' CPU share: "
            + ", ".join(f"{max(p[s]['foreign_cpu'] for s in p):.0%}" for p in tput)
            + "\n"
        )
        dadd(
            "Launcher code per process, last import-time start (µs; `-X importtime` cumulative of the outermost launcher modules / the probe's loader time):\n"
        )
        dadd(
            "| role | pid | importtime: modules (cumulative µs, self µs) | probe: loads (file, µs, via import) | per-process µs | config file |"
        )
        dadd("|---|---|---|---|---|---|")
        for p in rec["imports"][-1]["processes"]:
            dadd(
                f"| {p['role']}{' (forked)' if p['forked'] else ''} | {p['pid']} | "
                + (", ".join(f"`{n}` {c}, {s}" for n, c, s in p["importtime_modules"]) or "–")
                + " | "
                + (
                    ", ".join(
                        f"`{n}` ({f}) {us:.0f}{'' if via else ', by path'}" for n, f, us, via in p["probe_modules"]
                    )
                    or "–"
                )
                + f" | {p['launcher_us']:.0f} | "
                + (
                    ", ".join(
                        f"`{c['file']}` {c['cum_us']:.0f} (launcher code in it {c['nested_launcher_us']:.0f}, "
                        f"own code {c['self_us']:.0f})"
                        for c in p["config"]
                    )
                    or "–"
                )
                + " |"
            )
        dadd(
            f"\nLauncher module names looked for in the importtime lines: {', '.join(rec['imports'][-1]['launcher_names'])}\n"
        )
    add("## Targets\n")
    add("| target | server | measured: median (min … max, n) | detail | goal | |")
    add("|---|---|---|---|---|---|")
    for name, server, value, detail, goal, ok in rows:
        add(f"| {name} | {server} | {value} | {detail} | {goal} | {ok or ''} |")
    add(
        "\n1: `python start.py` (the image's CMD) and the hand-written command with the same settings (`direct`: "
        "start.py's own plan without config files, every setting a flag, the server's default logging), from "
        "`Popen` to the first `HTTP/1.1 200` on a fresh connection (1 ms connect loop), start.py's default settings.\n"
        "\n2: one start through start.py per round and server with `PYTHONPROFILEIMPORTTIME=1` and a probe "
        "(sitecustomize) in every process, which gives each process its own stderr and times every file loader "
        "load. Launcher code is any module whose file lies in start.py's directory (start.py, the config files) or "
        "in this start's TMPDIR (the runtime directory); a process's figure is the larger of the `-X importtime` "
        "cumulative time of its outermost launcher modules and the probe's time for the same loads plus those "
        "done by file path (which `-X importtime` does not see, e.g. start.py loaded by a config file). The config "
        "file's own load (2b) is reported apart; start.py's own process before its exec is target 3's.\n"
        "\n3: wall time of `python start.py --dry-run` (the image's CMD) minus `python -c pass`, same venv and "
        "environment, alternating, each spawned from this script and waited for; difference of the medians per "
        "round. The same for the child's user+sys CPU time, and for the fastest run of each command: both are "
        "steadier than wall medians when other work competes for the CPUs.\n"
        "\n4: `ACCESS_LOG=''` for start.py, and the direct command derived under the same variable; both "
        "servers up at once, `wrk` bursts of 1 s alternating between them (A B B A …) after a warm-up of each; "
        "per round the ratio of their mean req/s. *server CPU per request* (the tree's user+sys per request) is "
        "less sensitive to other work than req/s. *log B/req* confirms that no access log was written.\n"
    )
    add("## Per server\n")
    out += details
    add("## Launches\n")
    add("| launch | argv |\n|---|---|")
    for name, argv in res["argv"].items():
        text = " ".join(shlex.quote(a) for a in argv)
        text = re.sub(r"\S*/bin/python", "python", text).replace(os.path.dirname(START_PY) + "/", "")
        text = re.sub(r"(127\.0\.0\.1:|--port )\d+", r"\1PORT", text)
        add(f"| {name} | `{text}` |")
    add(
        "\nPORT is a fresh port per launch; HOST=127.0.0.1, PORT, SERVER (and ACCESS_LOG='' for the throughput "
        "launches) are in every environment; start.py runs from a snapshot of the files the image copies to /.\n"
    )
    return "\n".join(out) + "\n"


def main() -> int:
    global REPO, START_PY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers-venv", required=True)
    parser.add_argument("--inboard-venv", help="the anchor's venv (not needed with --targets)")
    parser.add_argument(
        "--targets",
        action="store_true",
        help="measure only the four performance targets of issue 8, in one interleaved run under the image's "
        "conditions (writes bench/TARGETS.md)",
    )
    parser.add_argument("--quick", action="store_true", help="with --targets: few, short rounds (development)")
    parser.add_argument("--repo", default=REPO, help="the checkout whose launcher is measured (default: this one)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 4; --targets 8, --quick 2)")
    parser.add_argument(
        "--duration", type=int, help="measured wrk seconds per launch (3; --targets: 1 s bursts per side, 4; --quick 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up seconds per launch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ttfr-rounds", type=int, default=9)
    parser.add_argument(
        "--ttfr-pairs", type=int, help="--targets: time-to-first-200 pairs per round and server (2; --quick 1)"
    )
    parser.add_argument(
        "--dryrun-pairs", type=int, help="--targets: --dry-run/bare pairs per round and server (8; --quick 4)"
    )
    parser.add_argument("--launch-rounds", type=int, default=4)
    parser.add_argument("--launch-runs", type=int, default=15, help="hyperfine runs per command per round")
    parser.add_argument("--quota", type=float, default=1.0, help="CPUs of the cgroup quota (case 5)")
    parser.add_argument("--only", default="1,2,3,5", help="cases to run (4 comes with 3)")
    parser.add_argument(
        "--cases", default="", help="only the launches whose name matches this regex (--targets: the servers)"
    )
    parser.add_argument("--output", help="default bench/RESULTS.md, with --targets bench/TARGETS.md")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    quick = args.targets and args.quick
    if args.rounds is None:
        args.rounds = (2 if quick else 8) if args.targets else 4
    if args.duration is None:
        args.duration = (2 if quick else 4) if args.targets else 3
    if args.ttfr_pairs is None:
        args.ttfr_pairs = 1 if quick else 2
    if args.dryrun_pairs is None:
        args.dryrun_pairs = 4 if quick else 8
    if args.output is None:
        args.output = os.path.join(BENCH, "TARGETS.md" if args.targets else "RESULTS.md")
    args.output = os.path.abspath(args.output)
    REPO = os.path.abspath(args.repo)
    only = set(args.only.split(","))
    if args.cases and not args.targets:
        for case in CASES:
            if not re.search(args.cases, case.name):
                case.ttfr = case.load = False
    inboard = [c.name for c in CASES if c.launcher == "inboard" and (c.ttfr or c.load) and not c.cgroup]
    if not args.targets and not args.inboard_venv and inboard:
        parser.error(f"--inboard-venv is needed for {', '.join(inboard)} (or pick other --cases)")
    if not args.inboard_venv:
        for case in CASES:  # the quota group's inboard launch, when there is no anchor venv
            if case.launcher == "inboard":
                case.ttfr = case.load = False

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="asgi-start-bench-")
    # Measure one version of the launcher throughout: a snapshot of start.py and the config files
    # (which load start.py from beside themselves), even if the work tree changes during the run.
    # With --targets, the snapshot is what the Dockerfile puts in / (and compiles), run by its CMD.
    snapshot = os.path.join(work, "launcher")
    os.makedirs(snapshot)
    layout = None
    if args.targets:
        layout = image_layout(REPO, snapshot, os.path.join(args.servers_venv, "bin", "python"))
        START_PY = os.path.join(snapshot, "start.py")
        if not os.path.exists(START_PY):
            START_PY = next(a for a in layout.cmd[1:] if a.startswith(snapshot))
    else:
        for name in LAUNCHER_FILES:
            shutil.copy2(os.path.join(REPO, name), snapshot)
        START_PY = os.path.join(snapshot, "start.py")
    runner = Runner(args, work, layout)
    res: dict = {}
    info: dict | None = None
    cgroup = None
    status = 0
    try:
        info = machine(args)
        if args.targets:
            log(f"targets of issue 8: {args.rounds} interleaved rounds" + (" (quick)" if quick else ""))
            res["targets"] = targets_run(runner, args)
            only = set()
        if "1" in only:
            log("case 1: launch overhead (hyperfine, -X importtime)")
            res["launch"] = case1_launch(runner, args)
        if "2" in only:
            log("case 2: time to first 200")
            res["ttfr"] = case2_ttfr(runner, args)
        if "3" in only or "5" in only:
            if "5" in only:
                try:
                    cgroup = cgroup_create(args)
                except OSError as error:
                    res["quota_skipped"] = f"cannot create a cgroup: {error}"
                if cgroup is None and "quota_skipped" not in res:
                    res["quota_skipped"] = "needs root and a writable cgroup v1 cpu hierarchy at " + CGROUP_CPU
            if "3" not in only:
                for case in CASES:
                    case.load = case.load and case.group == "quota"
            if cgroup is None:
                for case in CASES:
                    case.load = case.load and case.group != "quota"
            log("cases 3-5: throughput, latency, memory" + (f", CPU quota in {cgroup}" if cgroup else ""))
            res["load"] = case3_load(runner, args, cgroup)
    except BaseException as error:
        log(f"bench: stopped: {error!r}")
        status = 1
    finally:
        kill_all_groups()
        if cgroup:
            try:
                cgroup_remove(cgroup)
            except (OSError, RuntimeError) as error:
                log(f"bench: {error}")
                status = 1
    elapsed = time.perf_counter() - started
    if info:
        info["loadavg_end"] = " ".join(_read("/proc/loadavg").split()[:3])
        if sha256_of(os.path.join(REPO, "start.py")) != info["start_sha256"][:16]:
            info["start_sha256"] += " (start.py in the work tree changed during the run; the run used this snapshot)"
        info["cpu_pressure_end"] = _read("/proc/pressure/cpu").split("\n")[0].replace("some ", "")
    raw = os.path.splitext(args.output)[0] + ".json" if status == 0 else os.path.join(work, "partial.json")
    with open(raw, "w") as file:
        json.dump({"machine": info, "results": res}, file, indent=1, default=str)
    if args.targets:
        text = targets_report(info, res["targets"], args, elapsed, layout) if info and "targets" in res else ""
    else:
        text = report(info, res, args, elapsed) if info else ""
    if status == 0:
        with open(args.output, "w") as file:
            file.write(text)
        log(f"bench: wrote {os.path.relpath(args.output)} in {elapsed / 60:.1f} min")
    print(text)
    if args.keep_work or status:
        log(f"bench: logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
