"""Planning: settings + probed facts -> the exact argv, for each server, with and without config files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import start

REPO = Path(start.__file__).resolve().parent
# start.py's own default config files, as the image puts them beside start.py
DEFAULT_GUNICORN_CONF = (REPO / "gunicorn_conf.py").read_text()
DEFAULT_HYPERCORN_CONF = (REPO / "hypercorn_conf.py").read_text()

ALL_INSTALLED = frozenset(
    {"gunicorn", "uvicorn", "uvicorn_worker", "hypercorn", "granian", "watchfiles", "uvloop", "rloop", "trio"}
    | {"zttp", "h2"}
)


def facts_for(
    app_dir: Path,
    start_dir: Path | None = None,
    installed=ALL_INSTALLED,
    cpus: int = 2,
    gunicorn=(27, 0, 1),
    granian=(2, 8, 7),
    uvicorn=(0, 54, 0),
) -> start.Facts:
    return start.Facts(
        app_dir=str(app_dir),
        start_dir=str(start_dir or app_dir / "no-start-dir"),
        cpus=start.CpuCount(cpus, "CPU affinity"),
        installed=lambda name: name in installed,
        search_path=start.module_search_path(str(app_dir)),
        dev_shm=False,
        version=lambda name: {"gunicorn": gunicorn, "granian": granian, "uvicorn": uvicorn}.get(name, (0,)),
    )


def handed_over(result: start.Plan, module: str, fork_guard: bool = False) -> list[str]:
    """How the planned argv begins: the server's interpreter runs the hand-over, which runs the module."""
    return [sys.executable, f"{result.runtime_dir}/hand_over.py", *(["--fork-guard"] * fork_guard), module]


def plan(app_dir: Path, env: dict[str, str], extra=(), **facts) -> start.Plan:
    return start.plan_launch(start.parse_settings(env), facts_for(app_dir, **facts), extra)


def plan_problems(app_dir: Path, env: dict[str, str], **facts) -> list[str]:
    with pytest.raises(start.ConfigError) as caught:
        plan(app_dir, env, **facts)
    return caught.value.problems


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "main.py").write_text("app = None\n")
    return tmp_path


# --- finding the app, without importing it -----------------------------------


def test_app_main_wins_over_main(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app/main.py").write_text("raise SystemExit('imported!')\n")
    (tmp_path / "main.py").write_text("raise SystemExit('imported!')\n")
    assert plan(tmp_path, {}).app_module == "app.main:app"  # and nothing was imported


def test_main_py_and_variable_name(app_dir):
    assert plan(app_dir, {"VARIABLE_NAME": "api"}).app_module == "main:api"


def test_module_name_in_a_package_without_init(tmp_path):
    (tmp_path / "svc/web").mkdir(parents=True)
    (tmp_path / "svc/web/asgi.py").write_text("")
    assert plan(tmp_path, {"MODULE_NAME": "svc.web.asgi"}).app_module == "svc.web.asgi:app"


def test_app_module_must_exist_on_disk(app_dir):
    assert plan(app_dir, {"APP_MODULE": "main:application"}).app_module == "main:application"
    [problem] = plan_problems(app_dir, {"APP_MODULE": "missing.module:app"})
    assert problem.startswith("APP_MODULE='missing.module:app': module 'missing.module' not found")
    [problem] = plan_problems(app_dir, {"APP_MODULE": "main.sub:app"})  # main is not a package
    assert "not found" in problem


def test_app_module_from_the_python_path_is_found(app_dir):
    assert plan(app_dir, {"APP_MODULE": "json.decoder:JSONDecoder"}).app_module == "json.decoder:JSONDecoder"


def test_no_app_lists_where_it_looked(tmp_path):
    [problem] = plan_problems(tmp_path, {})
    assert str(tmp_path / "app/main.py") in problem and str(tmp_path / "main.py") in problem
    assert "APP_MODULE" in problem


def test_plan_problems_are_collected_together(tmp_path):
    found = plan_problems(tmp_path, {"PRE_START_PATH": "nope.sh", "CERTFILE": "c.pem", "KEYFILE": "k.pem"})
    assert [p.split("=")[0].split(":")[0] for p in found] == ["CERTFILE", "KEYFILE", "no app found", "PRE_START_PATH"]


# --- Gunicorn ------------------------------------------------------------------


def test_gunicorn_with_the_default_config_beside_start(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    result = plan(app_dir, {}, extra=["--preload"], start_dir=start_dir)
    assert result.argv == [
        *handed_over(result, "gunicorn", fork_guard=True),
        "--config",
        str(start_dir / "gunicorn_conf.py"),
        "--preload",
        "main:app",
    ]
    # the config file gets the finished options instead of planning again
    [options_path] = [path for path in result.files if "/options-" in path]
    assert result.env == {"ASGI_START_OPTIONS": options_path}
    options = json.loads(result.files[options_path])
    assert options["workers"] == 2 and options["bind"] == ["0.0.0.0:80"]
    assert options["worker_class"] == "uvicorn_worker.UvicornWorker" and "logconfig_dict" in options
    assert result.worker_class == "uvicorn_worker.UvicornWorker"


def test_a_replaced_default_is_the_users_own(app_dir, tmp_path_factory):
    """tiangolo's users replaced the image's /gunicorn_conf.py; a file there that does not read start.py's
    options is laid over them like any other file of the user's."""
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "gunicorn_conf.py").write_text('bind = "0.0.0.0:8080"\n')
    result = plan(app_dir, {}, start_dir=start_dir)
    assert result.config_file == str(start_dir / "gunicorn_conf.py")
    assert result.argv[4:6] == ["--config", f"{result.runtime_dir}/layered_config.py"]  # see prepare_runtime
    options = json.loads(result.files[result.env["ASGI_START_OPTIONS"]])
    assert options["asgi_start_users_config"] == f"file:{start_dir / 'gunicorn_conf.py'}"
    assert result.bind == ["0.0.0.0:8080"] and result.worker_class == "uvicorn_worker.UvicornWorker"


def test_gunicorn_config_in_the_app_directory_wins(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    (app_dir / "app").mkdir()
    (app_dir / "app/gunicorn_conf.py").write_text("")
    assert plan(app_dir, {}, start_dir=start_dir).config_file == str(app_dir / "app/gunicorn_conf.py")
    (app_dir / "gunicorn_conf.py").write_text("")
    assert plan(app_dir, {}, start_dir=start_dir).config_file == str(app_dir / "gunicorn_conf.py")


def test_gunicorn_conf_named_explicitly(app_dir):
    (app_dir / "my conf.py").write_text("")
    assert plan(app_dir, {"GUNICORN_CONF": "my conf.py"}).config_file == str(app_dir / "my conf.py")
    assert plan(app_dir, {"GUNICORN_CONF": "python:main"}).config_file == "python:main"
    [problem] = plan_problems(app_dir, {"GUNICORN_CONF": "/nowhere/gunicorn_conf.py"})
    assert problem == "GUNICORN_CONF='/nowhere/gunicorn_conf.py': no such file /nowhere/gunicorn_conf.py"
    assert "not found" in plan_problems(app_dir, {"GUNICORN_CONF": "python:no_such_conf"})[0]


def test_gunicorn_alone_passes_every_setting_through_gunicorn_cmd_args(app_dir):
    env = {
        "BIND": "127.0.0.1:8000",
        "WEB_CONCURRENCY": "3",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "",
        "ERROR_LOG": "logs/error log.txt",
        "TIMEOUT": "30",
        "GRACEFUL_TIMEOUT": "7",
        "KEEP_ALIVE": "2",
        "MAX_REQUESTS": "100",
        "MAX_REQUESTS_JITTER": "10",
        "BACKLOG": "64",
        "FORWARDED_ALLOW_IPS": "*",
        "GUNICORN_CMD_ARGS": "--worker-connections 50",
    }
    (app_dir / "logs").mkdir()
    result = plan(app_dir, env)
    assert result.argv == [*handed_over(result, "gunicorn", fork_guard=True), "main:app"]
    assert result.config_file is None
    assert result.env["GUNICORN_CMD_ARGS"] == (
        "--bind 127.0.0.1:8000 --workers 3 --worker-class uvicorn_worker.UvicornWorker "
        "--access-logformat '%(h)s - \"%(r)s\" %(s)s' --error-logfile - --no-control-socket --backlog 64 "
        "--forwarded-allow-ips '*' --timeout 30 --graceful-timeout 7 --keep-alive 2 "
        "--max-requests 100 --max-requests-jitter 10 --log-level warning "
        f"--log-config-json {start.logging_file(start.parse_settings(env), facts_for(app_dir))[0]} "
        # the user's own arguments come last, so they win as with a config file
        "--worker-connections 50"
    )


def test_gunicorn_cmd_args_quoting_survives_shlex(app_dir):
    import shlex

    (app_dir / "it's here").mkdir()
    (app_dir / "it's here/c d.pem").write_text("")
    (app_dir / "k.pem").write_text("")
    env = {"CERTFILE": "it's here/c d.pem", "KEYFILE": "k.pem", "CIPHERS": "ECDHE+AESGCM:!aNULL $HOME"}
    args = shlex.split(plan(app_dir, env).env["GUNICORN_CMD_ARGS"])
    assert args[args.index("--certfile") + 1] == f"{app_dir}/it's here/c d.pem"
    assert args[args.index("--ciphers") + 1] == "ECDHE+AESGCM:!aNULL $HOME"


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        (ALL_INSTALLED, "uvicorn_worker.UvicornWorker"),
        (ALL_INSTALLED - {"uvicorn_worker"}, "uvicorn.workers.UvicornWorker"),
    ],
)
def test_gunicorn_worker_class_default(app_dir, installed, expected):
    assert plan(app_dir, {}, installed=installed).worker_class == expected


@pytest.mark.parametrize("worker_class", ["asgi", "gthread", "uvicorn_worker.UvicornH11Worker"])
def test_gunicorn_worker_class_given(app_dir, worker_class):
    assert plan(app_dir, {"WORKER_CLASS": worker_class}).worker_class == worker_class


@pytest.mark.parametrize(
    ("installed", "env", "fragment"),
    [
        (ALL_INSTALLED - {"gunicorn"}, {}, "pip install gunicorn"),
        (ALL_INSTALLED - {"uvicorn_worker", "uvicorn"}, {}, "pip install uvicorn-worker"),
        (ALL_INSTALLED - {"uvicorn"}, {"SERVER": "uvicorn"}, "pip install uvicorn"),
        (ALL_INSTALLED - {"uvicorn"}, {"WITH_RELOAD": "1"}, "pip install uvicorn"),
        (ALL_INSTALLED - {"hypercorn"}, {"SERVER": "hypercorn"}, "pip install hypercorn"),
        (ALL_INSTALLED - {"trio"}, {"SERVER": "hypercorn", "WORKER_CLASS": "trio"}, "pip install trio"),
        (ALL_INSTALLED - {"granian"}, {"SERVER": "granian"}, "SERVER=granian needs granian"),
        (ALL_INSTALLED - {"watchfiles"}, {"SERVER": "granian", "WITH_RELOAD": "1"}, "pip install 'granian[reload]'"),
        (ALL_INSTALLED - {"rloop"}, {"SERVER": "granian", "WORKER_CLASS": "rloop"}, "pip install rloop"),
        (ALL_INSTALLED, {"WORKER_CLASS": "nosuchpkg.Worker"}, "WORKER_CLASS='nosuchpkg.Worker'"),
        (ALL_INSTALLED, {"WORKER_CLASS": "Worker"}, "WORKER_CLASS='Worker' is not valid"),
    ],
)
def test_missing_packages_are_named(app_dir, installed, env, fragment):
    assert fragment in plan_problems(app_dir, env, installed=installed)[0]


def test_gunicorn_settings_for_the_config_file(app_dir):
    env = {"CERTFILE": "c.pem", "KEYFILE": "k.pem", "ACCESS_LOG": "", "ERROR_LOG": "", "WORKER_CLASS": "asgi"}
    settings = start.parse_settings({**env, "WEB_CONCURRENCY": "4"})
    options = start.server_config("gunicorn", settings, facts_for(app_dir), [])
    assert options["workers"] == 4 and options["worker_class"] == "asgi"
    assert options["accesslog"] is None  # disabled at the source, not an empty path
    assert options["errorlog"] == "-"  # where records go is the logging configuration's business
    assert options["logconfig_dict"]["handlers"]["error"] == {"class": "logging.NullHandler"}
    assert options["certfile"] == str(app_dir / "c.pem") and options["keyfile"] == str(app_dir / "k.pem")
    assert options["control_socket_disable"] is True
    # every option but the logging dictionary and the hooks (code) also has a flag, for the start without a config file
    flags = {key: flag for key, flag, _ in start.gunicorn_options(settings, facts_for(app_dir), 4, "asgi")}
    assert set(options) - {"logconfig_dict", "asgi_start_hooks"} <= {key for key, flag in flags.items() if flag}


# --- Uvicorn -------------------------------------------------------------------


def test_uvicorn_multi_worker_gets_a_prebound_nodelay_socket(app_dir):
    env = {"SERVER": "uvicorn", "HOST": "127.0.0.1", "PORT": "8001"}
    result = plan(app_dir, env, extra=["--loop", "asyncio"])
    assert result.prebind == "127.0.0.1:8001"
    assert result.argv == [
        *handed_over(result, "uvicorn"),
        *("main:app", "--fd", "3", "--workers", "2"),
        *("--log-config", start.logging_file(start.parse_settings(env), facts_for(app_dir))[0]),
        *("--forwarded-allow-ips", "127.0.0.1,::1"),  # the launcher's default, whatever Uvicorn's own
        *("--timeout-graceful-shutdown", "120", "--timeout-keep-alive", "5", "--loop", "asyncio"),
    ]


def test_uvicorn_single_worker_binds_itself(app_dir):
    result = plan(app_dir, {"SERVER": "uvicorn", "WEB_CONCURRENCY": "1", "HOST": "::1", "PORT": "8001"})
    assert result.prebind is None
    assert result.argv[4:10] == ["--host", "::1", "--port", "8001", "--workers", "1"]


def test_uvicorn_unix_socket_and_options(app_dir):
    env = {
        "SERVER": "uvicorn",
        "BIND": "unix:run/app.sock",
        "ACCESS_LOG": "",
        "MAX_REQUESTS": "5",
        "MAX_REQUESTS_JITTER": "2",
        "BACKLOG": "10",
        "FORWARDED_ALLOW_IPS": "10.0.0.1",
    }
    argv = plan(app_dir, env).argv
    assert argv[4:6] == ["--uds", str(app_dir / "run/app.sock")]
    assert "--no-access-log" in argv
    for flag, value in [
        ("--limit-max-requests", "5"),
        ("--limit-max-requests-jitter", "2"),
        ("--backlog", "10"),
        ("--forwarded-allow-ips", "10.0.0.1"),
    ]:
        assert argv[argv.index(flag) + 1] == value


def test_every_server_gets_one_logging_configuration_file(app_dir):
    import json

    documents = set()
    for server in start.SERVERS:
        env = {"SERVER": server, "ACCESS_LOG": "access.log", "ERROR_LOG": "", "LOG_FORMAT": "json"}
        result = plan(app_dir, env)
        [(path, content)] = result.files.items()
        assert path == start.logging_file(start.parse_settings(env), facts_for(app_dir))[0] and path.startswith(
            result.runtime_dir
        )
        documents.add(content)
    [content] = documents  # one configuration, whatever the server
    config = json.loads(content)
    assert config["handlers"]["access"]["filename"] == str(app_dir / "access.log")
    assert config["handlers"]["error"] == {"class": "logging.NullHandler"}
    assert config["formatters"]["asgi_start"] == {"()": "asgi_start.json_formatter"}


def test_reload_runs_uvicorn_with_one_process(app_dir):
    (app_dir / "src").mkdir()
    result = plan(app_dir, {"WITH_RELOAD": "true", "RELOAD_DIRS": "src,.", "PORT": "8002"})
    assert (result.server, result.requested_server, result.workers, result.reload) == ("uvicorn", "gunicorn", 1, True)
    argv = result.argv
    assert "--workers" not in argv and "--fd" not in argv
    assert argv[argv.index("--reload") :][:5] == [
        "--reload",
        "--reload-dir",
        str(app_dir / "src"),
        "--reload-dir",
        str(app_dir),
    ]
    assert "instead of gunicorn (WITH_RELOAD)" in result.summary()


# --- Hypercorn -----------------------------------------------------------------


def test_hypercorn_with_config_file(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "hypercorn_conf.py").write_text(DEFAULT_HYPERCORN_CONF)
    result = plan(app_dir, {"SERVER": "hypercorn"}, start_dir=start_dir)
    assert result.argv == [
        *handed_over(result, "hypercorn"),
        "--config",
        f"file:{start_dir}/hypercorn_conf.py",
        "asgi_start:proxied_app()",  # the app behind the launcher's proxy-headers wrapper
    ]
    assert (
        result.env["ASGI_START_APP"] == "main:app" and result.env["ASGI_START_FORWARDED_ALLOW_IPS"] == "127.0.0.1,::1"
    )
    assert result.worker_class == "asyncio"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("conf.toml", "{app}/conf.toml"),
        ("file:conf.py", "file:{app}/conf.py"),
        ("conf.py", "file:{app}/conf.py"),
        ("python:main", "python:main"),
    ],
)
def test_hypercorn_conf_forms(app_dir, given, expected):
    for name in ("conf.toml", "conf.py"):
        (app_dir / name).write_text("")
    result = plan(app_dir, {"SERVER": "hypercorn", "HYPERCORN_CONF": given})
    assert result.config_file == expected.format(app=app_dir)


def test_hypercorn_alone_with_tls_and_plain_http(app_dir):
    for name in ("c.pem", "k.pem"):
        (app_dir / name).write_text("")
    env = {
        "SERVER": "hypercorn",
        "USE_SSL": "true",
        "CERTFILE": "c.pem",
        "KEYFILE": "k.pem",
        "HOST": "127.0.0.1",
        "PORT": "8080",
        "SSL_PORT": "8443",
        "QUIC_BIND": "127.0.0.1:8443",
        "WORKER_CLASS": "uvloop",
        "ERROR_LOG": "",
    }
    result = plan(app_dir, env)
    assert result.bind == ["127.0.0.1:8443", "127.0.0.1:8080", "127.0.0.1:8443"]
    assert result.argv == [
        *handed_over(result, "hypercorn"),
        *("--bind", "127.0.0.1:8443", "--insecure-bind", "127.0.0.1:8080"),
        *("--workers", "2", "--worker-class", "uvloop"),
        *("--access-logfile", "-", "--access-logformat", start.HYPERCORN_ACCESS_FORMAT),
        *("--quic-bind", "127.0.0.1:8443"),
        *("--certfile", str(app_dir / "c.pem"), "--keyfile", str(app_dir / "k.pem")),
        *("--backlog", "100", "--graceful-timeout", "120", "--keep-alive", "5", "--log-level", "info"),
        *("--log-config", "json:" + start.logging_file(start.parse_settings(env), facts_for(app_dir))[0]),
        "asgi_start:proxied_app()",
    ]


def test_hypercorn_alone_refuses_jitter_its_cli_would_garble(app_dir):
    [problem] = plan_problems(app_dir, {"SERVER": "hypercorn", "MAX_REQUESTS": "9", "MAX_REQUESTS_JITTER": "3"})
    assert problem.startswith("MAX_REQUESTS_JITTER needs a Hypercorn config file")


def test_hypercorn_reload(app_dir):
    result = plan(app_dir, {"SERVER": "hypercorn", "WITH_RELOAD": "yes"})
    assert result.server == "hypercorn" and result.workers == 1
    assert "--reload" in result.argv and result.argv[result.argv.index("--workers") + 1] == "1"


# --- pre-start ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({"prestart.py": 0o644}, {}, [sys.executable, "{app}/prestart.py"]),
        ({"prestart.sh": 0o644}, {}, ["sh", "{app}/prestart.sh"]),
        ({"prestart.py": 0o644, "prestart.sh": 0o644}, {}, [sys.executable, "{app}/prestart.py"]),
        ({}, {}, None),
        ({"hooks/run me": 0o755}, {"PRE_START_PATH": "hooks/run me"}, ["{app}/hooks/run me"]),
    ],
)
def test_prestart_detection(app_dir, files, env, expected):
    for name, mode in files.items():
        (app_dir / name).parent.mkdir(exist_ok=True)
        (app_dir / name).write_text("")
        (app_dir / name).chmod(mode)
    command = plan(app_dir, env).prestart
    assert command == (expected and [part.format(app=app_dir) for part in expected])


def test_prestart_given_must_exist_and_be_runnable(app_dir):
    [problem] = plan_problems(app_dir, {"PRE_START_PATH": "missing.sh"})
    assert problem == f"PRE_START_PATH='missing.sh': no such file {app_dir}/missing.sh"
    (app_dir / "hook").write_text("")
    assert "neither .py, .sh nor executable" in plan_problems(app_dir, {"PRE_START_PATH": "hook"})[0]


# --- the dry-run document -------------------------------------------------------


def test_dry_run_document_has_the_promised_keys(app_dir):
    document = plan(app_dir, {}).as_dict()
    for key in (
        "server",
        "argv",
        "app_module",
        "workers",
        "bind",
        "config_file",
        "prestart",
        "reload",
        "log_level",
        "worker_class",
    ):
        assert key in document


def test_gunicorn_before_25_1_gets_no_control_socket_flag(app_dir):
    # Gunicorn 23 (the newest for Python 3.9) rejects --no-control-socket on its command line
    old = plan(app_dir, {}, gunicorn=(23, 0, 0)).env["GUNICORN_CMD_ARGS"]
    assert "--no-control-socket" not in old and "--bind" in old
    assert "--no-control-socket" in plan(app_dir, {}, gunicorn=(25, 1, 0)).env["GUNICORN_CMD_ARGS"]


def test_installed_version_reads_metadata_without_importing():
    import sys
    from importlib import metadata

    expected = tuple(int(part) for part in metadata.version("gunicorn").split(".")[:3])
    assert start.installed_version("gunicorn") == expected and "gunicorn" not in sys.modules
    assert start.installed_version("no-such-distribution-here") == (0,)


# --- PROMETHEUS_MULTIPROC_DIR -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "is_metric"),
    [
        ("counter_17.db", True),
        ("gauge_livesum_17.db", True),
        ("gauge_all_9.db", True),
        ("histogram_3.db", True),
        ("summary_44.db", True),
        ("counter_x.db", False),
        ("counter_17.db.bak", False),
        ("notes.txt", False),
        ("mydata_17.db", False),
        ("17.db", False),
    ],
)
def test_only_prometheus_client_files_are_removed(tmp_path, name, is_metric):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / name).write_text("")
    start.prepare_metrics_dir(str(directory))
    assert (directory / name).exists() is not is_metric
    assert start.is_metric_file(name) is is_metric


def test_gunicorn_marks_dead_workers_through_its_config_file(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    result = plan(app_dir, {"PROMETHEUS_MULTIPROC_DIR": "metrics"}, start_dir=start_dir)
    options = json.loads(result.files[result.env["ASGI_START_OPTIONS"]])
    assert options["asgi_start_hooks"] == {"child_exit": "gunicorn_child_exit"}
    assert result.metrics_dir == str(app_dir / "metrics") and result.warnings == []
    # without a config file, no hook can be set: said, not silently dropped
    [warning] = plan(app_dir, {"PROMETHEUS_MULTIPROC_DIR": "metrics"}).warnings
    assert "child_exit" in warning and "PROMETHEUS_MULTIPROC_DIR" in warning
    plain = plan(app_dir, {}, start_dir=start_dir)
    # booting workers are guarded by the hand-over's fork guard, not by a hook a user's post_fork could replace
    assert json.loads(plain.files[plain.env["ASGI_START_OPTIONS"]])["asgi_start_hooks"] == {}
    assert plain.argv[2] == "--fork-guard"


# --- Granian -------------------------------------------------------------------


def test_granian_argv(app_dir):
    env = {"SERVER": "granian", "HOST": "127.0.0.1", "PORT": "8003"}
    result = plan(app_dir, env, extra=["--http", "1"])
    log_file = start.logging_file(start.parse_settings(env), facts_for(app_dir))[0]
    assert result.argv == [
        *handed_over(result, "granian", fork_guard=True),
        *("--interface", "asgi", "--host", "127.0.0.1", "--port", "8003"),
        *("--workers", "2", "--respawn-failed-workers", "--log-config", log_file),
        *("--access-log", "--access-log-fmt", start.GRANIAN_ACCESS_FORMAT),
        *("--workers-kill-timeout", "120", "--http1-header-read-timeout", "5000", "--log-level", "info"),
        *("--factory", "asgi_start:granian_app", "--http", "1"),
    ]
    assert result.env == {
        start.WRAPPED_APP_VARIABLE: "main:app",
        start.TRUSTED_PROXIES_VARIABLE: "127.0.0.1,::1",
    }
    assert (result.server, result.worker_class, result.config_file) == ("granian", "auto", None)


def test_granian_unix_socket_tls_and_converted_units(app_dir):
    (app_dir / "c.pem").write_text("")
    (app_dir / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    env = {
        "SERVER": "granian",
        "BIND": "unix:run/app.sock",
        "CERTFILE": "c.pem",
        "KEYFILE": "k.pem",
        "ACCESS_LOG": "",
        "GRACEFUL_TIMEOUT": "0",
        "KEEP_ALIVE": "0",
        "BACKLOG": "128",
        "ROOT_PATH": "/api/",
        "WORKER_CLASS": "uvloop",
        "LOG_LEVEL": "WARNING",
        "FORWARDED_ALLOW_IPS": "10.0.0.0/8",
    }
    result = plan(app_dir, env)
    argv = result.argv
    assert argv[6:8] == ["--uds", str(app_dir / "run/app.sock")] and "--host" not in argv
    assert "--no-access-log" in argv and "--access-log" not in argv and "--access-log-fmt" not in argv
    assert "--no-http1-keep-alive" in argv and "--http1-header-read-timeout" not in argv
    for flag, value in [
        ("--ssl-certificate", str(app_dir / "c.pem")),
        ("--ssl-keyfile", str(app_dir / "k.pem")),
        ("--ssl-protocol-min", "tls1.2"),  # Granian's own minimum is TLS 1.3
        ("--workers-kill-timeout", "1"),  # no grace is Granian's least, 1 s
        ("--backlog", "128"),
        ("--url-path-prefix", "/api"),
        ("--loop", "uvloop"),
        ("--log-level", "warning"),
    ]:
        assert argv[argv.index(flag) + 1] == value, flag
    assert result.env[start.TRUSTED_PROXIES_VARIABLE] == "10.0.0.0/8"


def test_granian_reload(app_dir):
    (app_dir / "src").mkdir()
    env = {"SERVER": "granian", "WITH_RELOAD": "1", "RELOAD_DIRS": "src", "RELOAD_EXCLUDES": "*.log,node_modules"}
    result = plan(app_dir, {**env, "RELOAD_DELAY": "0.25"})
    argv = result.argv
    assert (result.server, result.workers) == ("granian", 1)
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--reload") :][:3] == ["--reload", "--reload-paths", str(app_dir / "src")]
    assert argv[argv.index("--reload-tick") + 1] == "250"
    patterns = [argv[index + 1] for index, arg in enumerate(argv) if arg == "--reload-ignore-patterns"]
    assert [bool(__import__("re").search(pattern, "x.log")) for pattern in patterns] == [True, False]
    assert [bool(__import__("re").search(pattern, "x.log.py")) for pattern in patterns] == [False, False]
    assert argv[argv.index("--reload-ignore-dirs") + 1] == "node_modules"  # a plain name may be a directory
    assert "--reload-paths" in plan(app_dir, {"SERVER": "granian", "WITH_RELOAD": "1"}).argv


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"MAX_REQUESTS": "100"},
            "MAX_REQUESTS is not supported by SERVER=granian (it works with SERVER=gunicorn, uvicorn and hypercorn)",
        ),
        ({"CIPHERS": "ECDHE+AESGCM"}, "CIPHERS is not supported by SERVER=granian"),
        ({"TIMEOUT": "30"}, "TIMEOUT is not supported by SERVER=granian"),
        ({"WITH_RELOAD": "1", "RELOAD_INCLUDES": "*.py"}, "RELOAD_INCLUDES is not supported by SERVER=granian"),
        ({"QUIC_BIND": "127.0.0.1:8443"}, "QUIC_BIND works only with SERVER=hypercorn"),
        ({"BIND": "127.0.0.1:1,127.0.0.1:2"}, "SERVER=granian binds one address only"),
        ({"BIND": "fd://3"}, "SERVER=granian cannot take a listening socket (fd://)"),
        ({"WORKER_CLASS": "trio"}, "expected one of its event loops: auto asyncio uvloop rloop"),
        ({"BACKLOG": "100"}, "BACKLOG=100 is not valid for SERVER=granian; expected 128 to 65535"),
        ({"GRACEFUL_TIMEOUT": "1801"}, "GRACEFUL_TIMEOUT=1801 is not valid for SERVER=granian; expected 0 to 1800"),
        ({"KEEP_ALIVE": "61"}, "KEEP_ALIVE=61 is not valid for SERVER=granian; expected 0 to 60 seconds"),
        ({"WITH_RELOAD": "1", "RELOAD_DELAY": "0.01"}, "RELOAD_DELAY=0.01 is not valid for SERVER=granian"),
        ({"WITH_RELOAD": "1", "RELOAD_EXCLUDES": "tests/*"}, "without / under SERVER=granian"),
        ({"USE_SSL": "1", "USE_TCP": "1", "CERTFILE": "main.py", "KEYFILE": "main.py"}, "USE_TCP=true"),
    ],
)
def test_granian_refuses_what_it_cannot_honour(app_dir, env, fragment):
    problems = plan_problems(app_dir, {"SERVER": "granian", **env})
    assert len(problems) == 1 and fragment in problems[0], problems


def test_granian_reports_every_problem_at_once(app_dir):
    env = {"SERVER": "granian", "MAX_REQUESTS": "5", "CIPHERS": "x", "KEEP_ALIVE": "99", "BIND": "fd://3"}
    problems = plan_problems(app_dir, env)
    assert [problem.split("=")[0].split(" ")[0] for problem in problems] == [
        "CIPHERS",
        "KEEP_ALIVE",
        "MAX_REQUESTS",
        "BIND",
    ]


@pytest.mark.parametrize(
    "header", ["-----BEGIN ENCRYPTED PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED"]
)
def test_granian_refuses_an_encrypted_key(app_dir, header):
    (app_dir / "c.pem").write_text("")
    (app_dir / "k.pem").write_text(header + "\n")
    [problem] = plan_problems(app_dir, {"SERVER": "granian", "CERTFILE": "c.pem", "KEYFILE": "k.pem"})
    assert problem.startswith("KEYFILE='k.pem' is encrypted, which SERVER=granian cannot read")
    other = plan(app_dir, {"SERVER": "uvicorn", "CERTFILE": "c.pem", "KEYFILE": "k.pem"})  # the others can
    assert other.server == "uvicorn"


def test_the_wrapper_gives_granian_ports_as_numbers():
    import asyncio

    seen = []

    async def app(scope, receive, send):
        seen.append((scope["client"], scope["server"]))

    wrapper = start.ProxyHeaders(app, "127.0.0.1", numeric_ports=True)
    headers = [(b"x-forwarded-for", b"203.0.113.7")]
    for client in [("10.0.0.2", "48716"), ("127.0.0.1", "5000")]:
        scope = {"type": "http", "client": client, "server": ("0.0.0.0", "8000"), "headers": headers, "path": "/"}
        asyncio.run(wrapper(scope, None, None))
    assert seen == [(("10.0.0.2", 48716), ("0.0.0.0", 8000)), (("203.0.113.7", 0), ("0.0.0.0", 8000))]


def test_granian_before_2_6_is_refused(app_dir):
    [problem] = plan_problems(app_dir, {"SERVER": "granian"}, granian=(2, 5, 7))
    assert problem.startswith("SERVER=granian needs granian 2.6 or newer")
    assert plan(app_dir, {"SERVER": "granian"}, granian=(2, 6, 0)).server == "granian"


def test_variables_of_the_old_images_that_are_not_read_are_said(app_dir):
    result = plan(app_dir, {"UVICORN_CONFIG_OPTIONS": '{"headers": []}', "LOG_COLORS": "true"})
    assert result.warnings == [
        "UVICORN_CONFIG_OPTIONS is not read: inboard's; put Uvicorn's flags in SERVER_ARGS (SERVER=uvicorn)",
        "LOG_COLORS is not read: inboard's; log lines carry no colour codes (LOG_FORMAT=text or json)",
    ]
    assert plan(app_dir, {"LOG_COLORS": " "}).warnings == []


# --- PRELOAD_APP -----------------------------------------------------------------


def test_preload_app_reaches_gunicorn_with_the_freezing_hook(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image-root")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    result = plan(app_dir, {"PRELOAD_APP": "true"}, start_dir=start_dir)
    options = json.loads(result.files[result.env["ASGI_START_OPTIONS"]])
    assert options["preload_app"] is True
    assert options["asgi_start_hooks"] == {"when_ready": "gunicorn_when_ready"}
    assert result.warnings == []
    unset = plan(app_dir, {}, start_dir=start_dir)
    assert "preload_app" not in json.loads(unset.files[unset.env["ASGI_START_OPTIONS"]])
    # without a config file: --preload still, and the hook that cannot be set is said
    alone = plan(app_dir, {"PRELOAD_APP": "true"})
    assert "--preload" in alone.env["GUNICORN_CMD_ARGS"].split()
    [warning] = alone.warnings
    assert "when_ready" in warning and "gc.freeze" in warning


class _Config:
    def __init__(self, preload_app: bool) -> None:
        self.preload_app = preload_app


class _Arbiter:
    def __init__(self, preload_app: bool) -> None:
        self.cfg = _Config(preload_app)


def test_when_ready_freezes_only_a_preloaded_app():
    import gc

    if not hasattr(gc, "get_freeze_count"):
        pytest.skip("gc.get_freeze_count is new in Python 3.7")
    try:
        gc.unfreeze()
        start.gunicorn_when_ready(_Arbiter(preload_app=False))
        assert gc.get_freeze_count() == 0
        start.gunicorn_when_ready(_Arbiter(preload_app=True))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_users_when_ready_runs_after_ours():
    calls: list = []
    both = start._both_hooks(start.gunicorn_when_ready, lambda server: calls.append(("theirs", server)))
    assert both.__code__.co_argcount == 1  # Gunicorn refuses a hook of another arity
    both(_Arbiter(preload_app=False))
    assert len(calls) == 1 and calls[0][0] == "theirs"
    two = start._both_hooks(lambda s, w: calls.append(("ours", w)), lambda s, w: calls.append(("theirs", w)))
    assert two.__code__.co_argcount == 2
    two("arbiter", 7)
    assert calls[-2:] == [("ours", 7), ("theirs", 7)]


# --- net.ipv4.tcp_migrate_req under Granian ---------------------------------------


def granian_warnings(app_dir: Path, env: dict[str, str], migrate_req, granian=(2, 8, 7)) -> list[str]:
    facts = facts_for(app_dir, granian=granian)
    facts.migrate_req = migrate_req
    result = start.plan_launch(start.parse_settings({"SERVER": "granian", **env}), facts)
    return [warning for warning in result.warnings if "tcp_migrate_req" in warning]


def test_granian_warns_when_tcp_migrate_req_is_off(app_dir):
    [warning] = granian_warnings(app_dir, {}, migrate_req=False)
    assert "SERVER=granian with 2 workers and net.ipv4.tcp_migrate_req=0" in warning
    assert "sysctl -w net.ipv4.tcp_migrate_req=1" in warning and "securityContext.sysctls" in warning
    assert "\n" not in warning
    assert granian_warnings(app_dir, {}, migrate_req=True) == []
    assert granian_warnings(app_dir, {}, migrate_req=None) == []  # unknown: no warning
    assert granian_warnings(app_dir, {"WEB_CONCURRENCY": "1"}, migrate_req=False) == []  # one worker
    assert granian_warnings(app_dir, {}, migrate_req=False, granian=(2, 7, 0)) == []  # one shared socket


# --- HTTP2 ---------------------------------------------------------------------


def gunicorn_options_of(result: start.Plan) -> dict:
    return json.loads(result.files[result.env[start.OPTIONS_VARIABLE]])


@pytest.mark.parametrize("value", ["on", "ON", " off "])
def test_http2_takes_on_and_off(value):
    assert start.parse_settings({"HTTP2": value}).http2 == value.strip().lower()


@pytest.mark.parametrize("value", ["true", "1", "h2c", "auto", "2"])
def test_http2_bad_values_are_one_line_each(app_dir, value):
    problems = plan_problems(app_dir, {"HTTP2": value})
    assert problems == [f"HTTP2={value!r} is not valid; expected on or off"]


def test_http2_on_under_gunicorn_gives_the_launchers_uvicorn_worker_zttp(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    result = plan(app_dir, {"HTTP2": "on"}, start_dir=start_dir)
    assert result.worker_class == "asgi_start.UvicornWorker"
    assert result.env[start.HTTP2_VARIABLE] == "on"  # the worker class reads it: http=zttp, http2=True
    options = gunicorn_options_of(result)
    assert options["worker_class"] == "asgi_start.UvicornWorker" and "http_protocols" not in options
    off = plan(app_dir, {"HTTP2": "off"}, start_dir=start_dir)
    assert off.worker_class == "uvicorn_worker.UvicornWorker" and start.HTTP2_VARIABLE not in off.env


@pytest.mark.parametrize("worker_class", ["asgi", "gthread", "gunicorn.workers.gthread.ThreadWorker"])
def test_http2_on_with_gunicorns_own_workers_limits_h2c_to_trusted_peers(app_dir, tmp_path_factory, worker_class):
    start_dir = tmp_path_factory.mktemp("image")
    (start_dir / "gunicorn_conf.py").write_text(DEFAULT_GUNICORN_CONF)
    env = {"HTTP2": "on", "WORKER_CLASS": worker_class, "FORWARDED_ALLOW_IPS": "10.0.0.1"}
    options = gunicorn_options_of(plan(app_dir, env, start_dir=start_dir))
    assert (options["http_protocols"], options["http2_cleartext"]) == ("h2,h1", "both")
    assert options["forwarded_allow_ips"] == "10.0.0.1"  # Gunicorn takes h2c from these peers only
    alone = plan(app_dir, env)  # no config file: the same on Gunicorn's command line
    assert "--http-protocols h2,h1 --http2-cleartext both" in alone.env["GUNICORN_CMD_ARGS"]


@pytest.mark.parametrize(
    ("env", "facts", "fragment"),
    [
        ({"WORKER_CLASS": "sync"}, {}, "'sync' speaks HTTP/1.1 only"),
        ({"WORKER_CLASS": "asgi"}, {"gunicorn": (26, 1, 0)}, "needs gunicorn 26.2 or newer (installed: 26.1.0)"),
        ({"WORKER_CLASS": "asgi"}, {"installed": ALL_INSTALLED - {"h2"}}, "pip install 'gunicorn[http2]'"),
        ({}, {"uvicorn": (0, 52, 1)}, "needs uvicorn 0.53 or newer (installed: 0.52.1)"),
        ({}, {"installed": ALL_INSTALLED - {"zttp"}}, "needs zttp, which is not installed"),
        ({"SERVER": "uvicorn"}, {"uvicorn": (0, 52, 1)}, "under SERVER=uvicorn needs uvicorn 0.53 or newer"),
        ({"SERVER": "uvicorn"}, {"installed": ALL_INSTALLED - {"zttp"}}, "pip install zttp"),
    ],
)
def test_http2_on_where_the_server_cannot_is_one_line_naming_what_is_needed(app_dir, env, facts, fragment):
    problems = plan_problems(app_dir, {"HTTP2": "on", **env}, **facts)
    assert len(problems) == 1 and fragment in problems[0], problems
    assert problems[0].startswith("HTTP2=on ")


def test_http2_under_uvicorn(app_dir):
    on = plan(app_dir, {"SERVER": "uvicorn", "HTTP2": "on"})
    assert on.argv[on.argv.index("--http") : on.argv.index("--http") + 3] == ["--http", "zttp", "--http2"]
    assert "--http" not in plan(app_dir, {"SERVER": "uvicorn", "HTTP2": "off"}).argv
    assert "--http" not in plan(app_dir, {"SERVER": "uvicorn"}).argv  # Uvicorn's own: HTTP/1.1
    reload = plan(app_dir, {"HTTP2": "on", "WITH_RELOAD": "true"})  # Gunicorn asked for, Uvicorn's reloader runs
    assert reload.server == "uvicorn" and "--http2" in reload.argv


def test_http2_under_hypercorn_and_granian(app_dir, tmp_path_factory):
    start_dir = tmp_path_factory.mktemp("image")
    (start_dir / "hypercorn_conf.py").write_text(DEFAULT_HYPERCORN_CONF)
    default = plan(app_dir, {"SERVER": "hypercorn"}, start_dir=start_dir)
    assert "alpn_protocols" not in gunicorn_options_of(default) and start.HTTP2_VARIABLE not in default.env
    off = plan(app_dir, {"SERVER": "hypercorn", "HTTP2": "off"}, start_dir=start_dir)
    assert gunicorn_options_of(off)["alpn_protocols"] == ["http/1.1"]
    assert off.env[start.HTTP2_VARIABLE] == "off"  # the wrapper turns Hypercorn's h2c off in each worker
    assert "--http" not in plan(app_dir, {"SERVER": "granian"}).argv  # Granian's own: auto
    for value, flag in (("on", "auto"), ("off", "1")):
        argv = plan(app_dir, {"SERVER": "granian", "HTTP2": value}).argv
        assert argv[argv.index("--http") + 1] == flag


def test_ipv6_loopback_is_trusted_by_default_under_every_server(app_dir):
    for server in start.SERVERS:
        assert start.parse_settings({"SERVER": server}).forwarded_allow_ips == "127.0.0.1,::1"
    gunicorn = plan(app_dir, {})
    assert "--forwarded-allow-ips 127.0.0.1,::1" in gunicorn.env["GUNICORN_CMD_ARGS"]
    dual = start.parse_settings({"HOST": "::"}).forwarded_allow_ips
    assert dual.split(",") == ["127.0.0.1", "::1", "::ffff:127.0.0.1"]


# --- WORKER_MAX_MEMORY and WORKER_LIFETIME: where they go ------------------------


def test_recycling_reaches_the_worker_keeper_or_granians_flags(app_dir):
    env = {"WORKER_MAX_MEMORY": "300M", "WORKER_LIFETIME": "3600"}
    for server in ("gunicorn", "uvicorn", "hypercorn"):
        planned = plan(app_dir, {**env, "SERVER": server})
        assert json.loads(planned.env[start.RECYCLE_VARIABLE]) == {"lifetime": 3600, "max_memory": 300 << 20}
    planned = plan(app_dir, {**env, "SERVER": "granian"})
    assert start.RECYCLE_VARIABLE not in planned.env
    flags = " ".join(planned.argv)
    assert "--workers-max-rss 300" in flags and "--workers-lifetime 3600" in flags
    assert "--rss-samples 3 --rss-sample-interval 10" in flags


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WORKER_LIFETIME": "59"}, "WORKER_LIFETIME='59' is not valid; expected a whole number from 60 to"),
        ({"WORKER_MAX_MEMORY": "lots"}, "WORKER_MAX_MEMORY='lots' is not valid; expected a size such as 256M"),
        ({"WORKER_LIFETIME": "600", "WITH_RELOAD": "true"}, "WORKER_LIFETIME does not work with WITH_RELOAD=true"),
        (
            {"WORKER_MAX_MEMORY": "1G", "SERVER": "uvicorn", "WEB_CONCURRENCY": "1"},
            "WORKER_MAX_MEMORY under SERVER=uvicorn needs 2 workers or more",
        ),
    ],
)
def test_bad_recycling_settings_are_one_line_each(app_dir, env, problem):
    problems = plan_problems(app_dir, env)
    assert len(problems) == 1 and problem in problems[0], problems
