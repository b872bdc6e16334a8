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
    SERVERS,
    Server,
    all_gone,
    clean_env,
    cmdline,
    copy_app,
    descendants,
    http_get,
    local_env,
    proc_stat,
    reserve_port,
    run_start,
    start_server,
    wait_for_workers,
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


# Granian replaces a dead worker because start.py passes --respawn-failed-workers (its default stops the server).
@pytest.mark.parametrize("server_name", ["gunicorn", "uvicorn", "granian"])
def test_killed_worker_is_replaced_and_later_requests_succeed(servers, tmp_path, server_name, record_property):
    server = start_two_workers(servers, tmp_path, server_name, ACCESS_LOG="")
    victim, survivor = worker_pids(server.pid)
    with Load(server.port, CRASH_CLIENTS) as load:
        time.sleep(0.8)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        workers = wait_for_replacement(server.pid, victim, 2)
        replaced = time.monotonic()
        new = [pid for pid in workers if pid not in (victim, survivor)]
        # Keep the load on until the new worker has answered (bounded), then a little longer.
        deadline = time.monotonic() + 10
        while new and not served_by(load.snapshot(), new[0], replaced) and time.monotonic() < deadline:
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
    counts = {
        "server": server_name,
        "requests": len(finished),
        "in_flight_at_kill": len(in_flight),
        "in_flight_cut": sum(r.status != 200 for r in in_flight),
        "failures_total": len(failures),
        "failures_before_kill": len(before_kill),
        "failures_in_gap": len(failures) - len(before_kill) - len(after_replacement),
        "failures_after_replacement": len(after_replacement),
        "seconds_to_replacement_pid": round(replaced - killed, 2),
        "seconds_to_first_answer_from_new_worker": round(first_answer - killed, 2),
        "answered_by_new_worker": len(served_by(records, new[0], replaced)) if new else 0,
        "failure_kinds": sorted({(r.error or str(r.status)).split(":")[0] for r in failures}),
    }
    report(record_property, "worker crash", counts)

    assert victim not in workers and len(workers) == 2 and len(new) == 1, (workers, server.output()[-2000:])
    assert before_kill == [] and after_replacement == [], failures
    assert served_by(records, new[0], replaced), "the replacement worker never answered"
    # and afterwards the server still serves on fresh connections and stops cleanly
    tree = descendants(server.pid)
    for _ in range(10):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/pid")
        response = connection.getresponse()
        assert response.status == 200 and int(response.read()) in workers
        connection.close()
    assert server.terminate() == 0, server.output()[-2000:]
    assert all_gone([server.pid, *tree]) == []
    assert proc_stat(victim) is None


def test_hypercorn_stops_the_whole_server_when_a_worker_is_killed(servers, tmp_path, record_property):
    """Measured, for the README: Hypercorn does not replace a dead worker; it stops altogether.

    Hypercorn's master sets its shutdown event when a worker exits with an error, then its
    final clean-up overwrites the dead worker's status with that of a second
    `_join_exited()` (hypercorn 0.18 run.py; pgjones/hypercorn#269, fix proposed in #372),
    so the whole server exits 0. Through start.py the surviving worker inherits the ignored
    SIGTERM and finishes its in-flight requests gracefully before the server exits.
    """
    server = start_two_workers(servers, tmp_path, "hypercorn", GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT), ACCESS_LOG="")
    tree = descendants(server.pid)
    victim, survivor = worker_pids(server.pid)
    with Load(server.port, CRASH_CLIENTS) as load:
        time.sleep(1.5)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        status = server.process.wait(GRACEFUL_TIMEOUT + 10)
        stopped = time.monotonic()
        load.stop()
    records = load.records
    in_flight = [r for r in records if r.sent is not None and r.sent < killed and (r.done is None or r.done > killed)]
    after_kill = [r for r in records if r.sent is None or r.sent >= killed]
    counts = {
        "server": "hypercorn",
        "exit_status": status,
        "seconds_to_exit_after_kill": round(stopped - killed, 2),
        "in_flight_at_kill": len(in_flight),
        "in_flight_completed_by_survivor": sum(r.status == 200 and r.body == str(survivor).encode() for r in in_flight),
        "in_flight_cut": sum(r.status != 200 for r in in_flight),
        "requests_after_kill": len(after_kill),
        "requests_after_kill_failed": sum(r.status != 200 for r in after_kill),
        "left_behind": all_gone([server.pid, *tree]),
    }
    report(record_property, "hypercorn worker crash", counts)

    # What happens (measured): the whole server stops, within the graceful timeout, and
    # leaves nothing behind; its exit status is 0 although a worker was killed.
    assert status == 0, server.output()[-2000:]
    assert stopped - killed < GRACEFUL_TIMEOUT
    assert counts["left_behind"] == []
    assert "Running on" in server.output()


def test_hypercorn_exits_0_when_its_workers_cannot_load_the_app(tmp_path, record_property):
    """Measured, for the README's exit statuses: the same Hypercorn bug as above, at start-up."""
    app_dir = copy_app(tmp_path)
    env = clean_env(
        HOST="127.0.0.1", PORT=str(reserve_port()), SERVER="hypercorn", WEB_CONCURRENCY="2", VARIABLE_NAME="missing"
    )
    result = run_start([], env, app_dir, timeout=60)
    report(record_property, "hypercorn, app fails to load", {"exit_status": result.returncode})
    assert "NoAppError" in result.stderr + result.stdout
    assert result.returncode == 0  # gunicorn exits 4 and uvicorn 3 here; a restart policy "on-failure" sees success


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
