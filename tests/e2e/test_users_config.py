"""A config file of the user's own (tiangolo's and hypercorn-docker's habit), laid over start.py's options.

What their file sets wins; what it leaves alone is start.py's; some of start.py's
guarantees survive any file. Each case starts the real server through start.py,
with the user's file in the app directory (or named by GUNICORN_CONF /
HYPERCORN_CONF), and checks what really runs: the worker class Gunicorn reports,
the answers, the log lines, the files the hooks write.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    clean_env,
    copy_app,
    dry_run,
    get_json,
    http_get,
    local_env,
    reserve_port,
    run_start,
    start_server,
    wait_for_output,
    wait_for_workers,
    worker_pids,
)

import start

pytestmark = pytest.mark.e2e

# What tiangolo's docs and tests put in a custom gunicorn_conf.py: listeners, workers, level; no worker class.
TIANGOLO_STYLE = 'bind = "127.0.0.1:{port}"\nworkers = 2\nloglevel = "info"\n'

# An app that shows which worker class serves it and what the worker's loggers let through.
PROBE_APP = """
import logging, os

async def app(scope, receive, send):
    if scope["type"] == "lifespan":  # Hypercorn's trio worker fails on an app that just returns here
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/debug":
        logging.getLogger("uvicorn.error").debug("worker %s says debug", os.getpid())
    import sniffio
    body = {"pid": os.getpid(), "uvicorn.error": logging.getLogger("uvicorn.error").getEffectiveLevel(),
            "root_path": scope.get("root_path", ""), "client": list(scope["client"] or ()),
            "async_library": sniffio.current_async_library()}
    import json
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""


def probe_app(tmp_path: Path) -> Path:
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(PROBE_APP)
    return app_dir


# --- the worker class -------------------------------------------------------------


@pytest.mark.parametrize("where", ["gunicorn_conf.py", "app/gunicorn_conf.py", "GUNICORN_CONF"])
def test_a_file_without_worker_class_runs_the_uvicorn_worker(servers, tmp_path, where):
    """Before: Gunicorn's sync worker ran the ASGI app and every request was a 500."""
    app_dir = copy_app(tmp_path)
    port = reserve_port()
    env = {}
    if where == "GUNICORN_CONF":
        conf = tmp_path / "elsewhere" / "my gunicorn.py"
        env["GUNICORN_CONF"] = str(conf)
    else:
        conf = app_dir / where
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(TIANGOLO_STYLE.format(port=port))
    plan = dry_run(clean_env(**env), app_dir)
    assert plan["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert plan["config_file"] == str(conf)
    assert plan["bind"] == [f"127.0.0.1:{port}"] and plan["workers"] == 2  # as the file says
    server = start_server(servers, app_dir, clean_env(**env), port=port)  # no HOST/PORT: the file's bind listens
    assert server.wait_ready() == (200, "hello from the test app")
    output = server.output()
    assert "Using worker: uvicorn_worker.UvicornWorker" in output
    assert len(wait_for_workers(server.pid, 2)) == 2
    assert server.terminate() == 0


def test_worker_class_precedence(servers, tmp_path):
    """WORKER_CLASS when set > the user's file > start.py's default; GUNICORN_CMD_ARGS is read last of all."""
    app_dir = copy_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "uvicorn_worker.UvicornH11Worker"\n')
    assert dry_run(clean_env(), app_dir)["worker_class"] == "uvicorn_worker.UvicornH11Worker"
    given = clean_env(WORKER_CLASS="uvicorn_worker.UvicornWorker")
    assert dry_run(given, app_dir)["worker_class"] == "uvicorn_worker.UvicornWorker"
    in_args = clean_env(
        GUNICORN_CMD_ARGS="-k uvicorn.workers.UvicornWorker", WORKER_CLASS="uvicorn_worker.UvicornWorker"
    )
    assert dry_run(in_args, app_dir)["worker_class"] == "uvicorn.workers.UvicornWorker"
    (app_dir / "gunicorn_conf.py").write_text(
        'import os\nworker_class = os.environ.get("MY_CLASS", "uvicorn_worker.UvicornH11Worker")\n'
    )
    assert dry_run(clean_env(), app_dir)["worker_class"] == f"set by file:{app_dir / 'gunicorn_conf.py'}"

    # the file's class runs
    port = reserve_port()
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "uvicorn_worker.UvicornH11Worker"\nworkers = 1\n')
    server = start_server(servers, app_dir, local_env(PORT=str(port)), wait=True, expect_status=200)
    assert "Using worker: uvicorn_worker.UvicornH11Worker" in server.output()
    assert server.terminate() == 0
    # WORKER_CLASS over the file's (the file names Gunicorn's sync worker, which cannot serve ASGI)
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "sync"\nworkers = 1\n')
    server = start_server(
        servers, app_dir, local_env(WORKER_CLASS="uvicorn_worker.UvicornH11Worker"), wait=True, expect_status=200
    )
    assert "Using worker: uvicorn_worker.UvicornH11Worker" in server.output()
    assert server.terminate() == 0


def test_root_path_reaches_the_app_through_the_files_uvicorn_worker(servers, tmp_path):
    app_dir = probe_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "uvicorn_worker.UvicornH11Worker"\nworkers = 1\n')
    assert dry_run(clean_env(ROOT_PATH="/api"), app_dir)["worker_class"] == "asgi_start.UvicornH11Worker"
    server = start_server(servers, app_dir, local_env(ROOT_PATH="/api"), wait=True, expect_status=200)
    assert get_json(server.port)["root_path"] == "/api"
    assert server.terminate() == 0
    # a class that cannot carry ROOT_PATH is refused before anything starts
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "sync"\n')
    result = run_start(["--dry-run"], clean_env(ROOT_PATH="/api"), app_dir)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ROOT_PATH under SERVER=gunicorn" in result.stderr


# --- log levels -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["GUNICORN_CMD_ARGS", "users file"])
def test_a_debug_level_from_gunicorn_cmd_args_or_the_file_reaches_master_and_workers(servers, tmp_path, how):
    """Before: start.py's logging configuration pinned gunicorn.error to LOG_LEVEL; nothing came out at debug."""
    app_dir = probe_app(tmp_path)
    env = {"WEB_CONCURRENCY": "1"}
    if how == "GUNICORN_CMD_ARGS":
        env["GUNICORN_CMD_ARGS"] = "--log-level debug"
    else:
        (app_dir / "gunicorn_conf.py").write_text('loglevel = "debug"\n')
    server = start_server(servers, app_dir, local_env(**env), wait=True, expect_status=200)
    body = get_json(server.port, "/debug")
    assert body["uvicorn.error"] == 10  # DEBUG in the worker
    output = wait_for_output(server, f"worker {body['pid']} says debug", deadline_s=10)
    assert f"DEBUG uvicorn.error [{body['pid']}] worker {body['pid']} says debug" in output
    assert f"DEBUG gunicorn.error [{server.pid}] Arbiter booted" in output
    assert server.terminate() == 0


def test_log_level_still_applies_without_an_override(servers, tmp_path):
    app_dir = probe_app(tmp_path)
    server = start_server(
        servers, app_dir, local_env(WEB_CONCURRENCY="1", LOG_LEVEL="warning"), wait=True, expect_status=200
    )
    assert get_json(server.port, "/debug")["uvicorn.error"] == 30
    output = server.output()
    assert " INFO gunicorn.error " not in output and " DEBUG " not in output
    assert server.terminate() == 0


# --- what survives the user's file ------------------------------------------------------


def test_logging_destinations_follow_the_file_and_the_format_stays_start_pys(servers, tmp_path):
    app_dir = probe_app(tmp_path)
    error_log = tmp_path / "gunicorn-error.log"
    (app_dir / "gunicorn_conf.py").write_text(f"workers = 1\nerrorlog = {str(error_log)!r}\naccesslog = None\n")
    server = start_server(servers, app_dir, local_env(LOG_FORMAT="json"), wait=True, expect_status=200)
    get_json(server.port)
    assert server.terminate() == 0
    records = [json.loads(line) for line in error_log.read_text().splitlines()]
    assert any(record["logger"] == "gunicorn.error" and "Booting worker" in record["message"] for record in records)
    assert all(record["logger"] != "uvicorn.access" for record in records)
    assert "uvicorn.access" not in server.output()  # their accesslog = None turns the access log off


def test_the_files_own_logging_configuration_replaces_start_pys(servers, tmp_path):
    app_dir = copy_app(tmp_path)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mine": {"format": "MINE %(name)s %(message)s"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "mine", "stream": "ext://sys.stderr"}},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["out"], "propagate": False}},
        "root": {"level": "INFO", "handlers": ["out"]},  # Gunicorn's defaults name a handler of theirs otherwise
    }
    (app_dir / "gunicorn_conf.py").write_text(f"workers = 1\nlogconfig_dict = {config!r}\n")
    server = start_server(servers, app_dir, local_env(), wait=True, expect_status=200)
    assert "MINE gunicorn.error Booting worker" in server.output()
    assert server.terminate() == 0


def test_start_pys_hooks_run_before_the_files_own(servers, tmp_path):
    """The user's post_fork and child_exit run, and so do start.py's: dead workers leave the live gauge."""
    pytest.importorskip("prometheus_client")
    app_dir = copy_app(tmp_path, "metrics")
    marks = tmp_path / "marks"
    marks.mkdir()
    (app_dir / "gunicorn_conf.py").write_text(
        "import os\n"
        f"MARKS = {str(marks)!r}\n"
        "def post_fork(server, worker):\n"
        "    open(os.path.join(MARKS, f'forked-{os.getpid()}'), 'w').close()\n"
        "def child_exit(server, worker):\n"
        "    open(os.path.join(MARKS, f'exited-{worker.pid}'), 'w').close()\n"
    )
    metrics_dir = tmp_path / "metrics"
    server = start_server(
        servers,
        app_dir,
        local_env(WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)),
        wait=True,
        expect_status=200,
    )
    first = wait_for_workers(server.pid, 2)
    assert len(first) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list(marks.glob("forked-*"))) < 2:
        time.sleep(0.05)
    assert sorted(path.name for path in marks.glob("forked-*")) == sorted(f"forked-{pid}" for pid in first)
    # both workers have set their live gauge
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list(metrics_dir.glob(f"gauge_live*_{first[0]}.db"))) == 0:
        http_get(server.url("/"))
    assert list(metrics_dir.glob(f"gauge_live*_{first[0]}.db"))
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (marks / f"exited-{first[0]}").exists():
        time.sleep(0.05)
    assert (marks / f"exited-{first[0]}").exists()  # theirs ran
    assert not list(metrics_dir.glob(f"gauge_live*_{first[0]}.db"))  # and start.py's marked it dead
    assert len(wait_for_workers(server.pid, 2)) == 2
    assert server.terminate() == 0


@pytest.mark.skipif(start.installed_version("gunicorn") < (25, 1), reason="Gunicorn's control socket is new in 25.1")
def test_the_control_socket_stays_off_unless_the_file_turns_it_on(servers, tmp_path):
    app_dir = copy_app(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (app_dir / "gunicorn_conf.py").write_text("workers = 1\n")
    server = start_server(servers, app_dir, local_env(HOME=str(home)), wait=True, expect_status=200)
    assert not (home / ".gunicorn").exists()
    assert server.terminate() == 0
    socket_path = tmp_path / "gunicorn.ctl"
    (app_dir / "gunicorn_conf.py").write_text(
        f"workers = 1\ncontrol_socket_disable = False\ncontrol_socket = {str(socket_path)!r}\n"
    )
    server = start_server(servers, app_dir, local_env(HOME=str(home)), wait=True, expect_status=200)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not socket_path.exists():
        time.sleep(0.05)
    assert socket_path.is_socket()
    assert server.terminate() == 0


def test_the_files_trusted_proxies_win_over_the_default(servers, tmp_path):
    app_dir = probe_app(tmp_path)
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    server = start_server(servers, app_dir, local_env(WEB_CONCURRENCY="1"), wait=True, expect_status=200)
    assert get_json(server.port, headers=forwarded)["client"][0] == "203.0.113.7"  # 127.0.0.1 is trusted by default
    assert server.terminate() == 0
    (app_dir / "gunicorn_conf.py").write_text('workers = 1\nforwarded_allow_ips = "192.0.2.1"\n')
    server = start_server(servers, app_dir, local_env(), wait=True, expect_status=200)
    assert get_json(server.port, headers=forwarded)["client"][0] == "127.0.0.1"
    assert server.terminate() == 0


def test_a_sigterm_right_after_start_still_stops_the_server_with_a_users_post_fork(servers, tmp_path):
    """The booting-worker guard survives a post_fork of the user's: a SIGTERM while workers boot is acted on."""
    app_dir = copy_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text("import time\ndef post_fork(server, worker):\n    time.sleep(0.3)\n")
    server = start_server(servers, app_dir, local_env(WEB_CONCURRENCY="2"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not worker_pids(server.pid):
        time.sleep(0.01)
    assert worker_pids(server.pid), server.output()
    assert server.terminate(timeout=20) == 0


def test_a_broken_file_is_one_line_and_exit_2(tmp_path):
    app_dir = copy_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text("workers = (\n")
    result = run_start([], clean_env(), app_dir)
    assert result.returncode == 2
    conf = app_dir / "gunicorn_conf.py"
    assert result.stderr.startswith(
        f"asgi-start: error: {conf} (GUNICORN_CONF unset: found in the app directory) is not valid Python (line 1)"
    )
    assert result.stderr.count("\n") == 1
    result = run_start([], clean_env(GUNICORN_CONF="gunicorn_conf.py"), app_dir)
    assert result.returncode == 2
    assert result.stderr.startswith(f"asgi-start: error: GUNICORN_CONF='gunicorn_conf.py': {conf} is not valid Python")
    if sys.version_info < (3, 11):
        return  # start.py reads TOML with tomllib (3.11+); before, Hypercorn reports a broken file itself
    (app_dir / "conf.toml").write_text("workers = [\n")
    result = run_start([], clean_env(SERVER="hypercorn", HYPERCORN_CONF="conf.toml"), app_dir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    expected = f"asgi-start: error: HYPERCORN_CONF='conf.toml': {app_dir / 'conf.toml'} is not valid TOML"
    assert result.stderr.startswith(expected)


def test_a_config_module(servers, tmp_path):
    app_dir = copy_app(tmp_path)
    (app_dir / "myconf.py").write_text("workers = 1\n")
    plan = dry_run(clean_env(GUNICORN_CONF="python:myconf"), app_dir)
    assert plan["workers"] == 1 and plan["worker_class"] == "uvicorn_worker.UvicornWorker"
    server = start_server(servers, app_dir, local_env(GUNICORN_CONF="python:myconf"), wait=True, expect_status=200)
    assert len(wait_for_workers(server.pid, 1)) == 1
    assert server.terminate() == 0


# --- Hypercorn --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["hypercorn_conf.py", "toml", "python:"])
def test_a_hypercorn_file_is_laid_over_start_pys_options(servers, tmp_path, form):
    app_dir = probe_app(tmp_path)
    port = reserve_port()
    env = {"SERVER": "hypercorn", "LOG_FORMAT": "json"}
    if form == "hypercorn_conf.py":
        (app_dir / "hypercorn_conf.py").write_text(f'bind = ["127.0.0.1:{port}"]\nworkers = 1\n')
    elif form == "toml":
        (app_dir / "conf.toml").write_text(f'bind = ["127.0.0.1:{port}"]\nworkers = 1\n')
        env["HYPERCORN_CONF"] = "conf.toml"
    else:
        (app_dir / "hyperconf.py").write_text(f'bind = ["127.0.0.1:{port}"]\nworkers = 1\n')
        env["HYPERCORN_CONF"] = "python:hyperconf"
    plan = dry_run(clean_env(**env), app_dir)
    if form == "toml" and sys.version_info < (3, 11):  # no tomllib: --dry-run knows the names, not the values
        assert plan["bind"] == [f"set by toml:{app_dir / 'conf.toml'}"]
        assert plan["workers_reason"].startswith(f"set by toml:{app_dir / 'conf.toml'} (start.py's rule: ")
    else:
        assert plan["bind"] == [f"127.0.0.1:{port}"] and plan["workers"] == 1
    server = start_server(servers, app_dir, clean_env(**env), port=port)
    assert server.wait_ready()[0] == 200, server.output()
    assert len(wait_for_workers(server.pid, 1)) == 1
    # start.py's proxy-headers wrapper and its JSON logging survive the file
    assert get_json(server.port, headers={"X-Forwarded-For": "203.0.113.9"})["client"][0] == "203.0.113.9"
    assert server.terminate() == 0
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    assert any(record["logger"] == "hypercorn.access" for record in records), server.output()


def test_worker_class_over_a_hypercorn_file(servers, tmp_path):
    app_dir = probe_app(tmp_path)
    (app_dir / "hypercorn_conf.py").write_text('worker_class = "uvloop"\nworkers = 1\n')
    assert dry_run(clean_env(SERVER="hypercorn"), app_dir)["worker_class"] == "uvloop"
    assert dry_run(clean_env(SERVER="hypercorn", WORKER_CLASS="trio"), app_dir)["worker_class"] == "trio"
    server = start_server(
        servers, app_dir, local_env(SERVER="hypercorn", WORKER_CLASS="trio"), wait=True, expect_status=200
    )
    assert get_json(server.port)["async_library"] == "trio"  # WORKER_CLASS, not the file's uvloop
    assert server.terminate() == 0
    (app_dir / "hypercorn_conf.py").write_text('worker_class = "trio"\nworkers = 1\n')
    server = start_server(servers, app_dir, local_env(SERVER="hypercorn"), wait=True, expect_status=200)
    assert get_json(server.port)["async_library"] == "trio"  # the file's, over start.py's asyncio
    assert server.terminate() == 0


def test_a_replaced_default_beside_start_py_is_laid_over_too(servers, tmp_path):
    """tiangolo's image kept its default at /gunicorn_conf.py, where its users put their own."""
    import shutil

    from helpers import START

    image_root = tmp_path / "image-root"
    image_root.mkdir()
    shutil.copy(START, image_root / "start.py")
    port = reserve_port()
    (image_root / "gunicorn_conf.py").write_text(TIANGOLO_STYLE.format(port=port))
    app_dir = copy_app(tmp_path)
    server = start_server(servers, app_dir, clean_env(), port=port, start=image_root / "start.py")
    assert server.wait_ready() == (200, "hello from the test app")
    assert "Using worker: uvicorn_worker.UvicornWorker" in server.output()
    assert server.terminate() == 0
