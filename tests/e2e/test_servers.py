"""End to end: `python start.py` becomes each real server on 127.0.0.1, and behaves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import (
    REPO,
    SERVERS,
    all_gone,
    as_python_m,
    clean_env,
    cmdline,
    copy_app,
    descendants,
    dry_run,
    http_get,
    local_env,
    reserve_port,
    session_processes,
    start_server,
    wait_for_workers,
    wait_until_workers_serve,
    worker_pids,
)

pytestmark = pytest.mark.e2e

# Runs before the server: proves it ran first by finding the port still closed.
PRESTART = """\
import os, socket, sys, time
port = int(os.environ["PORT"])
with socket.socket() as probe:
    closed = probe.connect_ex(("127.0.0.1", port)) != 0
with open("prestart-ran.txt", "w") as marker:
    marker.write(f"port_closed={closed} pid={os.getpid()} t={time.time()}")
"""


def slow_request(url: str, results: list) -> None:
    try:
        results.append(http_get(url, timeout=30))
    except OSError as error:
        results.append(error)


@pytest.mark.parametrize("server_name", SERVERS)
def test_serves_execs_counts_workers_runs_prestart_first_and_stops_gracefully(servers, tmp_path, server_name):
    app_dir = copy_app(tmp_path)
    (app_dir / "prestart.py").write_text(PRESTART)
    env = local_env(SERVER=server_name, WORKERS_PER_CORE="1.5")
    expected = dry_run(env, app_dir)
    assert expected["workers"] == 3  # 2 CPUs × 1.5
    server = start_server(servers, app_dir, env)

    assert server.wait_ready() == (200, "hello from the test app")

    # exec happened: the PID we started is the server itself, start.py is gone
    argv = cmdline(server.pid)
    assert as_python_m(argv)[1:3] == ["-m", server_name] and not any("start.py" in part for part in argv)
    assert argv == expected["argv"]
    workers = wait_for_workers(server.pid, expected["workers"])
    assert len(workers) == expected["workers"]
    assert wait_until_workers_serve(server.url("/pid"), len(workers)) == {str(pid) for pid in workers}

    marker = (app_dir / "prestart-ran.txt").read_text()
    assert marker.startswith("port_closed=True")
    output = server.output()
    assert f"INFO asgi-start [{server.pid}] running pre-start script" in output
    assert f"3 workers = 2 CPUs (CPU affinity) × WORKERS_PER_CORE 1.5 | bind 127.0.0.1:{server.port}" in output

    # SIGTERM while a request is in flight: it completes, the server exits 0, nothing is left
    tree = descendants(server.pid)
    results: list = []
    request = threading.Thread(target=slow_request, args=(server.url("/slow?seconds=1"), results))
    request.start()
    time.sleep(0.4)
    assert server.terminate() == 0, server.output()
    request.join(30)
    assert [status for status, _ in results] == [200] and int(results[0][1]) in workers
    assert all_gone([server.pid, *tree]) == []


@pytest.mark.parametrize("server_name", SERVERS)
def test_start_py_alone_still_passes_every_setting(servers, tmp_path, server_name):
    alone = tmp_path / "image-root"
    alone.mkdir()
    shutil.copy(REPO / "start.py", alone / "start.py")  # no config file anywhere
    app_dir = copy_app(tmp_path)
    port = reserve_port()
    env = clean_env(
        SERVER=server_name,
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="3",
        ACCESS_LOG="",
        LOG_LEVEL="warning",
        KEEP_ALIVE="7",
    )
    plan = dry_run(env, app_dir, start=alone / "start.py")
    assert plan["config_file"] is None
    server = start_server(servers, app_dir, env, start=alone / "start.py")
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 3)) == 3
    # every worker up and serving, so SIGTERM does not meet one still starting (see README, Hypercorn)
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    for _ in range(3):
        http_get(server.url("/?probe-access-log"))
    assert server.terminate() == 0
    output = server.output()
    assert "probe-access-log" not in output  # ACCESS_LOG="" disabled it
    server_lines = [line for line in output.splitlines() if " asgi-start [" not in line]
    # LOG_LEVEL=warning reached the server: no INFO records (Gunicorn 23 still says "Worker was sent
    # SIGTERM!" at ERROR on every stop; newer ones at INFO)
    assert not [line for line in server_lines if " INFO " in line or " DEBUG " in line], output


@pytest.mark.parametrize(
    ("server_name", "config_argument"),
    [("gunicorn", "gunicorn_conf.py"), ("hypercorn", "file:hypercorn_conf.py")],
)
def test_default_config_file_run_by_hand_honours_the_environment(servers, tmp_path, server_name, config_argument):
    app_dir = copy_app(tmp_path)
    for name in ("start.py", "gunicorn_conf.py", "hypercorn_conf.py"):
        shutil.copy(REPO / name, app_dir / name)
    port = reserve_port()
    env = clean_env(BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="3")
    command = [sys.executable, "-m", server_name, "-c", config_argument, "main:app"]
    server = start_server(servers, app_dir, env, command=command)
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 3)) == 3
    assert len(wait_until_workers_serve(f"http://127.0.0.1:{port}/pid", 3)) == 3
    assert server.terminate() == 0


def test_default_config_file_reports_bad_environment_like_start_py(tmp_path):
    for name in ("start.py", "gunicorn_conf.py"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "main.py").write_text("app = None\n")
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "main:app"],
        cwd=tmp_path,
        env=clean_env(PORT="99999"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "asgi-start: error: PORT='99999' is not valid" in result.stderr and "Traceback" not in result.stderr


USER_CONFIGS = {
    "gunicorn": (
        "gunicorn_conf.py",
        "import runpy\nglobals().update(runpy.run_path({default!r}))\nworkers = 1\nproc_name = 'extended'\n",
    ),
    "hypercorn": (
        "hypercorn_conf.py",
        "import runpy\nglobals().update(runpy.run_path({default!r}))\nworkers = 1\n",
    ),
}


@pytest.mark.parametrize("server_name", ["gunicorn", "hypercorn"])
def test_users_config_extends_the_default(servers, tmp_path, server_name):
    app_dir = copy_app(tmp_path)
    name, template = USER_CONFIGS[server_name]
    (app_dir / name).write_text(template.format(default=str(REPO / name)))
    server = start_server(servers, app_dir, local_env(SERVER=server_name, WEB_CONCURRENCY="3"))
    # the bind (from the environment, via the default) works, and the override wins
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 1)) == 1
    assert f"config {'file:' if server_name == 'hypercorn' else ''}{app_dir / name}" in server.output()
    assert server.terminate() == 0


def test_prestart_failure_stops_the_start_with_its_status(tmp_path):
    app_dir = copy_app(tmp_path)
    (app_dir / "prestart.sh").write_text("echo preparing; exit 7\n")
    port = reserve_port()
    result = subprocess.run(
        [sys.executable, str(REPO / "start.py")],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=clean_env(HOST="127.0.0.1", PORT=str(port)),
        timeout=30,
        check=False,
    )
    assert result.returncode == 7
    assert "preparing" in result.stdout
    assert "pre-start script" in result.stderr and "exited with status 7" in result.stderr
    assert "Listening" not in result.stderr


def test_prestart_example_waits_for_a_service(tmp_path):
    app_dir = copy_app(tmp_path)
    port = reserve_port()
    env = clean_env(
        HOST="127.0.0.1",
        PORT=str(port),
        PRE_START_PATH=str(REPO / "prestart.py"),
        WAIT_FOR=f"127.0.0.1:{reserve_port()}",
        WAIT_FOR_TIMEOUT="1",
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "start.py")],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "still unreachable after 1s" in result.stderr


def test_server_exit_status_is_propagated(tmp_path):
    # Gunicorn exits 4 when the app cannot be loaded; start.py has become Gunicorn, so that is our status.
    # One worker: with several, Gunicorn 27.0.1 races and sometimes exits 1 instead (its own bug, see README).
    app_dir = copy_app(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "start.py")],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=clean_env(HOST="127.0.0.1", PORT=str(reserve_port()), VARIABLE_NAME="missing", WEB_CONCURRENCY="1"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stderr[-2000:]


# The exit status of the server start.py became, for an app it cannot load (one worker: see above).
# Hypercorn 0.18 exited 0 (its bug); start.py's worker keeper stops it with 3 after 5 early deaths.
# Granian's workers fail, and it stops: it takes the same worker failing twice in a row for a crash
# loop, even with --respawn-failed-workers. Uvicorn exits 3 (its STARTUP_FAILURE); the older Uvicorn
# pip resolves for Python 3.9 exits 1.
APP_LOAD_FAILURE_STATUS = {"gunicorn": {4}, "uvicorn": {3, 1}, "hypercorn": {3}, "granian": {1}}


@pytest.mark.parametrize("server_name", SERVERS)
def test_app_that_cannot_load_gives_the_servers_exit_status(tmp_path, server_name):
    app_dir = copy_app(tmp_path)
    env = clean_env(
        HOST="127.0.0.1", PORT=str(reserve_port()), SERVER=server_name, VARIABLE_NAME="missing", WEB_CONCURRENCY="1"
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(REPO / "start.py")],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode in APP_LOAD_FAILURE_STATUS[server_name], result.stderr[-2000:]
    assert time.monotonic() - began < 30  # no restart loop
    assert "main:missing" in result.stdout + result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_granian_app_load_failure_is_json_records_and_exit_1(tmp_path, workers):
    """Every worker fails to load the app: Granian stops (crash loop), exit 1; each failure is one JSON
    record with the traceback, nothing raw on stderr; no process left behind."""
    app_dir = copy_app(tmp_path)
    env = clean_env(
        HOST="127.0.0.1",
        PORT=str(reserve_port()),
        SERVER="granian",
        VARIABLE_NAME="missing",
        WEB_CONCURRENCY=workers,
        LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, str(REPO / "start.py")],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 1, stderr[-3000:]
    entries = [json.loads(line) for line in (stdout + stderr).splitlines()]  # every line
    failures = [entry for entry in entries if entry["message"] == "Cannot load application from 'main:missing'"]
    assert failures and all(entry["level"] == "error" for entry in failures), entries
    assert all("application not found" in entry["exception"] for entry in failures), failures
    assert any(entry["message"] == "Worker crash loop detected, exiting" for entry in entries), entries
    assert session_processes(process.pid) == []


def test_uvicorn_many_workers_on_asyncio_has_no_delayed_ack_stall(servers, tmp_path):
    """Uvicorn's own multi-process bind leaves Nagle on; with --loop asyncio every keep-alive response then
    waits for a delayed ACK, about 40 ms. start.py's pre-bound socket has TCP_NODELAY. A functional check of
    that socket option (a 40 ms stall, or none), not a performance claim: the bound sits far from both."""
    import http.client
    import statistics

    app_dir = copy_app(tmp_path)
    port = reserve_port()
    env = clean_env(HOST="127.0.0.1", PORT=str(port), SERVER="uvicorn", WEB_CONCURRENCY="2", ACCESS_LOG="")
    server = start_server(
        servers, app_dir, env, port=port, wait=True, args=("--", "--loop", "asyncio", "--http", "h11")
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    for _ in range(40):
        began = time.perf_counter()
        connection.request("GET", "/")
        connection.getresponse().read()
        latencies.append(time.perf_counter() - began)
    connection.close()
    median = statistics.median(latencies)
    assert median < 0.015, f"median {median * 1000:.1f} ms: the delayed-ACK stall is back"
    assert server.terminate() == 0


@pytest.mark.parametrize("server_name", SERVERS)
def test_reload_mode_serves_one_process_and_reloads(servers, tmp_path, server_name):
    app_dir = copy_app(tmp_path)
    server = start_server(servers, app_dir, local_env(SERVER=server_name, WITH_RELOAD="true"))
    assert server.wait_ready()[1] == "hello from the test app"
    main = app_dir / "main.py"
    time.sleep(1.1)  # let the reloader take its first snapshot
    main.write_text(main.read_text().replace("hello from the test app", "hello after reload"))
    deadline = time.monotonic() + 20
    body = ""
    while time.monotonic() < deadline and body != "hello after reload":
        try:
            body = http_get(server.url(), timeout=2)[1]
        except OSError:
            pass
        time.sleep(0.2)
    assert body == "hello after reload", server.output()[-2000:]
    served_by = {http_get(server.url("/pid"))[1] for _ in range(5)}
    assert len(served_by) == 1
    tree = descendants(server.pid)
    assert server.terminate() == 0
    assert all_gone([server.pid, *tree]) == []


def test_worker_processes_match_dry_run_under_uvicorn_hypercorn_and_granian_defaults(servers, tmp_path):
    app_dir = copy_app(tmp_path)
    for server_name in ("uvicorn", "hypercorn", "granian"):
        server = start_server(servers, app_dir, local_env(SERVER=server_name))
        planned = dry_run(clean_env(HOST="127.0.0.1", PORT=str(server.port), SERVER=server_name), app_dir)["workers"]
        assert planned == 2  # 2 CPUs × WORKERS_PER_CORE 1
        assert server.wait_ready()[0] == 200
        assert len(wait_for_workers(server.pid, planned)) == planned == len(worker_pids(server.pid))
        assert len(wait_until_workers_serve(server.url("/pid"), planned)) == planned
        assert server.terminate() == 0
