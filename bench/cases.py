"""The cases of the benchmark: what is launched and measured, as data.

A `Case` is one way of starting a server (start.py, the hand-written `direct` command, the argv
`--dry-run` prints, inboard) under some environment; `CASES` lists them in groups. Each group's cases
are launched in interleaved rounds (interleaved() below) and every comparison is a ratio to the case
named in `vs`, taken within a round. To add an environment variant, add one line, e.g.

    Case("gunicorn LOG_FORMAT=json", "gunicorn", "start", "gunicorn", {"LOG_FORMAT": "json"}, vs="gunicorn start.py")

`FIGURES` (case 6, at the end) holds the measured figures: numbers that tests used to bound (a latency,
a time to exit) and that the benchmark now measures and reports instead, with the bound they replace.

REPO and START_PY are the checkout and the launcher measured: bench.py's main() points START_PY at a
snapshot taken at the start of the run; read them as `cases.START_PY` (not imported by value).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from procs import HOST, Server, wait_first_200

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
START_PY = os.path.join(REPO, "start.py")  # replaced in main() by a snapshot taken at the start of the run
LAUNCHER_FILES = ("start.py", "gunicorn_conf.py", "hypercorn_conf.py")


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


def interleaved(names: list[str], rounds: int):
    """(round, name) in A B C / C B A / A B C order."""
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            yield r, name


# --------------------------------------------------------------------------
# 6. measured figures: numbers that tests no longer bound, measured here instead
# --------------------------------------------------------------------------


def time_to_first_200(server: Server, port: int, case: Case) -> float:
    """Seconds from Popen to the first 200 on `case.path` (a fresh connection, 1 ms connect loop)."""
    return wait_first_200(server, port, case.path)


def time_to_stop(server: Server, port: int, case: Case) -> float:
    """Seconds from SIGTERM to the group's last process gone, once the server has answered (grace 30 s)."""
    wait_first_200(server, port, case.path)
    return server.stop(grace=30.0)


class Figure:
    """A measured figure: one number per launch of `case`, in interleaved rounds, reported as the median
    with its range and count (RESULTS.md, "6. Measured figures"). It replaces an upper bound that a test
    used to assert; `replaces` names that test and its old bound, for the reader.

    measure(server, port, case) -> seconds: called once the launch is started (the server is stopped
    afterwards in any case); time_to_first_200 and time_to_stop are the common ones.
    """

    def __init__(
        self,
        name: str,
        case: Case,
        measure: Callable[[Server, int, Case], float],
        *,
        replaces: str = "",
        unit: str = "ms",
        note: str = "",
    ):
        self.name, self.case, self.measure = name, case, measure
        self.replaces, self.unit, self.note = replaces, unit, note


def time_to_close_after_response(server: Server, port: int, case: Case) -> float:
    """Seconds from a response's end to the server closing the connection (KEEP_ALIVE=0), bounded at 10 s."""
    import socket

    wait_first_200(server, port, case.path)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(f"GET {case.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        answered = time.perf_counter()
        while sock.recv(65536):  # the body, then the close
            pass
        return time.perf_counter() - answered


# One line per figure: a time an e2e test used to bound from above (issue "The runtime, explicit" moved
# them here; the tests keep checking the behaviour).
FIGURES: list[Figure] = [
    Figure(
        "granian KEEP_ALIVE=0: response to connection closed",
        Case("granian keep-alive 0", "figures", "start", "granian", {"KEEP_ALIVE": "0"}),
        time_to_close_after_response,
        replaces="tests/e2e/test_granian.py::test_keep_alive_0_closes_every_connection (closed within 2 s)",
    ),
]


# --------------------------------------------------------------------------
# 7. PRELOAD_APP: the whole tree's memory, a FastAPI app under Gunicorn, with and without preloading
# --------------------------------------------------------------------------

PRELOAD_WORKERS = (1, 2, 4, 8)
PRELOAD_PATH = "/items/1"


def preload_case(workers: int, preload: bool) -> Case:
    env = {"APP_MODULE": "fastapi_app:app", "WEB_CONCURRENCY": str(workers), "ACCESS_LOG": ""}
    if preload:
        env["PRELOAD_APP"] = "true"
    name = f"gunicorn fastapi {workers} worker{'s' if workers > 1 else ''}" + (" PRELOAD_APP" if preload else "")
    return Case(name, "preload", "start", "gunicorn", env, path=PRELOAD_PATH)


# interleaved as one group: every worker count, without then with, in each round
PRELOAD_CASES = [preload_case(workers, preload) for workers in PRELOAD_WORKERS for preload in (False, True)]
