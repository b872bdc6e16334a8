"""prometheus_client's multiprocess mode under each server with 2 workers, through start.py:
counts add up across workers, an earlier run's files do not leak in, and a killed and
replaced worker leaves the livesum gauge at the live count (Gunicorn: its child_exit hook;
Uvicorn and Hypercorn: start.py's worker keeper; Granian: the replacement's sweep at its start)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import (
    SERVERS,
    Server,
    clean_env,
    copy_app,
    http_get,
    reserve_port,
    wait_for_workers,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.e2e
pytest.importorskip("prometheus_client")


def metric(server: Server, name: str) -> float:
    status, text = http_get(server.url("/metrics"))
    assert status == 200
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def earlier_run(metrics_dir, app_dir) -> None:
    """A real earlier run's files: 100 requests counted by a process that is gone."""
    script = "import main\nfor _ in range(100):\n    main.REQUESTS.inc()\n"
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), PYTHONPATH=str(app_dir))
    subprocess.run([sys.executable, "-c", script], env=env, cwd=app_dir, check=True)


@pytest.mark.parametrize("server_name", SERVERS)
def test_counts_add_up_old_files_go_and_dead_workers_leave_the_live_gauge(servers, tmp_path, server_name):
    app_dir = copy_app(tmp_path, "metrics")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    earlier_run(metrics_dir, app_dir)
    assert any(name.startswith("counter_") for name in os.listdir(metrics_dir))
    (metrics_dir / "README.txt").write_text("not prometheus_client's: stays")

    env = clean_env(
        SERVER=server_name,
        HOST="127.0.0.1",
        PORT=str(reserve_port()),
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    server = Server(app_dir, env)
    servers.append(server)
    assert server.wait_ready("/metrics")[0] == 200
    first = wait_for_workers(server.pid, 2)
    assert len(first) == 2

    # requests on fresh connections until both workers have served some
    served: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while (len(served) < 2 or sum(served.values()) < 40) and time.monotonic() < deadline:
        pid = http_get(server.url("/"))[1]
        served[pid] = served.get(pid, 0) + 1
    assert len(served) == 2, served
    assert metric(server, "app_requests_total") == sum(served.values())  # both add up; the earlier 100 are gone
    assert metric(server, "app_workers") == 2
    assert (metrics_dir / "README.txt").read_text() == "not prometheus_client's: stays"

    # a worker killed and replaced: the live gauge counts the live workers, not the dead one
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    replaced = worker_pids(server.pid)
    while time.monotonic() < deadline and not (len(replaced) == 2 and first[0] not in replaced):
        time.sleep(0.1)
        replaced = worker_pids(server.pid)  # one reading per check: the killed one may still be listed
    assert len(replaced) == 2 and first[0] not in replaced

    def dead_ones_gauge() -> list[str]:
        return [name for name in os.listdir(metrics_dir) if name.endswith(f"_{first[0]}.db") and "live" in name]

    # the killed worker is marked dead by the main process when it reaps it, or under Granian by its replacement
    # before that imports the app; the replacement sets its gauge when it has imported the app
    wait_until(lambda: not dead_ones_gauge() and metric(server, "app_workers") == 2, deadline_s=20, step=0.1)
    assert dead_ones_gauge() == []
    assert metric(server, "app_workers") == 2
    # a worker that ends cleanly leaves it too: at the stop, each worker's own live gauge goes with it
    assert server.terminate() == 0
    assert not [name for name in os.listdir(metrics_dir) if name.startswith("gauge_live")]


def test_the_directory_is_created_and_a_file_in_its_place_is_an_error(servers, tmp_path):
    from helpers import run_start

    app_dir = copy_app(tmp_path, "metrics")
    (tmp_path / "taken").write_text("")
    result = run_start(["--dry-run"], clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "taken")), app_dir)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"asgi-start: error: PROMETHEUS_MULTIPROC_DIR={str(tmp_path / 'taken')!r}: {tmp_path / 'taken'} exists and is not a directory\n"
    )
    missing = tmp_path / "new" / "metrics"
    env = clean_env(
        HOST="127.0.0.1", PORT=str(reserve_port()), WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(missing)
    )
    server = Server(app_dir, env)
    servers.append(server)
    assert server.wait_ready("/metrics")[0] == 200
    assert missing.is_dir()
    assert server.terminate() == 0
