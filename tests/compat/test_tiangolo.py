"""tiangolo/uvicorn-gunicorn-docker and uvicorn-gunicorn-fastapi-docker: their own test suites, ported.

Each test feeds `python start.py` the inputs one of tiangolo's tests gave its container (environment
variables, the layout of /app, prestart scripts, a gunicorn_conf.py of the user's own) and checks the
outcome tiangolo's test expected, on real processes on 127.0.0.1. Where a peer test read the config
back (it ran gunicorn_conf.py again inside the container), these ask Gunicorn itself: `--print-config`
with the running master's own argv and environment. tests/compat/tiangolo.md maps every assertion of
both suites to the test here that covers it, and says where the outcome differs on purpose.

The peers' fixed addresses (0.0.0.0:80, :8000, :8080, :9000) are checked with `--dry-run`; the servers
started here listen on 127.0.0.1 and free ports instead.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    REPO,
    Server,
    as_python_m,
    clean_env,
    cmdline,
    dry_run,
    http_get,
    reserve_port,
    run_start,
    start_server,
    stop,
    wait_for_workers,
    wait_until_workers_serve,
    worker_pids,
)

pytestmark = pytest.mark.e2e

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# An ASGI 2 app, the interface of tiangolo's example and test apps: the attribute is a class,
# called with the scope; the instance is called with receive and send. Its __init__ refuses every
# scope but http, so the server finds the lifespan protocol unsupported, as with theirs.
# `/pid` the worker's PID; `/debug` logs a DEBUG record on uvicorn.error (the logger Uvicorn's
# worker levels from Gunicorn's loglevel); `/env` what the prestart script exported.
ASGI2_APP = '''\
"""Written by tests/compat/test_tiangolo.py."""
import logging
import os
import sys

GREETING = "{greeting}"


class App:
    def __init__(self, scope):
        assert scope["type"] == "http"
        self.scope = scope

    async def __call__(self, receive, send):
        path = self.scope["path"]
        if path == "/pid":
            body = str(os.getpid())
        elif path == "/env":
            body = os.environ.get("EXPORTED_BY_PRESTART", "unset")
        else:
            if path == "/debug":
                logging.getLogger("uvicorn.error").debug("debug record from worker %s", os.getpid())
            body = f"{{GREETING}} Using Python {{sys.version_info.major}}.{{sys.version_info.minor}}"
        await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
        await send({{"type": "http.response.body", "body": body.encode()}})


{variable} = App
'''

FASTAPI_APP = '''\
"""Written by tests/compat/test_tiangolo.py."""
import os
import sys

from fastapi import FastAPI

app = FastAPI()
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@app.get("/")
async def root():
    return {"message": "Hello world! From FastAPI running on Uvicorn with Gunicorn. Using Python " + PYTHON}


@app.get("/pid")
async def pid():
    return os.getpid()
'''

# What the base image's /app holds, and what the apps of the peer's tests put there.
IMAGE_GREETING = "Hello world! From Uvicorn with Gunicorn."
TEST_GREETING = "Test app. From Uvicorn with Gunicorn."
# The line the base image's /app/prestart.sh prints (ours says the same thing in other words).
PRESTART_SAYS = "prestart.sh here: migrations would run now"
CUSTOM_PRESTART_SAYS = "Custom prestart script"

# tiangolo's custom gunicorn_conf.py (package_app_config, package_app_sub_config,
# package_app_custom_config): four settings, no worker_class, and a JSON line printed when it is
# loaded. The bind is theirs but on 127.0.0.1 and a free port (theirs: 0.0.0.0:8000).
USERS_GUNICORN_CONF = """\
import json

loglevel = "warning"
workers = 3
bind = "{bind}"
errorlog = "-"

print("user's gunicorn_conf.py loaded: " + json.dumps({{"loglevel": loglevel, "workers": workers, "bind": bind}}))
"""


def said(greeting: str) -> str:
    return f"{greeting} Using Python {PYTHON_VERSION}"


def image_app(tmp_path: Path, variant: str = "image") -> Path:
    """/app as the peer's test built it: the base image's main.py and prestart.sh, with the test's
    own app copied over them (their Dockerfiles: FROM the image, COPY ./app /app)."""
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(ASGI2_APP.format(greeting=IMAGE_GREETING, variable="app"))
    (app_dir / "prestart.sh").write_text(f'#! /usr/bin/env sh\necho "{PRESTART_SAYS}"\n')
    if variant == "fastapi":  # uvicorn-gunicorn-fastapi-docker's image: its main.py over the base's
        (app_dir / "main.py").write_text(FASTAPI_APP)
    elif variant == "simple":  # simple_app: /app/main.py
        (app_dir / "main.py").write_text(ASGI2_APP.format(greeting=TEST_GREETING, variable="app"))
    elif variant == "package":  # package_app: /app/app/main.py beside the image's /app/main.py
        (app_dir / "app").mkdir()
        (app_dir / "app" / "__init__.py").write_text("")
        (app_dir / "app" / "main.py").write_text(ASGI2_APP.format(greeting=TEST_GREETING, variable="app"))
    elif variant == "custom":  # custom_app: /app/custom_app/custom_main.py:custom_var and a prestart of its own
        package = app_dir / "custom_app"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "custom_main.py").write_text(ASGI2_APP.format(greeting=TEST_GREETING, variable="custom_var"))
        (package / "custom-prestart.sh").write_text(
            f'#! /usr/bin/env sh\necho "{CUSTOM_PRESTART_SAYS}"\nexport EXPORTED_BY_PRESTART=yes\n'
        )
    else:
        assert variant == "image"
    return app_dir


def env_and_port(**env: str) -> tuple[dict[str, str], int]:
    """The environment with HOST=127.0.0.1 and a reserved PORT (both overridable), and that port."""
    values = {"HOST": "127.0.0.1", "PORT": str(reserve_port()), **env}
    return clean_env(**values), int(values["PORT"])


def gunicorn_settings(server: Server, app_dir: Path) -> dict[str, str]:
    """Gunicorn's own view of its settings (`gunicorn --print-config`), for the running master's argv
    and environment: config file, GUNICORN_CMD_ARGS and command line, in Gunicorn's precedence."""
    argv = cmdline(server.pid)
    assert as_python_m(argv)[1:3] == ["-m", "gunicorn"], argv
    raw = Path(f"/proc/{server.pid}/environ").read_bytes().decode()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    at = argv.index("gunicorn") + 1  # after the server's module: Gunicorn's own argument (through the hand-over)
    result = subprocess.run(
        [*argv[:at], "--print-config", *argv[at:]],
        cwd=app_dir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    settings = {}
    for line in result.stdout.splitlines():
        name, equals, value = line.partition(" = ")
        if equals and name.strip().isidentifier():
            settings[name.strip()] = value.strip()
    assert "worker_class" in settings, result.stdout[-3000:]
    return settings


def has_line(output: str, *parts: str) -> bool:
    """Whether one line of the output holds every part."""
    return any(all(part in line for part in parts) for line in output.splitlines())


def server_lines(output: str) -> list[str]:
    """The records of the server and the app: neither start.py's own lines nor the prestart script's."""
    return [line for line in output.splitlines() if " asgi-start [" not in line and PRESTART_SAYS not in line]


def refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


# --------------------------------------------------------------------------
# test_01_main (both repositories): /start.sh and the environment
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["image", "fastapi"])
def test_defaults(servers, tmp_path, variant):
    """uvicorn-gunicorn-docker and uvicorn-gunicorn-fastapi-docker test_01_main/test_defaults.py:
    no variable set; the image's own app and prestart.sh; stopped and started again."""
    if variant == "fastapi":
        pytest.importorskip("fastapi")
    app_dir = image_app(tmp_path, variant)
    plan = dry_run(clean_env(), app_dir)
    assert plan["bind"] == ["0.0.0.0:80"]
    assert plan["workers"] == max(plan["cpus"], 2)  # WORKERS_PER_CORE 1, at least 2, no MAX_WORKERS
    assert plan["log_level"] == "info" and plan["app_module"] == "main:app"
    assert plan["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert plan["config_file"] == str(REPO / "gunicorn_conf.py")
    assert plan["prestart"] == str(app_dir / "prestart.sh")

    env, port = env_and_port()
    for _run in ("first start", "after a restart"):
        server = start_server(servers, app_dir, env, port=port)
        status, body = server.wait_ready()
        if variant == "fastapi":
            expected = f"Hello world! From FastAPI running on Uvicorn with Gunicorn. Using Python {PYTHON_VERSION}"
            assert status == 200 and json.loads(body) == {"message": expected}
        else:
            assert (status, body) == (200, said(IMAGE_GREETING))
        workers = wait_for_workers(server.pid, plan["workers"])
        assert len(workers) == plan["workers"]
        assert wait_until_workers_serve(server.url("/pid"), len(workers)) == {str(pid) for pid in workers}
        settings = gunicorn_settings(server, app_dir)
        assert settings["workers"] == str(plan["workers"])
        assert settings["bind"] == f"['127.0.0.1:{port}']"
        assert settings["loglevel"] == "info"
        assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == ("120", "120", "5")
        assert (settings["accesslog"], settings["errorlog"]) == ("-", "-")
        assert settings["worker_class"] == "uvicorn_worker.UvicornWorker"
        output = stop(server)
        assert f"running pre-start script {app_dir / 'prestart.sh'}" in output
        assert PRESTART_SAYS in output
        assert has_line(output, " INFO uvicorn.access [", '"GET / HTTP/1.1" 200')
        assert has_line(output, " INFO uvicorn.error [", "] Application startup complete.")
        assert has_line(output, " INFO gunicorn.error [", "] Using worker: uvicorn_worker.UvicornWorker")
        servers.remove(server)
        server.kill_all()  # closes its log files; the next run writes new ones


def test_env_vars_1(servers, tmp_path):
    """test_01_main/test_env_vars_1.py: WORKERS_PER_CORE=2, PORT=8000, LOG_LEVEL=warning,
    GRACEFUL_TIMEOUT, TIMEOUT and KEEP_ALIVE 20, ACCESS_LOG="" and ERROR_LOG="" (a serving container)."""
    inputs = {
        "WORKERS_PER_CORE": "2",
        "LOG_LEVEL": "warning",
        "GRACEFUL_TIMEOUT": "20",
        "TIMEOUT": "20",
        "KEEP_ALIVE": "20",
        "ACCESS_LOG": "",
        "ERROR_LOG": "",
    }
    app_dir = image_app(tmp_path)
    plan = dry_run(clean_env(PORT="8000", **inputs), app_dir)
    assert plan["bind"] == ["0.0.0.0:8000"]
    assert plan["workers"] == max(2 * plan["cpus"], 2)
    assert plan["log_level"] == "warning"

    env, port = env_and_port(**inputs)
    server = start_server(servers, app_dir, env, port=port)
    assert server.wait_ready() == (200, said(IMAGE_GREETING))
    workers = wait_for_workers(server.pid, plan["workers"])
    assert len(workers) == plan["workers"]
    assert wait_until_workers_serve(server.url("/pid"), len(workers)) == {str(pid) for pid in workers}
    settings = gunicorn_settings(server, app_dir)
    assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == ("20", "20", "20")
    assert settings["loglevel"] == "warning"
    assert settings["accesslog"] == "None"  # no access log at its source, as tiangolo's `ACCESS_LOG or None`
    for _ in range(3):
        assert http_get(server.url("/?probe"))[0] == 200
    output = stop(server)
    assert PRESTART_SAYS in output and "running pre-start script" in output
    assert '"GET /?probe HTTP/1.1" 200' not in output and "Application startup complete." not in output
    # ERROR_LOG="" drops every record of the server and the app, not only those below WARNING
    # (tiangolo's errorlog=None left WARNING and above to Python's last-resort handler)
    assert server_lines(output) == [], output


def test_env_vars_2(servers, tmp_path):
    """test_01_main/test_env_vars_2.py: WEB_CONCURRENCY=1, HOST=127.0.0.1, LOG_LEVEL=warning,
    GUNICORN_CMD_ARGS="--log-level debug", WORKER_CLASS=uvicorn.workers.UvicornH11Worker."""
    inputs = {
        "WEB_CONCURRENCY": "1",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "warning",
        "GUNICORN_CMD_ARGS": "--log-level debug",
        "WORKER_CLASS": "uvicorn.workers.UvicornH11Worker",
    }
    app_dir = image_app(tmp_path)
    plan = dry_run(clean_env(**inputs), app_dir)
    assert plan["bind"] == ["127.0.0.1:80"] and plan["workers"] == 1
    assert plan["worker_class"] == "uvicorn.workers.UvicornH11Worker"

    env, port = env_and_port(**inputs)
    server = start_server(servers, app_dir, env, port=port)
    assert server.wait_ready() == (200, said(IMAGE_GREETING))
    [worker] = wait_for_workers(server.pid, 1)  # manager + one worker
    settings = gunicorn_settings(server, app_dir)
    assert settings["workers"] == "1" and settings["bind"] == f"['127.0.0.1:{port}']"
    assert settings["loglevel"] == "debug"  # GUNICORN_CMD_ARGS wins over LOG_LEVEL
    assert settings["worker_class"] == "uvicorn.workers.UvicornH11Worker"
    assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == ("120", "120", "5")
    assert (settings["accesslog"], settings["errorlog"]) == ("-", "-")
    assert http_get(server.url("/debug"))[0] == 200
    assert worker_pids(server.pid) == [worker]
    output = stop(server)
    assert PRESTART_SAYS in output and "running pre-start script" in output
    assert "loglevel: debug" in output  # Gunicorn's dump of its configuration, a DEBUG record
    assert f" DEBUG gunicorn.error [{server.pid}] " in output  # from the master
    assert f" DEBUG uvicorn.error [{worker}] debug record from worker {worker}" in output  # from the worker
    assert "Using worker: uvicorn.workers.UvicornH11Worker" in output


def test_env_bind(servers, tmp_path):
    """test_01_main/test_env_vars_3.py: BIND wins over HOST and PORT; MAX_WORKERS=1 gives one worker."""
    app_dir = image_app(tmp_path)
    plan = dry_run(clean_env(BIND="0.0.0.0:8080", HOST="127.0.0.1", PORT="9000", MAX_WORKERS="1"), app_dir)
    assert plan["bind"] == ["0.0.0.0:8080"] and plan["workers"] == 1

    bound, unused = reserve_port(), reserve_port()
    env = clean_env(BIND=f"127.0.0.1:{bound}", HOST="127.0.0.1", PORT=str(unused), MAX_WORKERS="1")
    server = start_server(servers, app_dir, env, port=bound)
    assert server.wait_ready() == (200, said(IMAGE_GREETING))
    assert len(wait_for_workers(server.pid, 1)) == 1
    settings = gunicorn_settings(server, app_dir)
    assert settings["bind"] == f"['127.0.0.1:{bound}']" and settings["workers"] == "1"
    assert refused(unused)
    output = stop(server)
    assert PRESTART_SAYS in output and "running pre-start script" in output


def test_max_workers_caps_web_concurrency_with_a_warning(servers, tmp_path):
    """Not in tiangolo's suite; the migration table's MAX_WORKERS row. tiangolo's gunicorn_conf.py let
    WEB_CONCURRENCY past MAX_WORKERS (the cap applied to the computed count only); here it caps both,
    and says so once."""
    app_dir = image_app(tmp_path)
    plan = dry_run(clean_env(WEB_CONCURRENCY="3", MAX_WORKERS="1"), app_dir)
    assert plan["workers"] == 1
    assert [warning for warning in plan["warnings"] if "MAX_WORKERS" in warning], plan["warnings"]
    env, port = env_and_port(WEB_CONCURRENCY="3", MAX_WORKERS="1")
    server = start_server(servers, app_dir, env, port=port)
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 1)) == 1
    output = stop(server)
    warnings = [line for line in output.splitlines() if " WARNING asgi-start [" in line and "MAX_WORKERS" in line]
    assert len(warnings) == 1, output
    assert "WEB_CONCURRENCY=3" in warnings[0]


# --------------------------------------------------------------------------
# test_02_app: the user's app, module and prestart script in /app
# --------------------------------------------------------------------------

LAYOUTS = {
    # peer test (parameters): variant, environment, app module, what the prestart script prints
    "simple_app": ("simple", {}, "main:app", PRESTART_SAYS),
    "package_app": ("package", {}, "app.main:app", PRESTART_SAYS),
    "custom_app-MODULE_NAME": (
        "custom",
        {"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "custom_var"},
        "custom_app.custom_main:custom_var",
        PRESTART_SAYS,
    ),
    "custom_app-APP_MODULE": (
        "custom",
        {"APP_MODULE": "custom_app.custom_main:custom_var"},
        "custom_app.custom_main:custom_var",
        PRESTART_SAYS,
    ),
    "custom_app-MODULE_NAME-PRE_START_PATH": (
        "custom",
        {
            "MODULE_NAME": "custom_app.custom_main",
            "VARIABLE_NAME": "custom_var",
            "PRE_START_PATH": "custom_app/custom-prestart.sh",
        },
        "custom_app.custom_main:custom_var",
        CUSTOM_PRESTART_SAYS,
    ),
    "custom_app-APP_MODULE-PRE_START_PATH": (
        "custom",
        {"APP_MODULE": "custom_app.custom_main:custom_var", "PRE_START_PATH": "custom_app/custom-prestart.sh"},
        "custom_app.custom_main:custom_var",
        CUSTOM_PRESTART_SAYS,
    ),
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_app_layouts_and_prestart(servers, tmp_path, case):
    """test_02_app/test_simple_app.py, test_package_app.py, test_custom_app.py (its four parameters)."""
    variant, inputs, app_module, prestart_says = LAYOUTS[case]
    app_dir = image_app(tmp_path, variant)
    if "PRE_START_PATH" in inputs:  # theirs is absolute: /app/custom_app/custom-prestart.sh
        inputs = {**inputs, "PRE_START_PATH": str(app_dir / inputs["PRE_START_PATH"])}
    plan = dry_run(clean_env(**inputs), app_dir)
    assert plan["app_module"] == app_module
    assert plan["bind"] == ["0.0.0.0:80"] and plan["workers"] == max(plan["cpus"], 2)
    assert plan["log_level"] == "info"
    prestart = inputs.get("PRE_START_PATH", str(app_dir / "prestart.sh"))
    assert plan["prestart"] == prestart

    env, port = env_and_port(**inputs)
    server = start_server(servers, app_dir, env, port=port)
    # the test's app, not the image's main.py it was copied beside (package_app: app/main.py wins)
    assert server.wait_ready() == (200, said(TEST_GREETING))
    workers = wait_for_workers(server.pid, plan["workers"])
    assert len(workers) == plan["workers"]
    assert wait_until_workers_serve(server.url("/pid"), len(workers)) == {str(pid) for pid in workers}
    # the script runs in a child process: what it exports does not reach the server (tiangolo sourced it)
    exported = http_get(server.url("/env"))
    output = stop(server)
    assert f"running pre-start script {prestart}" in output
    assert prestart_says in output
    assert (prestart_says == PRESTART_SAYS) == (PRESTART_SAYS in output)  # only the script named ran
    assert exported == (200, "unset")


# --------------------------------------------------------------------------
# test_02_app: the user's own gunicorn_conf.py
# --------------------------------------------------------------------------

CONFIG_PLACES = {
    "package_app_config": ("gunicorn_conf.py", {}),
    "package_app_sub_config": ("app/gunicorn_conf.py", {}),
    "package_app_custom_config": ("custom_gunicorn_conf.py", {"GUNICORN_CONF": "custom_gunicorn_conf.py"}),
}


@pytest.mark.parametrize("case", list(CONFIG_PLACES))
def test_users_gunicorn_conf(servers, tmp_path, case):
    """test_02_app/test_package_app_config.py, test_package_app_sub_config.py and
    test_package_app_custom_config.py: a config file setting loglevel, workers, bind and errorlog,
    found in /app, in /app/app, or named by GUNICORN_CONF. It serves the ASGI app with a Uvicorn
    worker; what the file sets wins, start.py's other settings still apply."""
    relative, inputs = CONFIG_PLACES[case]
    app_dir = image_app(tmp_path, "package")
    bound, unused = reserve_port(), reserve_port()
    config = app_dir / relative
    config.write_text(USERS_GUNICORN_CONF.format(bind=f"127.0.0.1:{bound}"))
    if "GUNICORN_CONF" in inputs:  # theirs: /app/custom_gunicorn_conf.py
        inputs = {"GUNICORN_CONF": str(config)}
    env = clean_env(HOST="127.0.0.1", PORT=str(unused), **inputs)
    plan = dry_run(env, app_dir)  # the file prints when it is loaded; --dry-run's JSON is still all of stdout
    assert plan["config_file"] == str(config)
    assert plan["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert plan["workers"] == 3 and plan["bind"] == [f"127.0.0.1:{bound}"]

    server = start_server(servers, app_dir, env, port=bound)
    assert server.wait_ready() == (200, said(TEST_GREETING))  # an ASGI app: a Uvicorn worker, not sync
    workers = wait_for_workers(server.pid, 3)
    assert len(workers) == 3
    assert wait_until_workers_serve(server.url("/pid"), 3) == {str(pid) for pid in workers}
    assert refused(unused)  # the file's bind, not HOST:PORT
    settings = gunicorn_settings(server, app_dir)
    assert settings["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert settings["workers"] == "3" and settings["bind"] == f"['127.0.0.1:{bound}']"
    assert settings["loglevel"] == "warning"
    # start.py's settings the file does not set: the timeouts, the access log
    assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == ("120", "120", "5")
    assert settings["accesslog"] == "-"
    assert http_get(server.url("/?probe"))[0] == 200
    output = stop(server)
    assert f"config {config}" in output  # start.py's summary line names the user's file
    assert "user's gunicorn_conf.py loaded: " in output and '"workers": 3' in output
    assert PRESTART_SAYS in output and "running pre-start script" in output
    assert '"GET /?probe HTTP/1.1" 200' in output  # tiangolo: off (Gunicorn's default; start.sh set none)
    # the file's loglevel: Gunicorn and its workers say nothing below WARNING
    assert not [
        line for line in server_lines(output) if " INFO " in line and ".access [" not in line and "loaded: " not in line
    ], output


@pytest.mark.parametrize(
    ("in_file", "worker_class", "expected"),
    [
        (None, None, "uvicorn_worker.UvicornWorker"),
        ("uvicorn_worker.UvicornH11Worker", None, "uvicorn_worker.UvicornH11Worker"),
        ("uvicorn_worker.UvicornH11Worker", "uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornWorker"),
        (None, "uvicorn.workers.UvicornH11Worker", "uvicorn.workers.UvicornH11Worker"),
    ],
    ids=["default", "file", "WORKER_CLASS-over-file", "WORKER_CLASS"],
)
def test_worker_class_with_a_users_config(servers, tmp_path, in_file, worker_class, expected):
    """start.sh's `gunicorn -k "$WORKER_CLASS" -c "$GUNICORN_CONF"`: WORKER_CLASS (default Uvicorn's)
    always ran, whatever the file said. Here: WORKER_CLASS when set > the user's file > the default;
    --dry-run says which runs, and it is the one Gunicorn uses."""
    app_dir = image_app(tmp_path, "package")
    lines = ["workers = 1", "loglevel = 'info'"] + ([f"worker_class = {in_file!r}"] if in_file else [])
    (app_dir / "gunicorn_conf.py").write_text("\n".join(lines) + "\n")
    env, port = env_and_port(**({"WORKER_CLASS": worker_class} if worker_class else {}))
    plan = dry_run(env, app_dir)
    assert plan["worker_class"] == expected and plan["workers"] == 1
    server = start_server(servers, app_dir, env, port=port)
    assert server.wait_ready() == (200, said(TEST_GREETING))
    assert gunicorn_settings(server, app_dir)["worker_class"] == expected
    output = stop(server)
    assert f"Using worker: {expected}" in output


# --------------------------------------------------------------------------
# test_03_reload and test_04_app_reload: /start-reload.sh, here WITH_RELOAD=true
# --------------------------------------------------------------------------

RELOADS = {
    # peer tests: variant, environment, the file their test edited
    "image-PORT-LOG_LEVEL=debug": ("image", {"LOG_LEVEL": "debug", "UVICORN_HEADERS": "x-compat:tiangolo"}, "main.py"),
    # test_04_app_reload/test_package_app.py meant this, but its container ran /start.sh (see tiangolo.md)
    "package_app": ("package", {}, "app/main.py"),
    "custom_app-MODULE_NAME": (
        "custom",
        {"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "custom_var"},
        "custom_app/custom_main.py",
    ),
    "custom_app-APP_MODULE": (
        "custom",
        {"APP_MODULE": "custom_app.custom_main:custom_var"},
        "custom_app/custom_main.py",
    ),
}


@pytest.mark.parametrize("case", list(RELOADS))
def test_reload(servers, tmp_path, case):
    """test_03_reload/test_defaults.py, test_env_vars_1.py (PORT, LOG_LEVEL=debug), test_env_vars_2.py
    (HOST=127.0.0.1), test_04_app_reload/test_simple_app.py, test_package_app.py and test_custom_app.py
    (both parameters): one Uvicorn process on HOST:PORT that serves the app and reloads it when its
    code changes. UVICORN_HEADERS: start-reload.sh ran Uvicorn's CLI, which reads UVICORN_* itself."""
    variant, inputs, edited = RELOADS[case]
    app_dir = image_app(tmp_path, variant)
    plan = dry_run(clean_env(WITH_RELOAD="true", **inputs), app_dir)
    assert plan["server"] == "uvicorn" and plan["reload"] is True and plan["workers"] == 1
    assert plan["bind"] == ["0.0.0.0:80"]
    # start-reload.sh passed only --host and --port; BIND, which it ignored, is honoured here
    assert dry_run(clean_env(WITH_RELOAD="true", BIND="127.0.0.1:8080", **inputs), app_dir)["bind"] == [
        "127.0.0.1:8080"
    ]
    greeting = IMAGE_GREETING if variant == "image" else TEST_GREETING

    env, port = env_and_port(WITH_RELOAD="true", **inputs)
    server = start_server(servers, app_dir, env, port=port)
    assert server.wait_ready() == (200, said(greeting))
    with urllib.request.urlopen(server.url("/debug"), timeout=10) as response:
        assert response.status == 200
        assert response.headers.get("x-compat") == ("tiangolo" if "UVICORN_HEADERS" in inputs else None)
    source = app_dir / edited
    changed = source.read_text().replace("Uvicorn with Gunicorn", "Uvicorn with autoreload")
    assert changed != source.read_text()
    expected = said(greeting.replace("Uvicorn with Gunicorn", "Uvicorn with autoreload"))
    body, deadline, written = "", time.monotonic() + 30, 0.0
    while body != expected and time.monotonic() < deadline:
        if time.monotonic() - written > 2:  # (re)write: a change before the watcher's first scan is missed
            source.write_text(changed)
            written = time.monotonic()
        try:
            body = http_get(server.url(), timeout=2)[1]
        except OSError:  # between the old process and the new
            time.sleep(0.1)
    assert body == expected, server.output()[-3000:]
    output = stop(server)
    assert PRESTART_SAYS in output and "running pre-start script" in output
    assert f"Uvicorn running on http://127.0.0.1:{port} " in output
    debug_record = has_line(output, " DEBUG uvicorn.error [", "debug record from worker")
    assert debug_record == (inputs.get("LOG_LEVEL") == "debug"), output


# --------------------------------------------------------------------------
# The migration table's other rows: what tiangolo's scripts accepted and start.py refuses
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"PRE_START_PATH": "/nonexistent/prestart.sh"}, "PRE_START_PATH='/nonexistent/prestart.sh': no such file"),
        ({"LOG_LEVEL": "trace"}, "LOG_LEVEL='trace' is not valid"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0'"),
        ({"WORKERS_PER_CORE": "many"}, "WORKERS_PER_CORE='many'"),
        ({"KEEP_ALIVE": "5s"}, "KEEP_ALIVE='5s'"),
    ],
    ids=["PRE_START_PATH-missing", "LOG_LEVEL-trace", "WEB_CONCURRENCY-0", "WORKERS_PER_CORE-word", "KEEP_ALIVE-unit"],
)
def test_values_tiangolo_let_through_are_errors(tmp_path, inputs, message):
    """start.sh said "There is no script" and went on; Gunicorn took an unknown loglevel for info
    (start-reload.sh's Uvicorn took `trace`); gunicorn_conf.py failed with a traceback on the others.
    Here each is one line naming the variable, exit status 2, nothing started."""
    app_dir = image_app(tmp_path)
    result = run_start([], clean_env(HOST="127.0.0.1", PORT=str(reserve_port()), **inputs), app_dir)
    assert result.returncode == 2, result.stderr
    assert f"asgi-start: error: {message}" in result.stderr and "Traceback" not in result.stderr
    assert PRESTART_SAYS not in result.stdout
