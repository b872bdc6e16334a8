"""The one logging configuration: its shape, the JSON formatter, the path filter, LOGGING_CONF."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import start


@pytest.fixture(autouse=True)
def runtime_module(monkeypatch):
    # In the servers `asgi_start` is start.py, found through the runtime directory, and
    # `asgi_start_access` its section written out
    monkeypatch.setitem(sys.modules, "asgi_start", start)
    access = types.ModuleType("asgi_start_access")
    exec(compile(start.access_source(), "asgi_start_access.py", "exec"), access.__dict__)  # noqa: S102 -- our own
    monkeypatch.setitem(sys.modules, "asgi_start_access", access)
    yield
    access.flush_all()


def facts(tmp_path: Path) -> start.Facts:
    return start.Facts(str(tmp_path), str(tmp_path), start.CpuCount(2, "test"), lambda _: True, [str(tmp_path)], False)


def config_for(tmp_path: Path, **env: str) -> dict:
    return start.logging_dict(start.parse_settings(env), facts(tmp_path))


def record(name: str, message: str, args, level=logging.INFO, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


UVICORN_ACCESS = ("uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", "/items?id=3", "1.1", 200))
GUNICORN_ATOMS = {"h": "127.0.0.1", "m": "GET", "U": "/items", "q": "id=3", "H": "HTTP/1.1", "s": 200, "a": "curl/8",
                  "D": 1534, "r": "GET /items?id=3 HTTP/1.1"}  # fmt: skip
HYPERCORN_ATOMS = {"h": "127.0.0.1:5000", "m": "GET", "U": "/items", "q": "id=3", "H": "1.1", "s": "200", "a": "curl/8",
                   "D": 2500, "r": "GET /items 1.1"}  # fmt: skip
# What Granian 2.8.7 puts in an access record's args (granian.log.log_request_builder).
GRANIAN_ARGS = {"addr": "127.0.0.1", "time": "2026-11-21 08:23:58 +0000", "dt_ms": 4.3745, "status": 200,
                "path": "/items", "query_string": "id=3", "method": "GET", "scheme": "http", "protocol": "HTTP/1.1"}  # fmt: skip


def test_text_configuration(tmp_path):
    config = config_for(tmp_path)
    assert config["formatters"]["asgi_start"] == {"()": "asgi_start.text_formatter"}
    assert config["filters"] == {"request_line": {"()": "asgi_start.granian_request_line_filter"}}
    assert config["root"] == {"level": "INFO", "handlers": ["error"]}  # the app's own loggers
    for name in start.ACCESS_LOGGERS:
        granian = {"filters": ["request_line"]} if name == "granian.access" else {}
        assert config["loggers"][name] == {"level": "INFO", "handlers": ["access"], "propagate": False, **granian}
    for name in (profile.error_logger for profile in start.PROFILES.values()):
        assert config["loggers"][name]["handlers"] == ["error"]


def test_access_log_disabled_means_no_handler_and_no_propagation(tmp_path):
    config = config_for(tmp_path, ACCESS_LOG="", LOG_LEVEL="debug")
    assert "access" not in config["handlers"]
    for name in start.ACCESS_LOGGERS:
        assert config["loggers"][name] == {"level": "INFO", "handlers": [], "propagate": False}
    logging.config.dictConfig(config)
    assert not logging.getLogger("uvicorn.access").hasHandlers()  # what Uvicorn checks before building a record
    assert logging.getLogger("some.app.module").getEffectiveLevel() == logging.DEBUG


def test_log_filters_attach_to_the_access_handler(tmp_path):
    config = config_for(tmp_path, LOG_FILTERS="/health,/metrics/")
    assert config["handlers"]["access"]["filters"] == ["paths"]
    assert config["filters"]["paths"] == {"()": "asgi_start.access_path_filter", "paths": ["/health", "/metrics/"]}


@pytest.mark.parametrize(
    ("path", "dropped"),
    [
        ("/health", True),
        ("/health/live", True),
        ("/health/", True),
        ("/healthy", False),
        ("/", False),
        ("/metrics", True),
        ("/metrics/x", True),
        ("/api/health", False),
    ],
)
def test_path_filter_matches_exactly_or_as_a_prefix_ending_at_a_slash(path, dropped):
    keep = start.access_path_filter(["/health", "/metrics/"]).filter
    uvicorn = record("uvicorn.access", "%s %s %s %s %d", ("c", "GET", path + "?x=1", "1.1", 200))
    gunicorn = record("gunicorn.access", "%(r)s", {**GUNICORN_ATOMS, "U": path})
    granian = record("granian.access", start.GRANIAN_ACCESS_FORMAT, {**GRANIAN_ARGS, "path": path})
    assert keep(uvicorn) is (not dropped) and keep(gunicorn) is (not dropped) and keep(granian) is (not dropped)
    assert keep(record("uvicorn.error", "Started %s", ("x",))) is True  # only access records are filtered


@pytest.mark.parametrize(
    ("name", "message", "args", "expected"),
    [
        (
            *UVICORN_ACCESS,
            {
                "client": "127.0.0.1:5000",
                "method": "GET",
                "path": "/items",
                "query": "id=3",
                "status": 200,
                "protocol": "HTTP/1.1",
                "duration_ms": None,
                "user_agent": None,
            },
        ),
        (
            "gunicorn.access",
            "%(r)s %(s)s",
            GUNICORN_ATOMS,
            {
                "client": "127.0.0.1",
                "method": "GET",
                "path": "/items",
                "query": "id=3",
                "status": 200,
                "protocol": "HTTP/1.1",
                "duration_ms": 1.534,
                "user_agent": "curl/8",
            },
        ),
        (
            "hypercorn.access",
            "%(r)s %(s)s",
            HYPERCORN_ATOMS,
            {
                "client": "127.0.0.1:5000",
                "method": "GET",
                "path": "/items",
                "query": "id=3",
                "status": 200,
                "protocol": "HTTP/1.1",
                "duration_ms": 2.5,
                "user_agent": "curl/8",
            },
        ),
        (
            "granian.access",
            start.GRANIAN_ACCESS_FORMAT,
            GRANIAN_ARGS,
            {
                "client": "127.0.0.1",
                "method": "GET",
                "path": "/items",
                "query": "id=3",
                "status": 200,
                "protocol": "HTTP/1.1",
                "duration_ms": 4.375,  # Granian's records carry the duration
                "user_agent": None,
            },
        ),
    ],
)
def test_json_access_records_have_the_same_fields_whatever_the_server(name, message, args, expected):
    line = start.json_formatter().format(record(name, message, args))
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "pid", "message", *expected}
    assert {key: entry[key] for key in expected} == expected
    assert entry["logger"] == name and entry["level"] == "info" and entry["time"].endswith("Z")


@pytest.mark.parametrize(
    ("query", "line"), [("id=3", '"GET /items?id=3 HTTP/1.1" 200'), ("", '"GET /items HTTP/1.1" 200')]
)
def test_granian_access_lines_read_like_the_other_servers(tmp_path, query, line):
    config = config_for(tmp_path)
    stream = io.StringIO()
    config["handlers"]["access"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.config.dictConfig(config)  # as Granian does in each forked worker: the filter is then there twice
    logging.getLogger("granian.access").info(start.GRANIAN_ACCESS_FORMAT, {**GRANIAN_ARGS, "query_string": query})
    sys.modules["asgi_start_access"].flush_all()
    [text] = stream.getvalue().splitlines()
    assert text.endswith(f" INFO granian.access [{os.getpid()}] 127.0.0.1 - {line}")


def test_granian_tracebacks_inside_messages_become_the_exception_field():
    message = "Application callable raised an exception\nTraceback (most recent call last):\n  File x\nValueError: no"
    entry = json.loads(start.json_formatter().format(record("_granian.utils", message, None, logging.ERROR)))
    assert entry["message"] == "Application callable raised an exception"
    assert entry["exception"] == "Traceback (most recent call last):\n  File x\nValueError: no"
    other = json.loads(start.json_formatter().format(record("app", message, None, logging.ERROR)))
    assert other["message"] == message and "exception" not in other  # only Granian's records are read so


def test_json_records_carry_exceptions_on_one_line():
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        line = start.json_formatter().format(record("app", "failed: %s", ("x",), logging.ERROR, sys.exc_info()))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed: x" and entry["level"] == "error"
    assert entry["exception"].startswith("Traceback") and "ValueError: broken" in entry["exception"]


def test_the_configuration_applies_to_the_app_and_the_access_log(tmp_path):
    config = config_for(tmp_path, LOG_FORMAT="json", LOG_FILTERS="/health")
    stdout, stderr = io.StringIO(), io.StringIO()
    config["handlers"]["access"]["stream"] = stdout
    config["handlers"]["error"]["stream"] = stderr
    logging.config.dictConfig(config)
    logging.getLogger("myapp.views").info("hello %s", "world")
    logging.getLogger("uvicorn.access").info(*UVICORN_ACCESS[1:2], *UVICORN_ACCESS[2])
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "c", "GET", "/health", "1.1", 200)
    [app_line] = stderr.getvalue().splitlines()
    assert stdout.getvalue() == ""  # the access log is written in batches
    sys.modules["asgi_start_access"].flush_all()
    [access_line] = stdout.getvalue().splitlines()  # /health was dropped
    assert json.loads(app_line)["message"] == "hello world" and json.loads(app_line)["logger"] == "myapp.views"
    assert json.loads(access_line)["path"] == "/items"


def test_launcher_lines_follow_the_format():
    entry = json.loads(start.launcher_line("json", "info", "gunicorn | 2 workers"))
    assert entry["logger"] == "asgi-start" and entry["message"] == "gunicorn | 2 workers"
    text = start.launcher_line("text", "info", "gunicorn | 2 workers")
    assert text.split(" ", 1)[1].startswith("INFO asgi-start [") and text.endswith("] gunicorn | 2 workers")


# --- LOGGING_CONF ------------------------------------------------------------------------------

VALID = {"version": 1, "handlers": {"h": {"class": "logging.StreamHandler"}}, "root": {"handlers": ["h"]}}


def load(tmp_path: Path, value: str, problems: list[str] | None = None):
    settings = start.parse_settings({"LOGGING_CONF": value})
    found: list[str] = [] if problems is None else problems
    config = start.load_logging_conf(settings, facts(tmp_path), found)
    assert problems is not None or not found, found
    return config


def problem(tmp_path: Path, value: str) -> str:
    found: list[str] = []
    assert load(tmp_path, value, found) is None
    [line] = found
    return line


def test_logging_conf_json_file(tmp_path):
    (tmp_path / "log.json").write_text(json.dumps(VALID))
    assert load(tmp_path, "log.json") == VALID


def test_logging_conf_python_file_and_module(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/logs.py").write_text(f"LOGGING_CONFIG = {VALID!r}\n")
    assert load(tmp_path, "conf/logs.py") == VALID
    assert load(tmp_path, "conf.logs") == VALID


@pytest.mark.parametrize(
    ("files", "value", "fragment"),
    [
        ({}, "missing.json", "no such file"),
        ({"bad.json": "{not json"}, "bad.json", "cannot load"),
        ({"list.json": "[1, 2]"}, "list.json", "dictConfig dictionary with version 1"),
        ({"v2.json": '{"version": 2}'}, "v2.json", "version 1"),
        ({"none.py": "X = 1\n"}, "none.py", "does not define LOGGING_CONFIG"),
        ({"boom.py": "raise RuntimeError('no db')\n"}, "boom.py", "RuntimeError: no db"),
        ({"syntax.py": "LOGGING_CONFIG = {\n"}, "syntax.py", "SyntaxError"),
        (
            {"obj.py": "import logging\nLOGGING_CONFIG = {'version': 1, 'x': logging.Formatter}\n"},
            "obj.py",
            "plain data",
        ),
    ],
)
def test_a_broken_logging_conf_is_one_clear_problem(tmp_path, files, value, fragment):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    line = problem(tmp_path, value)
    assert line.startswith(f"LOGGING_CONF={value!r}: ") and fragment in line


JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_DATA, indent=st.sampled_from([None, 1, 2]), sort_keys=st.booleans())
def test_to_json_writes_what_json_dumps_writes(value, indent, sort_keys):
    assert start.to_json(value, indent, sort_keys) == json.dumps(value, indent=indent, sort_keys=sort_keys)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1: "x"}, {"k": {1, 2}}])
def test_to_json_refuses_what_is_not_plain_data(value):
    with pytest.raises(TypeError):
        start.to_json(value)


def test_text_records_stay_on_one_line_with_their_traceback():
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        line = start.text_formatter().format(record("app", "failed:\n%s", ("x",), logging.ERROR, sys.exc_info()))
    assert "\n" not in line
    assert " ERROR app [" in line and "failed:\\nx\\nTraceback (most recent call last):\\n" in line
    assert line.endswith("ValueError: broken\\nacross lines")


# --- the access log's handler (module asgi_start_access) -------------------------------------------


class Writes(io.StringIO):
    """A stream that counts its write calls."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


ACCESS_CALLS = [
    ("uvicorn.access", UVICORN_ACCESS[1], UVICORN_ACCESS[2]),
    ("gunicorn.access", start.GUNICORN_ACCESS_FORMAT, (GUNICORN_ATOMS,)),
    ("hypercorn.access", start.HYPERCORN_ACCESS_FORMAT, ({**HYPERCORN_ATOMS, "Uq": "/items?id=3"},)),
    ("granian.access", start.GRANIAN_ACCESS_FORMAT, (GRANIAN_ARGS,)),
]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_records_are_written_in_batches_and_read_as_a_stream_handler_would_write_them(tmp_path, log_format):
    """Lines batched by the access log's handler read exactly as a StreamHandler writes them, for each
    server's arguments (the formatters cache the time string); many records, one write."""
    config = config_for(tmp_path, LOG_FORMAT=log_format)
    batched = Writes()
    config["handlers"]["access"]["stream"] = batched
    logging.config.dictConfig(config)
    plain = Writes()
    reference = logging.StreamHandler(plain)
    reference.setFormatter(logging.getLogger("uvicorn.access").handlers[0].formatter)
    access = sys.modules["asgi_start_access"]
    for name, message, args in ACCESS_CALLS * 50:
        logging.getLogger(name).info(message, *args)
        made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args[0] if len(args) == 1 else args, None)
        if logging.getLogger(name).filter(made):  # Granian's request line
            reference.handle(made)
    assert batched.writes == 0
    access.flush_all()
    assert batched.writes == 1

    def comparable(line: str) -> str:
        if log_format == "json":
            entry = json.loads(line)
            del entry["time"]
            return json.dumps(entry, sort_keys=True)
        return line.split(" ", 1)[1]

    batched_lines, plain_lines = batched.getvalue().splitlines(), plain.getvalue().splitlines()
    assert len(batched_lines) == 200
    assert [comparable(line) for line in batched_lines] == [comparable(line) for line in plain_lines]


def test_a_forked_child_drops_what_its_parent_had_not_written(tmp_path):
    config = config_for(tmp_path)
    read, write = os.pipe()
    stream = open(write, "w")  # noqa: SIM115 -- closed below, after the handler
    config["handlers"]["access"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.getLogger("uvicorn.access").info(UVICORN_ACCESS[1], "parent", "GET", "/", "1.1", 200)
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child
        logging.getLogger("uvicorn.access").info(UVICORN_ACCESS[1], "child", "GET", "/", "1.1", 200)
        sys.modules["asgi_start_access"].flush_all()
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    sys.modules["asgi_start_access"].flush_all()
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # closes the handler
    stream.close()
    with open(read) as pipe:
        lines = pipe.read().splitlines()
    assert sorted(line.split(" ")[4] for line in lines) == ["child", "parent"]  # each written once


def test_the_access_module_stands_alone(tmp_path):
    source = start.access_source()
    assert "def parse_settings" not in source and "VARIABLES" not in source
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter (the Python 3.9 image run)")
    written = tmp_path / "asgi_start_access.py"
    written.write_text(source)
    check = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "F821,F401,F811", str(written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
