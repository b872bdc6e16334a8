"""Reliability under load, through `python start.py` on 127.0.0.1: graceful shutdown, worker crash, slow pre-start.

Every test starts a real server in its own process group, drives a bounded load
(a few client threads, bounded in count and time), and checks that nothing is
left behind. The counts are printed (`pytest -s`) and attached to the JUnit
report with `record_property`.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    PID1,
    SERVERS,
    Server,
    all_gone,
    children,
    clean_env,
    cmdline,
    copy_app,
    descendants,
    http_get,
    local_env,
    namespace_pid,
    pid_namespaces_work,
    proc_stat,
    reserve_port,
    session_processes,
    start_server,
    wait_for_workers,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.e2e

GRACEFUL_TIMEOUT = 10
# A request sent in the last instant before SIGTERM may still sit in the socket buffer,
# unread, when the server stops reading: HTTP cannot promise it (clients retry). Requests
# sent at least this long before the signal have been read, and must complete.
RACE_MARGIN = float(os.environ.get("RELIABILITY_RACE_MARGIN", "0.02"))


class Record:
    __slots__ = ("body", "client", "connected", "done", "error", "keep_alive", "path", "sent", "status")

    def __init__(self, client: int, path: str, keep_alive: bool) -> None:
        self.client = client
        self.path = path
        self.keep_alive = keep_alive
        self.connected: float | None = None  # when the TCP connection carrying it was established
        self.sent: float | None = None  # when the request had been written to the socket
        self.done: float | None = None
        self.status: int | None = None
        self.error: str | None = None
        self.body = b""

    def __repr__(self) -> str:
        return (
            f"<{self.path} keep_alive={self.keep_alive} connected={self.connected} sent={self.sent} "
            f"done={self.done} status={self.status} error={self.error}>"
        )


class Load:
    """A few client threads, each looping over one path, on a new or a kept-alive connection."""

    def __init__(self, port: int, clients: list[tuple[str, bool]], pause: float = 0.01, limit_s: float = 30) -> None:
        self.port = port
        self.pause = pause
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + limit_s
        self.threads = [
            threading.Thread(target=self.client, args=(number, path, keep_alive), daemon=True)
            for number, (path, keep_alive) in enumerate(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in self.threads), "a client thread hung"

    def client(self, number: int, path: str, keep_alive: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        connected_at = 0.0
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            record = Record(number, path, keep_alive)
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                    connection.connect()
                    connected_at = time.monotonic()
                record.connected = connected_at
                connection.request("GET", path, headers={} if keep_alive else {"Connection": "close"})
                record.sent = time.monotonic()
                response = connection.getresponse()
                record.body = response.read()
                record.status, record.done = response.status, time.monotonic()
                if not keep_alive or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                record.error, record.done = f"{type(error).__name__}: {error}", time.monotonic()
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.05)  # refused: do not spin
            with self.lock:
                self.records.append(record)
            time.sleep(self.pause)
        if connection is not None:
            connection.close()

    def snapshot(self) -> list[Record]:
        with self.lock:
            return list(self.records)


def start_two_workers(servers: list, tmp_path: Path, server_name: str, **env: str) -> Server:
    """The one runner with two workers, returned once both answer."""
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", **env)
    server = start_server(servers, copy_app(tmp_path), env, wait=True, expect_status=200)
    workers = wait_for_workers(server.pid, 2)
    assert len(workers) == 2, server.output()
    # every worker up and answering, so that the signal or the kill does not meet one still starting
    seen: set[int] = set()
    deadline = time.monotonic() + 15
    while seen != set(workers) and time.monotonic() < deadline:
        seen.add(int(http_get(server.url("/pid"), timeout=5)[1]))
    assert seen == set(workers), (seen, workers)
    return server


def report(record_property, title: str, counts: dict) -> None:
    print(f"\n{title}: " + ", ".join(f"{key}={value}" for key, value in counts.items()))
    for key, value in counts.items():
        record_property(key, value)


# Keep-alive and new-connection clients; two of them ask for a 1 s answer.
MIXED_CLIENTS = [
    ("/", True),
    ("/", True),
    ("/", False),
    ("/", False),
    ("/slow?seconds=1", True),
    ("/slow?seconds=1", False),
]


@pytest.mark.parametrize("server_name", SERVERS)
def test_graceful_shutdown_under_load_completes_every_accepted_request(servers, tmp_path, server_name, record_property):
    server = start_two_workers(servers, tmp_path, server_name, GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT), ACCESS_LOG="")
    tree = descendants(server.pid)
    with Load(server.port, MIXED_CLIENTS) as load:
        time.sleep(1.5)  # the slow clients are half-way through their second request
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(GRACEFUL_TIMEOUT + 10)
        stopped = time.monotonic()
        load.stop()
    records = load.records

    before = [r for r in records if r.sent is not None and r.sent < signalled - RACE_MARGIN]
    in_window = [r for r in records if r.sent is not None and signalled - RACE_MARGIN <= r.sent < signalled]
    after = [r for r in records if r not in before and r not in in_window]
    slow_in_flight = [r for r in before if r.path.startswith("/slow") and r.done and r.done > signalled]
    counts = {
        "server": server_name,
        "exit_status": status,
        "stop_seconds": round(stopped - signalled, 2),
        "accepted_before_signal": len(before),
        "completed_200": sum(r.status == 200 for r in before),
        "slow_in_flight_at_signal": len(slow_in_flight),
        "sent_in_last_margin": len(in_window),
        "sent_in_last_margin_ok": sum(r.status == 200 for r in in_window),
        "after_signal": len(after),
        "after_signal_completed": sum(r.status == 200 for r in after),
        "after_signal_refused_or_reset": sum(r.error is not None for r in after),
    }
    report(record_property, "graceful shutdown", counts)

    assert status == 0, server.output()[-3000:]
    assert stopped - signalled < GRACEFUL_TIMEOUT
    failed = [r for r in before if r.status != 200]
    assert failed == [], failed
    assert len(before) > 20
    assert len(slow_in_flight) >= 1, "no 1 s request was in flight at the signal: the test proved nothing"
    assert all(r.status == 200 for r in slow_in_flight)
    assert all_gone([server.pid, *tree]) == []


def wait_for_replacement(pid: int, victim: int, count: int, deadline_s: float = 15) -> list[int]:
    """The worker pids once `victim` is gone and `count` workers run again (or what there is at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        workers = worker_pids(pid)
        if (victim not in workers and len(workers) == count) or time.monotonic() > deadline:
            return workers
        time.sleep(0.02)


def served_by(records: list[Record], pid: int, since: float) -> list[Record]:
    return [r for r in records if r.status == 200 and r.sent and r.sent >= since and r.body == str(pid).encode()]


# Every answer says which worker gave it; some take 1 s, so that some are in flight at the kill.
CRASH_CLIENTS = [
    ("/pid", True),
    ("/pid", True),
    ("/pid", False),
    ("/pid", False),
    ("/slow?seconds=1", False),
    ("/slow?seconds=1", True),
]


# What each server's main process writes when a worker is killed: (the death, the replacement).
DEATH_LINES = {
    "gunicorn": ("Worker (pid:{victim}) was sent SIGKILL! Perhaps out of memory?", "Booting worker with pid: {new}"),
    "uvicorn": ("worker {victim} was killed by SIGKILL (out of memory?) after", "; worker {new} replaces it"),
    "hypercorn": ("worker {victim} was killed by SIGKILL (out of memory?) after", "; worker {new} replaces it"),
    "granian": ("Unexpected exit from worker-", "with PID: {new}"),
}


def start_two_workers_as(servers: list, tmp_path: Path, server_name: str, pid1: bool, **env: str) -> tuple[Server, int]:
    """Two workers, each answering; with pid1, start.py as PID 1 of a new PID namespace. The server and the
    PID of its main process (unshare's child with pid1)."""
    if pid1 and not pid_namespaces_work():
        pytest.skip("cannot create a PID namespace here (unshare --pid needs root or user namespaces)")
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", **env)
    server = start_server(
        servers, copy_app(tmp_path), env, wait=True, expect_status=200, command=PID1 if pid1 else None
    )
    main = next(iter(children(server.pid)), server.pid) if pid1 else server.pid
    workers = wait_for_workers(main, 2)
    assert len(workers) == 2, server.output()
    inside = {namespace_pid(pid) for pid in workers}
    seen: set[int] = set()
    deadline = time.monotonic() + 15
    while seen != inside and time.monotonic() < deadline:
        seen.add(int(http_get(server.url("/pid"), timeout=5)[1]))
    assert seen == inside, (seen, inside)
    return server, main


class WorkerSampler:
    """Counts the server's live workers every 20 ms (bounded): the fewest seen, and the count at the end."""

    def __init__(self, main: int, limit_s: float = 40) -> None:
        self.main = main
        self.counts: list[int] = []
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + limit_s
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def __enter__(self) -> WorkerSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    def sample(self) -> None:
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            self.counts.append(len([pid for pid in worker_pids(self.main) if proc_stat(pid).state != "Z"]))
            time.sleep(0.02)


@pytest.mark.parametrize("pid1", [False, True], ids=["", "pid1"])
@pytest.mark.parametrize("server_name", SERVERS)
def test_killed_worker_is_replaced_and_the_others_serve_on(servers, tmp_path, server_name, pid1, record_property):
    """SIGKILL, as the out-of-memory killer sends it, to one of two workers under a steady load: a replacement
    starts and serves, the other worker serves on undisturbed, the live workers are two again, one log line
    says what happened, and the server still stops with status 0. Granian replaces workers because start.py
    passes --respawn-failed-workers; Hypercorn and Uvicorn through start.py's worker keeper."""
    server, main = start_two_workers_as(servers, tmp_path, server_name, pid1, ACCESS_LOG="")
    victim, survivor = worker_pids(main)
    victim_inside, survivor_inside = namespace_pid(victim), namespace_pid(survivor)
    with Load(server.port, CRASH_CLIENTS) as load, WorkerSampler(main) as sampler:
        time.sleep(0.8)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        workers = wait_for_replacement(main, victim, 2)
        replaced = time.monotonic()
        new = [pid for pid in workers if pid not in (victim, survivor)]
        new_inside = namespace_pid(new[0]) if new else 0
        # Keep the load on until the new worker has answered (bounded), then a little longer.
        deadline = time.monotonic() + 10
        while new and not served_by(load.snapshot(), new_inside, replaced) and time.monotonic() < deadline:
            time.sleep(0.05)
        first_answer = time.monotonic()
        time.sleep(0.5)
        load.stop()
    records = load.records
    finished = [r for r in records if r.done is not None]
    failures = [r for r in finished if r.status != 200]
    before_kill = [r for r in failures if r.done < killed]
    after_replacement = [r for r in failures if r.sent is not None and r.sent > replaced + 0.1]
    in_flight = [r for r in records if r.sent is not None and r.sent < killed and (r.done is None or r.done > killed)]
    by_survivor = served_by(records, survivor_inside, killed)
    counts = {
        "server": server_name + (" as PID 1" if pid1 else ""),
        "requests": len(finished),
        "in_flight_at_kill": len(in_flight),
        "in_flight_cut": sum(r.status != 200 for r in in_flight),
        "failures_total": len(failures),
        "failures_in_gap": len(failures) - len(before_kill) - len(after_replacement),
        "answered_by_survivor_after_kill": len(by_survivor),
        "seconds_to_replacement_pid": round(replaced - killed, 2),
        "seconds_to_first_answer_from_new_worker": round(first_answer - killed, 2),
        "fewest_live_workers": min(sampler.counts),
        "live_workers_at_end": sampler.counts[-1],
        "failure_kinds": sorted({(r.error or str(r.status)).split(":")[0] for r in failures}),
    }
    report(record_property, "worker crash", counts)

    assert victim not in workers and len(workers) == 2 and len(new) == 1, (workers, server.output()[-2000:])
    assert before_kill == [] and after_replacement == [], failures
    assert served_by(records, new_inside, replaced), "the replacement worker never answered"
    # the other worker was not stopped, restarted or cut off: it answered throughout and still runs
    assert len(by_survivor) >= 5 and survivor in workers, counts
    assert min(sampler.counts) >= 1 and sampler.counts[-1] == 2, counts
    death, replacement = DEATH_LINES[server_name]
    output = server.output()
    assert death.format(victim=victim_inside) in output, output[-3000:]
    assert replacement.format(new=new_inside) in output, output[-3000:]
    # and afterwards the server still serves on fresh connections and stops cleanly
    tree = descendants(server.pid)
    for _ in range(10):
        assert int(http_get(server.url("/pid"), timeout=10)[1]) in {survivor_inside, new_inside}
    os.kill(main, signal.SIGTERM)
    assert server.process.wait(30) == 0, server.output()[-2000:]
    assert all_gone([server.pid, *tree]) == []


# Apps that fail in every worker, at every start: the lifespan startup fails, or the import raises.
FAILING_APPS = {
    "startup-fails": (
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        await receive()\n"
        "        await send({'type': 'lifespan.startup.failed', 'message': 'the database is down'})\n"
    ),
    "import-fails": "raise RuntimeError('the database is down')\n",
}
# The server's exit status when its workers cannot start (Granian's: its crash loop), and how long it may take.
FAILED_START_STATUS = {"gunicorn": 3, "uvicorn": 3, "hypercorn": 3, "granian": 1}
FAILED_START_BOUND_S = 30


@pytest.mark.parametrize("pid1", [False, True], ids=["", "pid1"])
@pytest.mark.parametrize("failure", sorted(FAILING_APPS))
@pytest.mark.parametrize("server_name", SERVERS)
def test_workers_that_fail_on_every_start_end_the_server_non_zero(
    servers, tmp_path, server_name, failure, pid1, record_property
):
    """Before: Hypercorn exited 0 either way; Uvicorn exited 0 after a failed startup and replaced
    workers that failed to import for ever; Gunicorn exited 1 with a traceback when both workers
    failed at once. Now each stops within the bound, non-zero, with nothing left behind."""
    if pid1 and not pid_namespaces_work():
        pytest.skip("cannot create a PID namespace here (unshare --pid needs root or user namespaces)")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(FAILING_APPS[failure])
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", GRACEFUL_TIMEOUT="5")
    started = time.monotonic()
    server = start_server(servers, app_dir, env, command=PID1 if pid1 else None)
    try:
        status = server.process.wait(FAILED_START_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {FAILED_START_BOUND_S} s:\n{server.output()[-3000:]}")
    seconds = time.monotonic() - started
    output = server.output()
    report(
        record_property,
        "workers fail on every start",
        {"server": server_name, "failure": failure, "pid1": pid1, "status": status, "seconds": round(seconds, 2)},
    )
    assert status == FAILED_START_STATUS[server_name], output[-3000:]
    assert "the database is down" in output
    assert "HaltServer" not in output, output[-3000:]  # Gunicorn's halting, raised again out of its halt
    assert wait_until(lambda: session_processes(server.pid) == [], deadline_s=5), session_processes(server.pid)
    if server_name in ("uvicorn", "hypercorn"):
        assert "stopping the server, exit status 3" in output, output[-3000:]


def test_hypercorn_still_replaces_its_workers_on_sighup_and_after_max_requests(servers, tmp_path, record_property):
    """The worker keeper keeps what Hypercorn did besides: SIGHUP replaces every worker (now each new one
    starts before the old one is told to stop), and a worker that has served MAX_REQUESTS is replaced."""
    server, main = start_two_workers_as(servers, tmp_path, "hypercorn", False, ACCESS_LOG="", MAX_REQUESTS="150")
    first = set(worker_pids(main))
    with Load(server.port, CRASH_CLIENTS) as load, WorkerSampler(main) as sampler:
        time.sleep(0.5)
        os.kill(main, signal.SIGHUP)
        assert wait_until(lambda: not first & set(worker_pids(main)), deadline_s=15), server.output()[-3000:]
        # 150 requests per worker: at least one is recycled again under this load (bounded)
        wait_until(lambda: "exited with status 0 after" in server.output(), deadline_s=20)
        time.sleep(0.5)
        load.stop()
    records = load.records
    failures = [r for r in records if r.status != 200]
    answering = {r.body for r in records if r.status == 200}
    counts = {
        "requests": len(records),
        "unanswered": len(failures),
        "unanswered_on_new_connections": sum(not r.keep_alive for r in failures),
        "workers_that_answered": len(answering),
        "fewest_live_workers": min(sampler.counts),
    }
    report(record_property, "hypercorn SIGHUP and MAX_REQUESTS", counts)
    # Measured, not fixed here: a Hypercorn worker that stops gracefully closes its idle kept-alive
    # connections, and one it has just accepted, without an answer (1-2 % of this load's requests);
    # a request that got no answer may be retried (RFC 9112 9.3.1).
    assert all(r.error and r.error.startswith(("RemoteDisconnected", "ConnectionResetError")) for r in failures)
    assert len(failures) < len(records) / 10, counts
    assert len(answering) >= 5, counts  # two first workers, two after SIGHUP, at least one after MAX_REQUESTS
    assert "exited with status 0 after" in server.output(), server.output()[-3000:]
    assert min(sampler.counts) >= 1 and len(wait_for_workers(main, 2)) == 2
    assert server.terminate() == 0, server.output()[-2000:]


# --------------------------------------------------------------------------
# Slow or hung pre-start script
# --------------------------------------------------------------------------

SLOW_PRESTART = """\
import os, sys, time
open("prestart-started", "w").write(f"{os.getpid()} {time.time()}")
print("prestart: working", flush=True)
time.sleep(float(os.environ.get("PRESTART_SECONDS", "1.5")))
open("prestart-finished", "w").write(f"{time.time()}")
"""
# start.py's own lines: `asgi-start: message`, or `<time> INFO asgi-start [pid] message` with LOG_FORMAT=text
RUNNING_LINE = re.compile(r"asgi-start(?::| \[\d+\]) running pre-start script")
SUMMARY_LINE = re.compile(r"asgi-start(?::| \[\d+\]) gunicorn")


def wait_for_output(server: Server, pattern: re.Pattern, deadline_s: float = 15) -> float:
    deadline = time.monotonic() + deadline_s
    while not pattern.search(server.output()):
        assert time.monotonic() < deadline, (
            f"{pattern.pattern!r} not in the output within {deadline_s}s:\n{server.output()}"
        )
        assert server.process.poll() is None, server.output()
        time.sleep(0.02)
    return time.monotonic()


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def prestart_server(servers: list, tmp_path: Path, seconds: float, **extra: str) -> tuple[Server, Path]:
    app_dir = copy_app(tmp_path)
    (app_dir / "prestart.py").write_text(SLOW_PRESTART)
    env = clean_env(
        HOST="127.0.0.1", PORT=str(reserve_port()), WEB_CONCURRENCY="1", PRESTART_SECONDS=str(seconds), **extra
    )
    server = Server(app_dir, env)
    servers.append(server)
    return server, app_dir


def test_slow_prestart_holds_the_start_and_says_so_in_the_log(servers, tmp_path, record_property):
    server, app_dir = prestart_server(servers, tmp_path, seconds=1.5)
    wait_for_output(server, RUNNING_LINE)
    # while the script runs: the line is there, the server is not, the script is start.py's child
    assert not (app_dir / "prestart-finished").exists()
    assert not port_open(server.port)
    script = [pid for pid in descendants(server.pid) if any("prestart.py" in part for part in cmdline(pid))]
    assert len(script) == 1
    assert not SUMMARY_LINE.search(server.output())  # no summary line yet
    assert server.wait_ready()[0] == 200
    answered = time.time()
    finished = float((app_dir / "prestart-finished").read_text())
    output = server.output()
    assert finished < answered
    assert RUNNING_LINE.search(output).start() < SUMMARY_LINE.search(output).start()
    assert "prestart: working" in output
    report(record_property, "slow pre-start", {"first_answer_after_script_end_s": round(answered - finished, 2)})
    tree = descendants(server.pid)
    assert server.terminate() == 0
    assert all_gone([server.pid, *tree]) == []


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_sigterm_during_prestart_stops_the_script_too(servers, tmp_path, record_property, log_format):
    """`docker stop` during a hung pre-start script: start.py passes the signal on and stops with it."""
    server, app_dir = prestart_server(servers, tmp_path, seconds=30, LOG_FORMAT=log_format)
    deadline = time.monotonic() + 15
    while not (app_dir / "prestart-started").exists():  # the script itself is running
        assert time.monotonic() < deadline and server.process.poll() is None, server.output()
        time.sleep(0.02)
    script = [pid for pid in descendants(server.pid) if any("prestart.py" in part for part in cmdline(pid))]
    assert len(script) == 1
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        status = server.process.wait(10)
    except subprocess.TimeoutExpired:
        status = None
    exited = time.monotonic()
    left = all_gone(script, deadline_s=3)
    counts = {
        "start_py_status": status,
        "start_py_exit_s": round(exited - signalled, 2),
        "script_left_running": left,
        "server_started": port_open(server.port),
    }
    report(record_property, f"SIGTERM during pre-start ({log_format})", counts)
    for pid in left:  # an orphan: stop it by its pid (the process group is killed afterwards too)
        os.kill(pid, signal.SIGKILL)
    assert status == 128 + signal.SIGTERM, server.output()
    assert not counts["server_started"] and not (app_dir / "prestart-finished").exists()
    assert left == [], f"pre-start script {left} still running after start.py exited {status}"
