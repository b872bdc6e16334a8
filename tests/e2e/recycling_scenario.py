"""One server recycling its workers by WORKER_MAX_MEMORY and WORKER_LIFETIME under a steady load, through
`python start.py`; run as a script (by tests/e2e/test_recycling.py), in a network namespace of its own when
given --own-network, where net.ipv4.tcp_migrate_req can be turned on as the README advises for Granian.

    python recycling_scenario.py [--own-network] SERVER APP_DIR LOG_DIR

prints one JSON object: what the load saw, the fewest live workers, the replacement lines, the exit status.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import START, all_gone, clean_env, descendants, http_get, proc_stat, reserve_port, worker_pids

LIFETIME_S = 60  # the least WORKER_LIFETIME takes
MAX_MEMORY = "120M"
GROWTH_MB = 150  # what one worker is made to hold: well above MAX_MEMORY
BOUND_S = LIFETIME_S * 1.1 + 30  # the last lifetime replacement, with its jitter, and a margin
# (path, keep-alive): keep-alive and new connections, one of them on 1 s requests
CLIENTS = [("/pid", True), ("/pid", True), ("/pid", False), ("/pid", False), ("/slow?seconds=1", True)]
# The line each server writes when it replaces a worker, by WORKER_MAX_MEMORY and by WORKER_LIFETIME.
REPLACED = {
    "granian": ("RSS over threshold, gracefully respawning", "lifetime expired, gracefully respawning"),
}
KEEPER = ("above WORKER_MAX_MEMORY", "past WORKER_LIFETIME")
NO_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class SteadyLoad:
    """Client threads, each looping over one path on a kept-alive or a new connection, bounded in time.

    A request sent on a reused connection that the server closed at that moment, which got no answer
    at all, is sent again once on a new connection, as HTTP clients do (RFC 9112 9.3.1; Go's
    net/http, urllib3 and browsers for idempotent requests). Anything else is a failure.
    """

    def __init__(self, port: int, limit_s: float) -> None:
        self.port = port
        self.deadline = time.monotonic() + limit_s
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answered = 0
        self.retried = 0
        self.first_answer: dict[int, float] = {}  # worker pid: when it first answered
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.client, args=client, daemon=True) for client in CLIENTS]

    def __enter__(self) -> SteadyLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def ask(self, connection: http.client.HTTPConnection, path: str, keep_alive: bool) -> http.client.HTTPResponse:
        connection.request("GET", path, headers={} if keep_alive else {"Connection": "close"})
        response = connection.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        return response

    def client(self, path: str, keep_alive: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            reused = connection is not None
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                try:
                    response = self.ask(connection, path, keep_alive)
                except NO_ANSWER:
                    if not reused:
                        raise
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                    with self.lock:
                        self.retried += 1
                    response = self.ask(connection, path, keep_alive)
                with self.lock:
                    if response.status == 200:
                        self.answered += 1
                        self.first_answer.setdefault(int(response.body), time.monotonic())
                    else:
                        self.failures.append(f"{path}: status {response.status}")
                if not keep_alive or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.failures.append(f"{path} (reused {reused}): {type(error).__name__}: {error}")
                connection.close()
                connection = None
                time.sleep(0.05)
            time.sleep(0.01)
        if connection is not None:
            connection.close()


def own_network() -> None:
    """In a new network namespace: loopback up, and queued connections migrated on a worker's exit."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    Path("/proc/sys/net/ipv4/tcp_migrate_req").write_text("1")


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "--own-network":
        own_network()
        args = args[1:]
    server_name, app_dir, log_dir = args[0], Path(args[1]), Path(args[2])
    port = reserve_port()
    env = clean_env(
        HOST="127.0.0.1",
        PORT=str(port),
        SERVER=server_name,
        WEB_CONCURRENCY="2",
        ACCESS_LOG="",
        GRACEFUL_TIMEOUT="10",
        WORKER_LIFETIME=str(LIFETIME_S),
        WORKER_MAX_MEMORY=MAX_MEMORY,
    )
    lines = REPLACED.get(server_name, KEEPER)
    output = log_dir / "server.log"
    with open(output, "w") as log:
        server = subprocess.Popen(
            [sys.executable, str(START)], cwd=app_dir, env=env, stdout=log, stderr=log, start_new_session=True
        )
    result: dict = {"server": server_name}
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                http_get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        started = time.monotonic()
        first = worker_pids(server.pid)
        live: list[int] = []
        first_seen: dict[int, float] = {}

        def sample() -> None:
            workers = [pid for pid in worker_pids(server.pid) if (proc_stat(pid) or "Z")[0] != "Z"]
            for pid in workers:
                first_seen.setdefault(pid, time.monotonic())
            live.append(len(workers))

        with SteadyLoad(port, BOUND_S + 10) as load:
            time.sleep(1)
            bloated = int(http_get(f"http://127.0.0.1:{port}/grow?mb={GROWTH_MB}", timeout=10)[1])
            while time.monotonic() - started < BOUND_S:
                sample()
                text = output.read_text()
                if all(line in text for line in lines):
                    break
                time.sleep(0.05)
            seconds = time.monotonic() - started
            settled = time.monotonic() + 15  # Granian stops the old worker 3.5 s after its successor starts
            while time.monotonic() < settled and set(first) & set(worker_pids(server.pid)):
                sample()
                time.sleep(0.05)
            for _ in range(40):  # 2 s more of load and samples after the last replacement
                sample()
                time.sleep(0.05)
        text = output.read_text()
        tree = descendants(server.pid)
        os.kill(server.pid, signal.SIGTERM)
        status = server.wait(30)
        result.update(
            answered=load.answered,
            retried_after_a_close=load.retried,
            failures=load.failures,
            fewest_live_workers=min(live),
            live_workers_at_end=live[-1],
            seconds_until_both_replacements=round(seconds, 1),
            # each successor: from its process's start (as sampled) to its first answer
            seconds_to_serve=[
                round(load.first_answer[pid] - seen, 2)
                for pid, seen in sorted(first_seen.items(), key=lambda item: item[1])
                if pid not in first and pid in load.first_answer
            ],
            replacement_lines=[line for line in text.splitlines() if any(key in line for key in lines)],
            bloated_worker_gone=bloated not in worker_pids(server.pid) if server.poll() is None else True,
            first_workers_gone=not set(first) & set(tree),
            exit_status=status,
            left_behind=all_gone([server.pid, *tree]),
        )
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
