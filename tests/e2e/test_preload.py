"""PRELOAD_APP under real Gunicorn, through `python start.py`: the app is imported once, in the master,
before the workers fork; its objects are frozen there; SIGHUP and SIGTERM behave as without it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import (
    copy_app,
    http_get,
    local_env,
    start_server,
    stop,
    wait_for_workers,
    wait_until,
    wait_until_workers_serve,
)

pytestmark = pytest.mark.e2e


def imports(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def preload_app(tmp_path: Path) -> tuple[Path, Path]:
    return copy_app(tmp_path, "preload"), tmp_path / "imported-by"


def test_the_master_imports_the_app_once_and_two_workers_serve(servers, tmp_path):
    app_dir, record = preload_app(tmp_path)
    env = local_env(PRELOAD_APP="true", WEB_CONCURRENCY="2", IMPORTED_BY=str(record))
    server = start_server(servers, app_dir, env, wait=True, expect_status=200)
    assert imports(record) == [server.pid]  # start.py exec'd Gunicorn: its master has start.py's PID
    workers = wait_for_workers(server.pid, 2)
    assert len(workers) == 2
    assert wait_until_workers_serve(server.url("/pid"), 2) == {str(pid) for pid in workers}
    # the when_ready hook froze the master's objects before the fork; each worker inherits the frozen set
    assert int(http_get(server.url("/frozen"))[1]) > 0
    assert imports(record) == [server.pid]
    stop(server)


def test_without_preload_each_worker_imports_the_app(servers, tmp_path):
    app_dir, record = preload_app(tmp_path)
    env = local_env(WEB_CONCURRENCY="2", IMPORTED_BY=str(record))
    server = start_server(servers, app_dir, env, wait=True, expect_status=200)
    workers = wait_for_workers(server.pid, 2)
    assert wait_until(lambda: sorted(imports(record)) == sorted(workers)), (imports(record), workers)
    assert server.pid not in imports(record)
    assert http_get(server.url("/frozen"))[1] == "0"
    stop(server)


def test_sighup_replaces_the_workers_without_importing_again(servers, tmp_path):
    app_dir, record = preload_app(tmp_path)
    env = local_env(PRELOAD_APP="true", WEB_CONCURRENCY="2", IMPORTED_BY=str(record))
    server = start_server(servers, app_dir, env, wait=True, expect_status=200)
    before = set(wait_for_workers(server.pid, 2))
    assert len(before) == 2
    server.process.send_signal(signal.SIGHUP)
    replaced = wait_until(lambda: (now := set(wait_for_workers(server.pid, 2, 1))) and not now & before and now)
    assert replaced and len(replaced) == 2, (before, replaced)
    assert wait_until_workers_serve(server.url("/pid"), 2) == {str(pid) for pid in replaced}
    # preloaded code is not reloaded by HUP: still the master's one import
    assert imports(record) == [server.pid]
    stop(server)


def test_their_own_when_ready_runs_beside_the_freezing_one(servers, tmp_path):
    app_dir, record = preload_app(tmp_path)
    marker = tmp_path / "their-when-ready"
    (app_dir / "gunicorn_conf.py").write_text(
        f"def when_ready(server):\n    open({str(marker)!r}, 'w').write(str(server.cfg.preload_app))\n"
    )
    env = local_env(PRELOAD_APP="true", WEB_CONCURRENCY="2", IMPORTED_BY=str(record))
    server = start_server(servers, app_dir, env, wait=True, expect_status=200)
    assert marker.read_text() == "True"
    assert int(http_get(server.url("/frozen"))[1]) > 0
    assert imports(record) == [server.pid]
    stop(server)


def test_an_app_that_fails_to_import_fails_the_master(servers, tmp_path):
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("raise RuntimeError('cannot start')\napp = None\n")
    server = start_server(servers, app_dir, local_env(PRELOAD_APP="true", WEB_CONCURRENCY="2"))
    status = server.process.wait(timeout=30)
    assert status != 0, server.output()
    assert "cannot start" in server.output()
