"""inboard's own test suite, ported: its inputs given to this repo's start.py, its expected outcomes checked.

The peer is br3ndonland/inboard (tests/test_start.py, test_gunicorn_conf.py, test_logging_conf.py,
test_gunicorn_workers.py and the fixtures of tests/conftest.py). Its tests call inboard's functions
with mocks; here the same environment goes to the real `python start.py`:

- configuration: `start.py --dry-run` (the JSON plan), or `start.py -- --print-config`, which
  execs the real Gunicorn with everything start.py gives it and makes Gunicorn print the settings
  it resolved (inboard's own tests run `gunicorn --print-config`);
- behaviour: a real server on 127.0.0.1 with real requests and its real log output.

tests/compat/inboard.md maps every peer assertion to a test here, and every variable inboard reads.
Nothing of inboard's code is used: the apps, config files and scripts below are written for these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    Server,
    as_python_m,
    clean_env,
    cmdline,
    dry_run,
    http_get,
    local_env,
    request,
    reserve_port,
    run_start,
    start_server,
    stop,
    wait_for_output,
    wait_for_workers,
    wait_until,
    wait_until_workers_serve,
    worker_pids,
)

E2E = pytest.mark.e2e

# An app in the shape of inboard's base app: it says which process manager serves it, from the
# PROCESS_MANAGER variable the app itself reads, as inboard's demo apps do.
APP_SOURCE = """\
import logging
import os
import sys
from urllib.parse import parse_qs

logger = logging.getLogger(__name__)


def message():
    server = "Uvicorn" if os.getenv("PROCESS_MANAGER", "gunicorn") == "uvicorn" else "Gunicorn"
    return f"Hello World, from {server} and Python {sys.version_info[0]}.{sys.version_info[1]}!"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, body = scope["path"], message()
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/env":
        body = os.environ.get(parse_qs(scope["query_string"].decode())["name"][0], "<unset>")
    elif path == "/log":
        logger.info("app info record")
    elif path == "/warn":
        logger.warning("app warning record")
    elif path == "/debug":
        logger.debug("app debug record")
        logging.getLogger("uvicorn.error").debug("server logger debug record")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
"""

# The app of inboard's test_uvicorn_worker_boot_error: its lifespan startup fails.
LIFESPAN_FAILURE_APP = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": "ASGI application failed to start"})
"""

# A pre-start script that proves it ran before the server: the port is still closed.
PRESTART_PY = """\
import os, socket
with socket.socket() as probe:
    closed = probe.connect_ex(("127.0.0.1", int(os.environ["PORT"]))) != 0
with open("prestart-ran.txt", "w") as marker:
    marker.write(f"py port_closed={closed}")
print("[prestart] hello from the pre-start script, migrations go here")
"""
PRESTART_SH = """\
printf 'sh ran' > prestart-ran.txt
echo "[prestart] hello from the pre-start script, migrations go here"
"""

# A Gunicorn config file written the way inboard's gunicorn_conf.py is: every setting read from
# inboard's variables with inboard's defaults. It sets no worker_class (inboard passed `-k` on the
# command line), and no workers or logconfig_dict (inboard's came from its own package).
INBOARD_STYLE_GUNICORN_CONF = """\
import os

bind = os.getenv("BIND") or "{}:{}".format(os.getenv("HOST", "0.0.0.0"), os.getenv("PORT", "80"))
accesslog = os.getenv("ACCESS_LOG", "-")
errorlog = os.getenv("ERROR_LOG", "-")
graceful_timeout = int(os.getenv("GRACEFUL_TIMEOUT", "120"))
keepalive = int(os.getenv("KEEP_ALIVE", "5"))
loglevel = os.getenv("LOG_LEVEL", "info")
timeout = int(os.getenv("TIMEOUT", "120"))
"""

# A user's config file that sets a few things: they must win, start.py's must fill in the rest.
LAYERED_GUNICORN_CONF = """\
workers = 3
keepalive = 7
"""

# A dictConfig module in the style of inboard's logging_conf.py: levels from LOG_LEVEL, one
# stdout handler; plain data only (class names as strings).
LOGGING_CONF_SOURCE = """\
import os

LOG_LEVEL = os.getenv("LOG_LEVEL", "info").upper()
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"mine": {"format": "INBOARD-STYLE %(levelname)s %(name)s %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "mine", "stream": "ext://sys.stdout", "level": LOG_LEVEL}},
    "root": {"handlers": ["out"], "level": LOG_LEVEL},
    "loggers": {"gunicorn.error": {"propagate": True}, "uvicorn": {"propagate": True}, "uvicorn.access": {"propagate": True}},
}
"""

# inboard's own logging_conf.py puts a class object in its dictConfig ("()": LogFilter).
LOGGING_CONF_WITH_A_CLASS = """\
import logging


class LogFilter(logging.Filter):
    pass


LOGGING_CONFIG = {"version": 1, "filters": {"filter_log_message": {"()": LogFilter}}}
"""

RECORD = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) \[(\d+)\] (.*)$"
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def write_module(directory: Path, module: str, source: str = APP_SOURCE) -> Path:
    """`source` as `module` under `directory` (a dotted name makes packages); returns `directory`."""
    *packages, name = module.split(".")
    for depth in range(len(packages) + 1):
        directory.joinpath(*packages[:depth]).mkdir(parents=True, exist_ok=True)
        if depth:
            directory.joinpath(*packages[:depth], "__init__.py").touch()
    directory.joinpath(*packages, f"{name}.py").write_text(source)
    return directory


def make_app(tmp_path: Path, module: str = "main", source: str = APP_SOURCE) -> Path:
    """A fresh app directory, tmp_path/srv, holding the app as `module`."""
    return write_module(tmp_path / "srv", module, source)


def plan(app_dir: Path, **env: str) -> dict:
    return dry_run(clean_env(**env), app_dir)


def refused(app_dir: Path, **env: str) -> list[str]:
    """start.py's error lines for a configuration it must refuse (exit status 2, no traceback)."""
    result = run_start(["--dry-run"], clean_env(**env), app_dir)
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.splitlines()


def gunicorn_settings(app_dir: Path, **env: str) -> tuple[dict[str, str], list[str]]:
    """What the real Gunicorn resolves when start.py execs it: `start.py -- --print-config`.

    Returns Gunicorn's settings (name -> printed value) and start.py's own lines (stderr).
    """
    result = run_start(["--", "--print-config"], clean_env(**env), app_dir)
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\w+) += ?(.*)$", line)
        if match:
            settings[match[1]] = match[2]
    assert "workers" in settings, result.stdout[:3000]
    return settings, result.stderr.splitlines()


def records(output: str) -> list[tuple[str, str, int, str]]:
    """(level, logger, pid, message) of every text-format record in the output."""
    found = []
    for line in output.splitlines():
        match = RECORD.match(line)
        if match:
            found.append((match[1], match[2], int(match[3]), match[4]))
    return found


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("the openssl command is not installed (needed to make a self-signed certificate)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subject = ["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    result = subprocess.run(
        [*request, "-keyout", str(key), "-out", str(cert), *subject],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return cert, key


# --------------------------------------------------------------------------
# test_gunicorn_conf.py::TestCalculateWorkers — the worker count.
# inboard counts multiprocessing.cpu_count(); start.py counts the effective CPUs, which
# PYTHON_CPU_COUNT sets here, so that every case runs with a known number of cores.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cores", [1, 2, 3, 8])
def test_default_workers_are_one_per_core_and_at_least_two(tmp_path, cores):
    assert plan(make_app(tmp_path), PYTHON_CPU_COUNT=str(cores))["workers"] == max(cores, 2)


def test_default_workers_follow_the_cpus_this_process_may_use(tmp_path):
    result = plan(make_app(tmp_path))
    assert 1 <= result["cpus"] <= len(os.sched_getaffinity(0))
    assert result["workers"] == max(result["cpus"], 2)


@pytest.mark.parametrize("cores", [1, 8])
@pytest.mark.parametrize("max_workers", [None, "1", "2", "5", "10"])
def test_max_workers_caps_the_computed_count(tmp_path, cores, max_workers):
    env = {"PYTHON_CPU_COUNT": str(cores), **({"MAX_WORKERS": max_workers} if max_workers else {})}
    default = max(cores, 2)
    assert plan(make_app(tmp_path), **env)["workers"] == (min(default, int(max_workers)) if max_workers else default)


@pytest.mark.parametrize("total_workers", [None, "1", "2", "5", "10"])
def test_web_concurrency_is_the_total(tmp_path, total_workers):
    env = {"PYTHON_CPU_COUNT": "8", **({"WEB_CONCURRENCY": total_workers} if total_workers else {})}
    result = plan(make_app(tmp_path), **env)
    assert result["workers"] == (int(total_workers) if total_workers else 8)
    assert ("WEB_CONCURRENCY" in result["workers_reason"]) == bool(total_workers)


@pytest.mark.parametrize("cores", [1, 3])
@pytest.mark.parametrize("workers_per_core", ["0.5", "1.5", "5", "10"])
def test_workers_per_core_with_a_minimum_of_two(tmp_path, cores, workers_per_core):
    result = plan(make_app(tmp_path), PYTHON_CPU_COUNT=str(cores), WORKERS_PER_CORE=workers_per_core)
    assert result["workers"] == max(int(float(workers_per_core) * cores), 2)


@pytest.mark.parametrize("max_workers", ["1", "2", "5", "10"])
@pytest.mark.parametrize("total_workers", ["1", "2", "5", "10"])
def test_max_workers_caps_web_concurrency_too(tmp_path, max_workers, total_workers):
    """inboard: 'Worker number should be the lesser of the two' (fix "Drop-in": MAX_WORKERS caps every count)."""
    result = plan(make_app(tmp_path), PYTHON_CPU_COUNT="4", WEB_CONCURRENCY=total_workers, MAX_WORKERS=max_workers)
    expected = min(int(max_workers), int(total_workers))
    assert result["workers"] == expected
    if int(total_workers) > int(max_workers):
        # one warning line, and the reason says that MAX_WORKERS lowered WEB_CONCURRENCY
        [warning] = result["warnings"]
        assert "WEB_CONCURRENCY" in warning and "MAX_WORKERS" in warning, warning
        assert f"WEB_CONCURRENCY {total_workers}" in result["workers_reason"], result["workers_reason"]
        assert f"MAX_WORKERS {max_workers}" in result["workers_reason"], result["workers_reason"]
    else:
        assert result["warnings"] == []
        assert "WEB_CONCURRENCY" in result["workers_reason"] and "MAX_WORKERS" not in result["workers_reason"]


@pytest.mark.parametrize("max_workers", ["1", "2", "5", "10"])
@pytest.mark.parametrize("workers_per_core", ["0.5", "1.5", "5", "10"])
def test_max_workers_caps_workers_per_core(tmp_path, max_workers, workers_per_core):
    result = plan(make_app(tmp_path), PYTHON_CPU_COUNT="4", MAX_WORKERS=max_workers, WORKERS_PER_CORE=workers_per_core)
    assert result["workers"] <= int(max_workers)
    assert result["workers"] == min(max(int(float(workers_per_core) * 4), 2), int(max_workers))


def test_max_workers_lowering_web_concurrency_is_said_once_and_gunicorn_starts_that_many(tmp_path):
    """The real Gunicorn gets the capped count; start.py says so in one warning line and in its summary."""
    settings, lines = gunicorn_settings(make_app(tmp_path), WEB_CONCURRENCY="15", MAX_WORKERS="10")
    assert settings["workers"] == "10"
    warnings = [line for line in lines if " WARNING asgi-start [" in line]
    assert len(warnings) == 1 and "WEB_CONCURRENCY" in warnings[0] and "MAX_WORKERS" in warnings[0], lines
    [summary] = [line for line in lines if " INFO asgi-start [" in line]
    assert "10 workers" in summary and "MAX_WORKERS" in summary, summary


# --------------------------------------------------------------------------
# test_gunicorn_conf.py::TestGunicornSettings — what Gunicorn itself resolves (inboard ran
# `gunicorn --print-config -c <conf>`). Under three config files: start.py's default, an
# inboard-style file of the user's (GUNICORN_CONF=<path>), and the same as `python:<module>`.
# --------------------------------------------------------------------------
def with_config(app_dir: Path, kind: str) -> dict[str, str]:
    """The environment that selects the config file `kind`, writing the file when it is the user's."""
    if kind == "default":
        return {}
    (app_dir / "conf").mkdir(exist_ok=True)
    (app_dir / "conf" / "__init__.py").touch()
    (app_dir / "conf" / "gunicorn_conf.py").write_text(INBOARD_STYLE_GUNICORN_CONF)
    if kind == "file":
        return {"GUNICORN_CONF": str(app_dir / "conf" / "gunicorn_conf.py")}
    return {"GUNICORN_CONF": "python:conf.gunicorn_conf"}


def config_location(app_dir: Path, kind: str) -> str:
    """Where the config file of `kind` is, as start.py reports it (--dry-run's config_file, the summary line)."""
    return {
        "default": str(Path(__file__).resolve().parents[2] / "gunicorn_conf.py"),
        "file": str(app_dir / "conf" / "gunicorn_conf.py"),
        "module": "python:conf.gunicorn_conf",
    }[kind]


def assert_config_file(app_dir: Path, kind: str, settings: dict[str, str], lines: list[str]) -> None:
    """The config file in use. inboard's test found its path in Gunicorn's own `config` setting; a user's
    file is layered over start.py's options through a file start.py writes, so Gunicorn names that one,
    and start.py's summary line names the user's."""
    location = config_location(app_dir, kind)
    if kind == "default":
        assert settings["config"] == location
    assert any(" INFO asgi-start [" in line and line.endswith(f"| config {location}") for line in lines), lines


@pytest.mark.parametrize("kind", ["default", "file", "module"])
def test_gunicorn_settings_by_default(tmp_path, kind):
    app_dir = make_app(tmp_path)
    settings, lines = gunicorn_settings(app_dir, PYTHON_CPU_COUNT="3", **with_config(app_dir, kind))
    assert_config_file(app_dir, kind, settings, lines)
    assert settings["default_proc_name"] == "main:app"
    assert settings["graceful_timeout"] == "120"
    assert settings["keepalive"] == "5"
    assert settings["loglevel"] == "info"
    assert settings["timeout"] == "120"
    assert settings["workers"] == "3"  # max(cores, 2)
    assert settings["bind"] == "['0.0.0.0:80']"
    # the Uvicorn worker, also under a config file of the user's that names none (fix "Drop-in")
    assert settings["worker_class"].endswith("UvicornWorker"), settings["worker_class"]
    # start.py's one log format at LOG_LEVEL (inboard: uvicorn.logging.DefaultFormatter at INFO)
    assert "asgi_start.text_formatter" in settings["logconfig_dict"], settings["logconfig_dict"]
    assert "'INFO'" in settings["logconfig_dict"]
    assert any(" INFO asgi-start [" in line and "UvicornWorker" in line for line in lines), lines


@pytest.mark.parametrize("kind", ["default", "file", "module"])
def test_gunicorn_settings_with_custom_options(tmp_path, kind):
    """inboard's custom options, less LOG_FORMAT=verbose (refused here: see the exit-2 cases)."""
    app_dir = make_app(tmp_path)
    (tmp_path / "tmp_log").mkdir()
    logging_conf = tmp_path / "tmp_log" / "tmp_log.py"
    logging_conf.write_text(LOGGING_CONF_SOURCE)
    env = {
        "GRACEFUL_TIMEOUT": "240",
        "KEEP_ALIVE": "10",
        "LOG_LEVEL": "debug",
        "LOGGING_CONF": str(logging_conf),
        "MAX_WORKERS": "10",
        "TIMEOUT": "240",
        "WEB_CONCURRENCY": "15",
    }
    settings, lines = gunicorn_settings(app_dir, **env, **with_config(app_dir, kind))
    assert_config_file(app_dir, kind, settings, lines)
    assert settings["default_proc_name"] == "main:app"
    assert settings["graceful_timeout"] == "240"
    assert settings["keepalive"] == "10"
    assert settings["loglevel"] == "debug"
    assert settings["timeout"] == "240"
    assert settings["workers"] == "10"  # the lesser of MAX_WORKERS and WEB_CONCURRENCY (fix "Drop-in")
    assert "INBOARD-STYLE" in settings["logconfig_dict"] and "'DEBUG'" in settings["logconfig_dict"]


def test_a_users_config_file_is_layered_over_start_py(tmp_path):
    """What the user's file sets wins (workers, keepalive); the rest is start.py's (fix "Drop-in")."""
    app_dir = make_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text(LAYERED_GUNICORN_CONF)  # found by the search order
    settings, lines = gunicorn_settings(
        app_dir, WEB_CONCURRENCY="2", KEEP_ALIVE="10", TIMEOUT="77", LOG_FILTERS="/health", HOST="127.0.0.2"
    )
    assert any(line.endswith(f"| config {app_dir / 'gunicorn_conf.py'}") for line in lines), lines
    assert settings["workers"] == "3" and settings["keepalive"] == "7"  # the file's
    assert settings["timeout"] == "77" and settings["bind"] == "['127.0.0.2:80']"  # start.py's
    assert settings["worker_class"].endswith("UvicornWorker"), settings["worker_class"]
    assert settings["access_log_format"] == '%(h)s - "%(r)s" %(s)s'
    assert "asgi_start.access_path_filter" in settings["logconfig_dict"], settings["logconfig_dict"]


@pytest.mark.parametrize("worker_class", [None, "uvicorn_worker.UvicornWorker"])
def test_worker_class_precedence_over_a_users_file(tmp_path, worker_class):
    """WORKER_CLASS when set > the user's file > the default; --dry-run says what really runs."""
    app_dir = make_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text('worker_class = "asgi"\n')
    env = {"WORKER_CLASS": worker_class} if worker_class else {}
    expected = worker_class or "asgi"
    assert gunicorn_settings(app_dir, **env)[0]["worker_class"] == expected
    assert plan(app_dir, **env)["worker_class"] == expected


# --------------------------------------------------------------------------
# test_start.py::TestSetGunicornOptions and TestStartServer (gunicorn): GUNICORN_CONF as a path
# or python:module, WORKER_CLASS, GUNICORN_CMD_ARGS.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["default", "file", "module"])
@pytest.mark.parametrize("worker_class", ["asgi", "uvicorn_worker.UvicornWorker"])
def test_gunicorn_conf_worker_class_and_gunicorn_cmd_args(tmp_path, kind, worker_class):
    app_dir = make_app(tmp_path, "tmp_app.main_starlette")
    env = {
        "APP_MODULE": "tmp_app.main_starlette:app",
        "PROCESS_MANAGER": "gunicorn",
        "WORKER_CLASS": worker_class,
        "GUNICORN_CMD_ARGS": f"--worker-tmp-dir {tmp_path}",
        "LOG_LEVEL": "debug",
        **with_config(app_dir, kind),
    }
    result = plan(app_dir, **env)
    assert as_python_m(result["argv"])[1:3] == ["-m", "gunicorn"] and result["argv"][-1] == "tmp_app.main_starlette:app"
    assert result["config_file"] == config_location(app_dir, kind) and "--config" in result["argv"]
    assert result["worker_class"] == worker_class
    settings, lines = gunicorn_settings(app_dir, **env)
    assert_config_file(app_dir, kind, settings, lines)
    assert settings["worker_class"] == worker_class
    assert settings["worker_tmp_dir"] == str(tmp_path)  # GUNICORN_CMD_ARGS wins over start.py's /dev/shm
    assert settings["loglevel"] == "debug"
    # inboard logged "Running Gunicorn." or "Running Uvicorn with Gunicorn."; start.py's summary names the class
    assert any(f"gunicorn ({worker_class}) | app tmp_app.main_starlette:app" in line for line in lines), lines


def test_gunicorn_cmd_args_log_level_wins_over_log_level(tmp_path):
    settings, _ = gunicorn_settings(make_app(tmp_path), LOG_LEVEL="warning", GUNICORN_CMD_ARGS="--log-level debug")
    assert settings["loglevel"] == "debug"


# --------------------------------------------------------------------------
# test_start.py::TestSetAppModule — APP_MODULE and its alias UVICORN_APP.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["APP_MODULE", "UVICORN_APP"])
@pytest.mark.parametrize("where", ["app directory", "PYTHONPATH"])
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_app_module_and_uvicorn_app(tmp_path, variable, where, server):
    """UVICORN_APP is an alias of APP_MODULE (fix "Drop-in"); the module may live on PYTHONPATH."""
    app_dir = make_app(tmp_path)  # its main.py must not be picked
    home = app_dir if where == "app directory" else tmp_path / "elsewhere"
    write_module(home, "tmp_app.main_fastapi")
    env = {variable: "tmp_app.main_fastapi:app", "PROCESS_MANAGER": server}
    if where == "PYTHONPATH":
        env["PYTHONPATH"] = str(home)
    result = plan(app_dir, **env)
    assert result["app_module"] == "tmp_app.main_fastapi:app"
    assert result["argv"][-1 if server == "gunicorn" else 3] == "tmp_app.main_fastapi:app", result["argv"]


def test_uvicorn_app_and_app_module_may_both_be_set_when_they_agree(tmp_path):
    app_dir = make_app(tmp_path)
    result = plan(app_dir, APP_MODULE="main:app", UVICORN_APP="main:app")
    assert result["app_module"] == "main:app"


def test_without_app_module_main_py_is_found(tmp_path):
    """inboard needs APP_MODULE (its images set it); start.py finds app/main.py, else main.py."""
    assert plan(make_app(tmp_path))["app_module"] == "main:app"
    assert plan(make_app(tmp_path / "pkg", "app.main"))["app_module"] == "app.main:app"


# --------------------------------------------------------------------------
# test_start.py::TestSetUvicornOptions and TestStartServer (uvicorn): what Uvicorn is given.
# --------------------------------------------------------------------------
def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[index + 1] for index, item in enumerate(argv[:-1]) if item == flag]


@pytest.mark.parametrize("with_reload", [None, "false"])
def test_uvicorn_options_default(tmp_path, with_reload):
    env = {
        "PROCESS_MANAGER": "uvicorn",
        "APP_MODULE": "main:app",
        **({"WITH_RELOAD": with_reload} if with_reload else {}),
    }
    result = plan(make_app(tmp_path), **env)
    argv = result["argv"]
    assert as_python_m(argv)[1:4] == ["-m", "uvicorn", "main:app"]
    assert result["bind"] == ["0.0.0.0:80"]  # host 0.0.0.0, port 80
    assert result["log_level"] == "info"
    assert result["reload"] is False and "--reload" not in argv
    assert not [flag for flag in argv if flag.startswith("--reload")]


@pytest.mark.parametrize("reload_dirs", ["inboard", "inboard,tests", " inboard, tests "])
def test_uvicorn_options_custom(tmp_path, reload_dirs):
    app_dir = make_app(tmp_path, "tmp_app.main_fastapi")
    for name in ("inboard", "tests"):
        (app_dir / name).mkdir()
    env = {
        "PROCESS_MANAGER": "uvicorn",
        "APP_MODULE": "tmp_app.main_fastapi:app",
        "LOG_LEVEL": "debug",
        "WITH_RELOAD": "true",
        "RELOAD_DELAY": "0.5",
        "RELOAD_DIRS": reload_dirs,
        "RELOAD_EXCLUDES": "*[Dd]ockerfile",
        "RELOAD_INCLUDES": "*.py, *.md",
        "GRACEFUL_TIMEOUT": "240",
        "KEEP_ALIVE": "10",
    }
    result = plan(app_dir, **env)
    argv = result["argv"]
    assert result["server"] == "uvicorn" and result["reload"] is True and result["workers"] == 1
    assert result["log_level"] == "debug"
    assert as_python_m(argv)[1:4] == ["-m", "uvicorn", "tmp_app.main_fastapi:app"]
    assert "--reload" in argv
    dirs = ["inboard"] if reload_dirs == "inboard" else ["inboard", "tests"]
    assert flag_values(argv, "--reload-dir") == [str(app_dir / name) for name in dirs]
    assert flag_values(argv, "--reload-delay") == ["0.5"]
    assert flag_values(argv, "--reload-include") == ["*.py", "*.md"]
    assert flag_values(argv, "--reload-exclude") == ["*[Dd]ockerfile"]
    # inboard gave Uvicorn neither; start.py does, under every server
    assert flag_values(argv, "--timeout-graceful-shutdown") == ["240"]
    assert flag_values(argv, "--timeout-keep-alive") == ["10"]


def test_with_reload_under_gunicorn_is_uvicorns_reloader(tmp_path):
    """inboard ignored WITH_RELOAD under Gunicorn; start.py runs Uvicorn's reloader, one process."""
    result = plan(make_app(tmp_path), PROCESS_MANAGER="gunicorn", WITH_RELOAD="true", WEB_CONCURRENCY="4")
    assert (result["requested_server"], result["server"], result["workers"], result["reload"]) == (
        "gunicorn",
        "uvicorn",
        1,
        True,
    )
    assert "--reload" in result["argv"]


@pytest.mark.parametrize("value", ["1", "yes", "TRUE"])
def test_with_reload_takes_every_true_word(tmp_path, value):
    """inboard's reload was on for 'true' only; 1 and yes are true here (anything else is exit 2)."""
    assert plan(make_app(tmp_path), PROCESS_MANAGER="uvicorn", WITH_RELOAD=value)["reload"] is True


def test_uvicorn_workers_are_counted_as_under_gunicorn(tmp_path):
    """inboard's uvicorn.run() got no worker count (Uvicorn read WEB_CONCURRENCY itself, else 1)."""
    result = plan(make_app(tmp_path), PROCESS_MANAGER="uvicorn", PYTHON_CPU_COUNT="3", MAX_WORKERS="2")
    assert result["workers"] == 2 and flag_values(result["argv"], "--workers") == ["2"]


def test_uvicorn_config_options_is_not_read_and_server_args_replaces_it(tmp_path):
    """inboard laid UVICORN_CONFIG_OPTIONS (JSON) over its options; start.py ignores it: flags go in SERVER_ARGS."""
    app_dir = make_app(tmp_path)
    base = {"PROCESS_MANAGER": "uvicorn", "WITH_RELOAD": "true"}
    options = json.dumps({"app": "main:app", "host": "0.0.0.0", "port": 80, "log_level": "info", "reload": False})
    with_json = plan(app_dir, UVICORN_CONFIG_OPTIONS=options, **base)
    assert with_json.pop("warnings") == [
        "UVICORN_CONFIG_OPTIONS is not read: inboard's; put Uvicorn's flags in SERVER_ARGS (SERVER=uvicorn)"
    ]
    without = plan(app_dir, **base)
    assert without.pop("warnings") == []
    assert with_json == without
    assert with_json["reload"] is True  # inboard: False, from the JSON
    result = plan(app_dir, SERVER_ARGS="--no-server-header --h11-max-incomplete-event-size 65536", **base)
    assert result["argv"][-3:] == ["--no-server-header", "--h11-max-incomplete-event-size", "65536"]


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "0.0.0.0:80"),
        ({"HOST": "127.0.0.1", "PORT": "8123"}, "127.0.0.1:8123"),
        ({"HOST": "127.0.0.1", "PORT": "8123", "BIND": "127.0.0.1:9000"}, "127.0.0.1:9000"),
    ],
)
def test_bind_host_and_port(tmp_path, server, env, expected):
    """inboard: BIND or HOST:PORT under Gunicorn, HOST and PORT under Uvicorn; start.py: BIND or HOST:PORT everywhere."""
    assert plan(make_app(tmp_path), PROCESS_MANAGER=server, **env)["bind"] == [expected]


def test_forwarded_allow_ips_is_read_by_start_py_for_every_server(tmp_path):
    """inboard left FORWARDED_ALLOW_IPS to Gunicorn and Uvicorn, which read it themselves; start.py reads it."""
    app_dir = make_app(tmp_path)
    settings, _ = gunicorn_settings(app_dir, FORWARDED_ALLOW_IPS="10.0.0.1, 10.0.0.2")
    assert settings["forwarded_allow_ips"] == "['10.0.0.1', '10.0.0.2']"
    argv = plan(app_dir, PROCESS_MANAGER="uvicorn", FORWARDED_ALLOW_IPS="10.0.0.1, 10.0.0.2")["argv"]
    assert flag_values(argv, "--forwarded-allow-ips") == ["10.0.0.1,10.0.0.2"]


def test_access_log_and_error_log(tmp_path):
    app_dir = make_app(tmp_path)
    settings, _ = gunicorn_settings(app_dir, ACCESS_LOG="", ERROR_LOG="errors.log")
    assert settings["accesslog"] == "None"  # disabled at its source
    assert "--no-access-log" in plan(app_dir, PROCESS_MANAGER="uvicorn", ACCESS_LOG="")["argv"]  # inboard: not read
    assert f"'filename': '{app_dir / 'errors.log'}'" in settings["logconfig_dict"], settings["logconfig_dict"]


# --------------------------------------------------------------------------
# test_logging_conf.py::TestConfigureLogging — LOGGING_CONF in its file and module forms.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["file", "module in a package", "file elsewhere", "module on PYTHONPATH"])
def test_logging_conf_forms_reach_gunicorn(tmp_path, form):
    app_dir = make_app(tmp_path)
    env: dict[str, str] = {}
    if form == "file":
        (app_dir / "logging_conf.py").write_text(LOGGING_CONF_SOURCE)
        env["LOGGING_CONF"] = str(app_dir / "logging_conf.py")
    elif form == "module in a package":
        make_app(tmp_path, "inboard_like.logging_conf", LOGGING_CONF_SOURCE)
        env["LOGGING_CONF"] = "inboard_like.logging_conf"
    else:
        (tmp_path / "tmp_log").mkdir()
        (tmp_path / "tmp_log" / "tmp_log.py").write_text(LOGGING_CONF_SOURCE)
        if form == "file elsewhere":
            env["LOGGING_CONF"] = str(tmp_path / "tmp_log" / "tmp_log.py")
        else:
            env.update(LOGGING_CONF="tmp_log", PYTHONPATH=str(tmp_path / "tmp_log"))
    settings, _ = gunicorn_settings(app_dir, **env)
    assert "INBOARD-STYLE" in settings["logconfig_dict"], settings["logconfig_dict"]
    assert "asgi_start.text_formatter" not in settings["logconfig_dict"]  # replaces the built-in one


def test_a_python_logging_conf_that_prints_leaves_dry_run_json_intact(tmp_path):
    """inboard's fixtures include a logging module that prints ('Hello, World!'). start.py runs a
    Python LOGGING_CONF itself, once, to check it; what it prints must not break --dry-run's JSON
    (nor LOG_FORMAT=json's one object per line)."""
    app_dir = make_app(tmp_path)
    (app_dir / "chatty_logging.py").write_text(
        "print('Hello, World!')\nLOGGING_CONFIG = {'version': 1, 'disable_existing_loggers': False}\n"
    )
    result = run_start(["--dry-run"], clean_env(LOGGING_CONF="chatty_logging", LOG_FORMAT="json"), app_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["app_module"] == "main:app", result.stdout[:500]


# --------------------------------------------------------------------------
# Every configuration inboard's suite expects to fail, and the inputs start.py refuses where
# inboard went on: exit status 2, one line naming the variable, no traceback.
# --------------------------------------------------------------------------
REFUSED = [
    # (id, files to write in the app directory, environment, variables the line must name)
    ("process manager incorrect", {}, {"PROCESS_MANAGER": "incorrect"}, ["PROCESS_MANAGER"]),
    ("gunicorn conf missing", {}, {"GUNICORN_CONF": "/no/file/here"}, ["GUNICORN_CONF"]),
    ("gunicorn conf module missing", {}, {"GUNICORN_CONF": "python:no.module.here"}, ["GUNICORN_CONF"]),
    ("pre-start path missing", {}, {"PRE_START_PATH": "/no/file/here"}, ["PRE_START_PATH"]),
    ("pre-start without .sh", {"prestart": "echo hi\n"}, {"PRE_START_PATH": "prestart"}, ["PRE_START_PATH"]),
    ("app module incorrect", {}, {"APP_MODULE": "inboard.app.incorrect:app"}, ["APP_MODULE"]),
    ("uvicorn app incorrect", {}, {"UVICORN_APP": "inboard.app.incorrect:app"}, ["UVICORN_APP"]),
    (
        "app module and uvicorn app disagree",
        {},
        {"APP_MODULE": "main:app", "UVICORN_APP": "other:app"},
        ["APP_MODULE", "UVICORN_APP"],
    ),
    ("no app module and no app", {"main.py": None}, {}, ["APP_MODULE"]),
    ("logging conf module incorrect", {}, {"LOGGING_CONF": "no.module.here"}, ["LOGGING_CONF"]),
    (
        "logging conf incorrect extension",
        {"tmp_logging_conf": "This file doesn't have the correct extension.\n"},
        {"LOGGING_CONF": "tmp_logging_conf"},
        ["LOGGING_CONF"],
    ),
    (
        "logging conf incorrect type",
        {"incorrect_type.py": "LOGGING_CONFIG: list = ['Hello', 'World']\n"},
        {"LOGGING_CONF": "incorrect_type"},
        ["LOGGING_CONF"],
    ),
    ("logging conf no dict", {"no_dict.py": "print('Hello, World!')\n"}, {"LOGGING_CONF": "no_dict"}, ["LOGGING_CONF"]),
    (
        "logging conf with a class object",
        {"inboard_logging.py": LOGGING_CONF_WITH_A_CLASS},
        {"LOGGING_CONF": "inboard_logging.py"},
        ["LOGGING_CONF"],
    ),
    ("log format gunicorn", {}, {"LOG_FORMAT": "gunicorn"}, ["LOG_FORMAT"]),
    ("log format uvicorn", {}, {"LOG_FORMAT": "uvicorn"}, ["LOG_FORMAT"]),
    ("log format verbose", {}, {"LOG_FORMAT": "verbose"}, ["LOG_FORMAT"]),
    ("log format simple", {}, {"LOG_FORMAT": "simple"}, ["LOG_FORMAT"]),
    ("log filters not paths", {}, {"LOG_FILTERS": "foo, bar, baz"}, ["LOG_FILTERS"]),
    ("log filters separated by spaces", {}, {"LOG_FILTERS": "/healthy /heartbeat"}, ["LOG_FILTERS"]),
    ("log filters with spaces", {}, {"LOG_FILTERS": "/healthy foo   bar"}, ["LOG_FILTERS"]),
    ("with reload not a boolean", {}, {"WITH_RELOAD": "maybe"}, ["WITH_RELOAD"]),
    ("reload delay not a number", {}, {"WITH_RELOAD": "true", "RELOAD_DELAY": "soon"}, ["RELOAD_DELAY"]),
    ("reload delay without reload", {}, {"RELOAD_DELAY": "0.5"}, ["RELOAD_DELAY"]),
    ("reload dirs missing", {}, {"WITH_RELOAD": "true", "RELOAD_DIRS": "inboard"}, ["RELOAD_DIRS"]),
    ("inboard's worker class", {}, {"WORKER_CLASS": "inboard.gunicorn_workers.UvicornWorker"}, ["WORKER_CLASS"]),
    ("web concurrency zero", {}, {"WEB_CONCURRENCY": "0"}, ["WEB_CONCURRENCY"]),
    ("max workers zero", {}, {"MAX_WORKERS": "0"}, ["MAX_WORKERS"]),
    ("workers per core not a number", {}, {"WORKERS_PER_CORE": "many"}, ["WORKERS_PER_CORE"]),
    ("port not a number", {}, {"PORT": "eighty"}, ["PORT"]),
    ("timeout not a number", {}, {"TIMEOUT": "2m"}, ["TIMEOUT"]),
    ("log level unknown", {}, {"LOG_LEVEL": "trace"}, ["LOG_LEVEL"]),
]


@pytest.mark.parametrize(("files", "env", "names"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused_with_one_line_naming_the_variable(tmp_path, files, env, names):
    app_dir = make_app(tmp_path)
    for name, content in files.items():
        if content is None:
            (app_dir / name).unlink()
        else:
            (app_dir / name).write_text(content)
    # what a user's LOGGING_CONF prints while start.py loads it goes to stderr, ahead of the error line
    *printed, line = refused(app_dir, **env)
    assert printed == (["Hello, World!"] if any("print(" in (content or "") for content in files.values()) else [])
    assert line.startswith("asgi-start: error: "), line
    for name in names:
        assert name in line, line


# --------------------------------------------------------------------------
# test_start.py::TestRunPreStartScript — the pre-start script.
# --------------------------------------------------------------------------
def test_pre_start_path_forms(tmp_path):
    app_dir = make_app(tmp_path)
    assert plan(app_dir)["prestart"] is None  # none given, none present: nothing runs
    (app_dir / "migrate.py").write_text(PRESTART_PY)
    (app_dir / "migrate.sh").write_text(PRESTART_SH)
    assert plan(app_dir, PRE_START_PATH="migrate.py")["prestart_command"] == [
        sys.executable,
        str(app_dir / "migrate.py"),
    ]
    assert plan(app_dir, PRE_START_PATH=str(app_dir / "migrate.sh"))["prestart_command"] == [
        "sh",
        str(app_dir / "migrate.sh"),
    ]
    (app_dir / "prestart.py").write_text(PRESTART_PY)  # start.py's default name (inboard had none)
    assert plan(app_dir)["prestart"] == str(app_dir / "prestart.py")


@pytest.mark.parametrize(
    ("name", "content", "status"),
    [
        ("prestart_error.py", 'raise RuntimeError("Testing pre-start script error behavior")\n', 1),
        ("prestart_error.sh", "exit 1\n", 1),
        ("prestart_error.sh", "echo about to fail; exit 3\n", 3),
    ],
)
def test_a_failing_pre_start_script_stops_the_start_with_its_status(tmp_path, name, content, status):
    # an app that cannot load: were the server started anyway, it would stop by itself
    app_dir = make_app(tmp_path, source="nothing = None\n")
    (app_dir / name).write_text(content)
    env = clean_env(HOST="127.0.0.1", PORT=str(reserve_port()), PRE_START_PATH=name, APP_MODULE="main:app")
    result = run_start([], env, app_dir, timeout=60)
    assert result.returncode == status, result.stderr[-3000:]
    last = result.stderr.splitlines()[-1]
    assert "pre-start script" in last and f"exited with status {status}" in last, last
    assert "Starting gunicorn" not in result.stderr and "Listening at" not in result.stderr
    if name.endswith(".py"):
        assert "RuntimeError: Testing pre-start script error behavior" in result.stderr


# --------------------------------------------------------------------------
# Real servers: the process manager really running, the pre-start script running first,
# APP_MODULE / UVICORN_APP served, LOG_FILTERS dropping access records, LOG_LEVEL.
# --------------------------------------------------------------------------
@E2E
@pytest.mark.parametrize(
    ("manager", "variable", "script"),
    [("gunicorn", "APP_MODULE", "prestart.py"), ("uvicorn", "UVICORN_APP", "prestart.sh")],
)
def test_process_manager_serves_after_the_pre_start_script(servers, tmp_path, manager, variable, script):
    app_dir = make_app(tmp_path, "tmp_app.main_base")
    (app_dir / script).write_text(PRESTART_PY if script.endswith(".py") else PRESTART_SH)
    env = {
        "PROCESS_MANAGER": manager,
        variable: "tmp_app.main_base:app",
        "PRE_START_PATH": str(app_dir / script),
        "WEB_CONCURRENCY": "2",
        "LOG_FILTERS": "/health, /heartbeat",
        "LOG_COLORS": "true",  # not read: no colour codes
        "BASIC_AUTH_USERNAME": "test_user",  # inboard's demo app read it; start.py passes it on
    }
    if manager == "uvicorn":
        env["SERVER_ARGS"] = "--no-server-header"  # instead of UVICORN_CONFIG_OPTIONS
    server = start_server(servers, app_dir, local_env(**env))
    assert server.wait_ready() == (
        200,
        f"Hello World, from {manager.title()} and Python {sys.version_info[0]}.{sys.version_info[1]}!",
    )
    argv = cmdline(server.pid)
    assert as_python_m(argv)[1:3] == ["-m", manager] and not any(
        "start.py" in part for part in argv
    )  # the PID is the server
    expected_marker = "py port_closed=True" if script.endswith(".py") else "sh ran"
    assert (app_dir / "prestart-ran.txt").read_text() == expected_marker
    headers = request(server.port, "/")[1]
    assert headers.get("server") == ("uvicorn" if manager == "gunicorn" else None)
    assert http_get(server.url("/env?name=BASIC_AUTH_USERNAME")) == (200, "test_user")
    for path in ("/status", "/health", "/health/live", "/heartbeat", "/healthy", "/log"):
        assert http_get(server.url(path))[0] == 200
    assert len(wait_until_workers_serve(server.url("/pid"), 2)) == 2
    output = stop(server)
    assert "\x1b[" not in output
    lines = output.splitlines()
    [prestart] = [index for index, line in enumerate(lines) if "[prestart] hello from the pre-start script" in line]
    [summary] = [index for index, line in enumerate(lines) if " INFO asgi-start [" in line and f"{manager} " in line]
    assert prestart < summary
    found = records(output)
    access = [message for _, logger, _, message in found if logger.endswith(".access")]
    assert any(message.endswith('"GET /status HTTP/1.1" 200') for message in access), access
    assert any('"GET /healthy HTTP/1.1"' in message for message in access), access  # inboard dropped it too
    assert not [m for m in access if "/health " in m or "/health/live" in m or "/heartbeat" in m], access
    assert ("INFO", "tmp_app.main_base", "app info record") in [(lv, lg, msg) for lv, lg, _, msg in found]
    assert not [record for record in found if record[0] == "DEBUG"]  # LOG_LEVEL info by default


@E2E
@pytest.mark.parametrize(("manager", "level"), [("gunicorn", "debug"), ("uvicorn", "debug"), ("gunicorn", "warning")])
def test_log_level_reaches_server_and_app_records(servers, tmp_path, manager, level):
    server = start_server(
        servers, make_app(tmp_path), local_env(PROCESS_MANAGER=manager, LOG_LEVEL=level, WEB_CONCURRENCY="1")
    )
    assert server.wait_ready()[0] == 200
    for path in ("/log", "/warn", "/debug"):
        assert http_get(server.url(path))[0] == 200
    found = records(stop(server))
    messages = {(record[0], record[1], record[3]) for record in found}
    assert ("WARNING", "main", "app warning record") in messages
    if level == "debug":
        assert ("DEBUG", "main", "app debug record") in messages
        assert ("INFO", "main", "app info record") in messages
        if manager == "gunicorn":
            assert any(r[0] == "DEBUG" and r[1] == "gunicorn.error" and "loglevel: debug" in r[3] for r in found)
    else:
        quiet = [
            r for r in found if r[0] in ("DEBUG", "INFO") and r[1] != "asgi-start" and not r[1].endswith(".access")
        ]
        assert quiet == []
        # inboard's handler level hid access records below LOG_LEVEL; ACCESS_LOG is their switch here
        assert any(r[1].endswith(".access") and '"GET /log HTTP/1.1" 200' in r[3] for r in found)


@E2E
def test_gunicorn_cmd_args_log_level_debug_gives_debug_records_from_master_and_workers(servers, tmp_path):
    """Fix "Drop-in": GUNICORN_CMD_ARGS wins over start.py's levels, as in the old images."""
    server = start_server(
        servers, make_app(tmp_path), local_env(GUNICORN_CMD_ARGS="--log-level debug", WEB_CONCURRENCY="1")
    )
    assert server.wait_ready()[0] == 200
    [worker] = wait_for_workers(server.pid, 1)
    assert http_get(server.url("/debug"))[0] == 200
    found = records(stop(server))
    assert ("DEBUG", "gunicorn.error", server.pid, "Arbiter booted") in found, found[:20]
    # the Uvicorn worker's server logger follows Gunicorn's level
    assert ("DEBUG", "uvicorn.error", worker, "server logger debug record") in found, found


@E2E
def test_a_users_config_file_really_runs_with_uvicorn_workers_and_start_py_logging(servers, tmp_path):
    """Fix "Drop-in": the user's file sets the count; start.py's bind, worker class, log format and filters still apply."""
    app_dir = make_app(tmp_path)
    (app_dir / "gunicorn_conf.py").write_text(LAYERED_GUNICORN_CONF)
    port = str(reserve_port())
    # fail fast, before a server is started, where Gunicorn would not even bind start.py's address
    settings, _ = gunicorn_settings(app_dir, HOST="127.0.0.1", PORT=port)
    assert settings["bind"] == f"['127.0.0.1:{port}']" and settings["worker_class"].endswith("UvicornWorker"), settings
    server = Server(app_dir, local_env(PORT=port, LOG_FILTERS="/health"))
    servers.append(server)
    assert server.wait_ready()[0] == 200
    status, headers, body = request(server.port, "/")
    assert status == 200 and body.startswith("Hello World, from Gunicorn") and headers.get("server") == "uvicorn"
    assert len(wait_for_workers(server.pid, 3)) == 3
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    for path in ("/health", "/status"):
        assert http_get(server.url(path))[0] == 200
    found = records(stop(server))
    access = [record[3] for record in found if record[1] == "uvicorn.access"]
    assert any(message.endswith('- "GET /status HTTP/1.1" 200') for message in access), access
    assert not [message for message in access if "/health" in message], access


@E2E
def test_logging_conf_module_formats_every_record(servers, tmp_path):
    """LOGGING_CONF as a module name (inboard's tmp_log on sys.path), with LOG_LEVEL=debug read by it."""
    app_dir = make_app(tmp_path)
    (app_dir / "tmp_log.py").write_text(LOGGING_CONF_SOURCE)
    server = start_server(servers, app_dir, local_env(LOGGING_CONF="tmp_log", LOG_LEVEL="debug", WEB_CONCURRENCY="1"))
    assert server.wait_ready()[0] == 200
    for path in ("/log", "/debug"):
        assert http_get(server.url(path))[0] == 200
    lines = stop(server).splitlines()
    assert "INBOARD-STYLE INFO main app info record" in lines
    assert "INBOARD-STYLE DEBUG main app debug record" in lines


@E2E
def test_reload_watches_reload_dirs_with_includes_and_excludes(servers, tmp_path):
    """inboard's custom reload options (RELOAD_DIRS, RELOAD_INCLUDES, RELOAD_EXCLUDES, RELOAD_DELAY), really watched."""
    pytest.importorskip("watchfiles", reason="Uvicorn applies reload includes and excludes only with watchfiles")
    app_dir = make_app(tmp_path)
    for name in ("watched", "other"):
        (app_dir / name).mkdir()
    env = local_env(
        PROCESS_MANAGER="uvicorn",
        WITH_RELOAD="true",
        RELOAD_DELAY="0.5",
        RELOAD_DIRS="watched, other",
        RELOAD_INCLUDES="*.py, *.md",
        RELOAD_EXCLUDES="*[Dd]ockerfile",
    )
    server = start_server(servers, app_dir, env)
    assert server.wait_ready()[0] == 200
    first = http_get(server.url("/pid"))[1]
    deadline, pid = time.monotonic() + 20, first
    while pid == first and time.monotonic() < deadline:
        # an excluded file, a file no include matches, then an included one, each time
        (app_dir / "watched" / "Dockerfile").write_text(f"FROM scratch # {time.monotonic()}\n")
        (app_dir / "other" / "notes.txt").write_text(f"{time.monotonic()}\n")
        (app_dir / "other" / "notes.md").write_text(f"{time.monotonic()}\n")
        poll_until = time.monotonic() + 1.5
        while pid == first and time.monotonic() < poll_until:
            try:
                pid = http_get(server.url("/pid"), timeout=2)[1]
            except OSError:
                pass
            time.sleep(0.1)
    assert pid != first, server.output()[-3000:]
    output = stop(server)
    detected = [line for line in output.splitlines() if "detected changes in" in line]
    assert detected and all("notes.md" in line for line in detected), detected
    assert not [line for line in detected if "Dockerfile" in line or "notes.txt" in line], detected
    [watching] = [line for line in output.splitlines() if "Will watch for changes in these directories" in line]
    assert str(app_dir / "watched") in watching and str(app_dir / "other") in watching


# --------------------------------------------------------------------------
# test_gunicorn_workers.py — the Gunicorn arbiter and its Uvicorn workers, as start.py runs them.
# --------------------------------------------------------------------------
@E2E
def test_gunicorn_serves_tls_and_handles_the_arbiter_signals(servers, tmp_path):
    app_dir = make_app(tmp_path)
    cert, key = self_signed_certificate(tmp_path)
    server = start_server(
        servers, app_dir, local_env(CERTFILE=str(cert), KEYFILE=str(key), CA_CERTS=str(cert), WEB_CONCURRENCY="1")
    )
    context = ssl.create_default_context(cafile=str(cert))
    status, body = server.wait_ready(deadline_s=30, tls=context)
    assert status == 200 and body.startswith("Hello World, from Gunicorn")
    output = server.output()
    assert "Listening at: https://127.0.0.1:" in output and "Starting gunicorn" in output
    [first] = wait_for_workers(server.pid, 1)
    # HUP: new workers replace the old; TTIN: one more; TTOU: one fewer; USR1, WINCH: handled
    server.process.send_signal(signal.SIGHUP)
    wait_for_output(server, "Handling signal: hup")
    assert wait_until(lambda: len(workers := worker_pids(server.pid)) == 1 and first not in workers), worker_pids(
        server.pid
    )
    server.process.send_signal(signal.SIGTTIN)
    wait_for_output(server, "Handling signal: ttin")
    assert len(wait_for_workers(server.pid, 2)) == 2
    server.process.send_signal(signal.SIGTTOU)
    wait_for_output(server, "Handling signal: ttou")
    assert len(wait_for_workers(server.pid, 1)) == 1
    for sig, name in ((signal.SIGUSR1, "usr1"), (signal.SIGWINCH, "winch")):
        server.process.send_signal(sig)
        wait_for_output(server, f"Handling signal: {name}")
    assert request(server.port, "/", tls=context)[0] == 200
    assert "Handling signal: term" in stop(server)


@E2E
@pytest.mark.parametrize(
    ("manager", "source", "status", "reason"),
    [
        ("gunicorn", LIFESPAN_FAILURE_APP, 3, "Worker failed to boot."),
        ("gunicorn", "nothing = None\n", 4, "App failed to load."),  # main.py without `app`
        # the older Uvicorn that pip resolves for Python 3.9 exits 1 (see tests/e2e/test_servers.py)
        ("uvicorn", LIFESPAN_FAILURE_APP, 3, "Application startup failed. Exiting."),
    ],
)
def test_a_failing_app_stops_the_server_with_its_exit_status(servers, tmp_path, manager, source, status, reason):
    """inboard's launcher exited 0 whatever Gunicorn did; here the started PID is the server, and its status is the container's.
    One worker: with several, Gunicorn 27.0.1 at times exits 1 instead of 4 (HaltServer raised again while halting)."""
    app_dir = make_app(tmp_path, source=source)
    server = start_server(
        servers, app_dir, local_env(PROCESS_MANAGER=manager, APP_MODULE="main:app", WEB_CONCURRENCY="1")
    )
    accepted = {status, 1} if manager == "uvicorn" else {status}
    assert server.process.wait(timeout=60) in accepted, server.output()[-3000:]
    assert reason in server.output()
