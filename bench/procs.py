"""Process helpers of the benchmark: starting servers, waiting for them, loading them, sampling them.

Every launch is its own session (process group), stopped by that group's id; groups still alive at exit,
on error or on Ctrl-C are killed (kill_all_groups). Everything listens on and is loaded on 127.0.0.1 only
(HOST); every wait and every load has a time bound. /proc gives the process tree, its memory (RSS, PSS)
and its CPU time; wrk generates the load; hyperfine times short commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"  # the only address anything here listens on or connects to
BENCH = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(BENCH, "app")
CGROUP_CPU = "/sys/fs/cgroup/cpu"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
        for line in read_text(table).splitlines()[1:]:
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


def read_text(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def process_tree(root: int) -> dict[int, dict]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        cmdline = read_text(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
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
        status, rollup = read_text(f"/proc/{pid}/status"), read_text(f"/proc/{pid}/smaps_rollup")
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
    fields = read_text("/proc/stat").split("\n")[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / CLK_TCK
    tree = 0.0
    for pid in process_tree(root):
        stat = read_text(f"/proc/{pid}/stat")
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


# --------------------------------------------------------------------------
# commands run to completion, and load
# --------------------------------------------------------------------------


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
        if not read_text(os.path.join(path, "cgroup.procs")).split():
            os.rmdir(path)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{path} still has processes: {read_text(os.path.join(path, 'cgroup.procs'))}")


def psi_some_total() -> int:
    match = re.search(r"^some .*total=(\d+)", read_text("/proc/pressure/cpu"), re.M)
    return int(match.group(1)) if match else 0


def sha256_of(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()[:16]
