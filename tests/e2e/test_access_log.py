"""The access log is written in batches (module asgi_start_access): no record is lost to a graceful stop
under any server, and a killed worker loses only what it logged in its last FLUSH_SECONDS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

import pytest
from helpers import SERVERS, Server, copy_app, local_env, stop, wait_for_workers, wait_until

import start

pytestmark = pytest.mark.e2e
REQUESTS = 300


def served_paths(output: str) -> list[str]:
    """The paths of the access records in the output (LOG_FORMAT=json), in order."""
    records = (json.loads(line) for line in output.splitlines() if line.startswith("{"))
    return [record["path"] for record in records if record["logger"].endswith(".access")]


def serve_numbered(port: int, prefix: str) -> None:
    """REQUESTS requests on two keep-alive connections, each a path of its own."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(2)]
    try:
        for number in range(REQUESTS):
            connection = connections[number % 2]
            connection.request("GET", f"/{prefix}/{number}")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_graceful_stop_writes_every_record(servers, tmp_path, server_name):
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", LOG_FORMAT="json")
    server = Server(copy_app(tmp_path), env)
    servers.append(server)
    assert server.wait_ready("/ready")[0] == 200
    serve_numbered(server.port, "n")
    output = stop(server)  # at once: most records are still waiting in the workers
    numbered = [path for path in served_paths(output) if path.startswith("/n/")]
    assert sorted(numbered) == sorted(f"/n/{number}" for number in range(REQUESTS))


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_killed_worker_loses_only_its_last_moments(servers, tmp_path, server_name):
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", LOG_FORMAT="json")
    server = Server(copy_app(tmp_path), env)
    servers.append(server)
    assert server.wait_ready("/ready")[0] == 200
    workers = wait_for_workers(server.pid, 2)
    serve_numbered(server.port, "n")
    time.sleep(start.FLUSH_SECONDS * 5)  # longer than a batch waits
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    numbered = wait_until(lambda: [path for path in served_paths(server.output()) if path.startswith("/n/")], 5)
    assert sorted(numbered) == sorted(f"/n/{number}" for number in range(REQUESTS))
    server.kill_all()
