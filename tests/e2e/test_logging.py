"""One log stream: every line that start.py, the server and the app print follows LOG_FORMAT."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from helpers import (
    SERVERS,
    Server,
    clean_env,
    copy_app,
    http_get,
    local_env,
    reserve_port,
    start_server,
    wait_until_workers_serve,
)

pytestmark = pytest.mark.e2e

ACCESS_FIELDS = {"client", "method", "path", "query", "status", "protocol", "duration_ms", "user_agent"}
BASE_FIELDS = {"time", "level", "logger", "pid", "message"}
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ \[\d+\] ")


def start_logging_app(servers, tmp_path, **env: str) -> Server:
    server = start_server(servers, copy_app(tmp_path), local_env(**env), wait=True, expect_status=200)
    # Every worker serving before the test goes on to stop the server: a SIGTERM that meets a
    # Gunicorn worker still booting is lost by it, and the master waits GRACEFUL_TIMEOUT (README).
    workers = 1 if env.get("WITH_RELOAD") else int(env.get("WEB_CONCURRENCY", "2"))
    assert len(wait_until_workers_serve(server.url("/pid"), workers)) == workers
    return server


def exercise(server: Server) -> None:
    """The requests every format test makes: plain, filtered health checks, an app log line, an app error."""
    request = urllib.request.Request(server.url("/?via=test"), headers={"User-Agent": "asgi-start-test/1"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    for path in ("/health", "/health/live", "/healthy", "/log"):
        assert http_get(server.url(path))[0] == 200
    assert http_get(server.url("/raise"))[0] == 500


def stop(server: Server, single_uvicorn: bool = False) -> list[str]:
    # Uvicorn in one process re-raises SIGTERM after its graceful shutdown (its capture_signals),
    # to the handler it found at start: the launcher's, which exits 0, as every server does.
    assert server.terminate() == 0
    return server.output().splitlines()


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_every_line_is_an_object_with_the_documented_fields(servers, tmp_path, server_name, workers):
    server = start_logging_app(
        servers, tmp_path, SERVER=server_name, WEB_CONCURRENCY=workers, LOG_FORMAT="json", LOG_FILTERS="/health"
    )
    exercise(server)
    lines = stop(server, single_uvicorn=server_name == "uvicorn" and workers == "1")
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, whoever wrote it
        assert set(entry) >= BASE_FIELDS, line
        assert entry["time"].endswith("Z") and isinstance(entry["pid"], int)
        entries.append(entry)
    loggers = {entry["logger"] for entry in entries}
    assert "asgi-start" in loggers  # the summary line
    access = [entry for entry in entries if entry["logger"].endswith(".access")]
    assert {entry["path"] for entry in access} - {"/pid"} == {"/", "/healthy", "/log", "/raise"}  # /health* filtered
    for entry in access:
        assert set(entry) >= ACCESS_FIELDS
        assert entry["protocol"] == "HTTP/1.1" and entry["method"] == "GET"
    # Hypercorn 0.18 may add a record with no status for the same request (a race; see README)
    [plain] = [entry for entry in access if entry["query"] == "via=test" and entry["status"] is not None]
    assert plain["status"] == 200 and plain["query"] == "via=test" and plain["client"].startswith("127.0.0.1")
    if server_name == "hypercorn":  # the only server that hands the log a duration and the user agent
        assert plain["user_agent"] == "asgi-start-test/1" and plain["duration_ms"] >= 0
    elif server_name == "granian":  # a duration (its dt_ms), no user agent; the client without its port
        assert type(plain["duration_ms"]) is float and 0 <= plain["duration_ms"] < 10_000, plain
        assert plain["user_agent"] is None and plain["client"] == "127.0.0.1", plain
        assert all(isinstance(entry["duration_ms"], (int, float)) for entry in access), access
        # Granian's own records, from its main and its workers, were among the JSON lines
        assert {"_granian", "_granian.serve", "granian.access"} <= loggers, loggers
    else:
        assert plain["duration_ms"] is None and plain["user_agent"] is None, plain
    [app_line] = [entry for entry in entries if entry["logger"] == "main" and entry["level"] == "info"]
    assert app_line["message"] == "app says hello to the log"
    [caught] = [entry for entry in entries if entry["message"] == "app caught an error"]
    assert caught["level"] == "error" and "LookupError: nothing here" in caught["exception"]
    assert any("RuntimeError: unhandled app error" in entry.get("exception", "") for entry in entries)


@pytest.mark.parametrize("server_name", SERVERS)
def test_text_is_one_readable_format_everywhere(servers, tmp_path, server_name):
    server = start_logging_app(servers, tmp_path, SERVER=server_name, LOG_FILTERS="/health")
    exercise(server)
    lines = stop(server)
    records = [line for line in lines if TEXT_LINE.match(line)]
    assert records == lines  # every line is a whole record, tracebacks included
    [caught] = [line for line in records if " ERROR main [" in line and "app caught an error" in line]
    assert "\\nTraceback (most recent call last):\\n" in caught and caught.endswith("LookupError: nothing here")
    assert any(" INFO asgi-start [" in line and f"{server_name} " in line for line in records)
    assert any(re.search(r" INFO main \[\d+\] app says hello to the log$", line) for line in records)
    access = [line for line in records if ".access [" in line]
    assert any(line.endswith('- "GET /?via=test HTTP/1.1" 200') for line in access), access  # alike everywhere
    assert not any("/health " in line or "/health/live" in line for line in access)
    assert any("/healthy" in line for line in access)


@pytest.mark.parametrize("server_name", SERVERS)
def test_reload_mode_logs_in_the_same_format(servers, tmp_path, server_name):
    server = start_logging_app(servers, tmp_path, SERVER=server_name, WITH_RELOAD="true", LOG_FORMAT="json")
    assert http_get(server.url("/log"))[0] == 200
    lines = stop(server)
    entries = [json.loads(line) for line in lines]
    assert any(entry["message"] == "app says hello to the log" for entry in entries)


@pytest.mark.parametrize("server_name", SERVERS)
def test_logging_conf_replaces_the_built_in_configuration(servers, tmp_path, server_name):
    conf = tmp_path / "my_logging.py"
    conf.write_text(
        "LOGGING_CONFIG = {\n"
        "    'version': 1, 'disable_existing_loggers': False,\n"
        "    'formatters': {'mine': {'format': 'MINE %(name)s %(message)s'}},\n"
        "    'handlers': {'out': {'class': 'logging.StreamHandler', 'formatter': 'mine', 'stream': 'ext://sys.stdout'}},\n"
        "    'root': {'level': 'INFO', 'handlers': ['out']},\n"
        "}\n"
    )
    server = start_logging_app(servers, tmp_path, SERVER=server_name, LOGGING_CONF=str(conf))
    assert http_get(server.url("/log"))[0] == 200
    lines = stop(server)
    assert "MINE main app says hello to the log" in lines


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_python_logging_conf_runs_once_per_start(servers, tmp_path, server_name):
    """start.py runs it to check it and hands the servers the dictionary; no config file runs it again."""
    runs = tmp_path / "runs.txt"
    conf = tmp_path / "counting_logging.py"
    conf.write_text(
        f"with open({str(runs)!r}, 'a') as runs:\n    runs.write('ran\\n')\n"
        "LOGGING_CONFIG = {'version': 1, 'disable_existing_loggers': False}\n"
    )
    server = start_logging_app(servers, tmp_path, SERVER=server_name, LOGGING_CONF=str(conf))
    stop(server)
    assert runs.read_text() == "ran\n"


def test_broken_logging_conf_stops_the_start(tmp_path):
    from helpers import run_start

    app_dir = copy_app(tmp_path)
    (app_dir / "logs.json").write_text("{broken")
    result = run_start([], clean_env(PORT=str(reserve_port()), LOGGING_CONF="logs.json"), app_dir)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("asgi-start: error: LOGGING_CONF='logs.json': cannot load")


def test_json_errors_and_prestart_output_are_json_too(tmp_path):
    from helpers import run_start

    app_dir = copy_app(tmp_path)
    (app_dir / "prestart.sh").write_text("echo migrating; echo oops >&2; exit 3\n")
    result = run_start([], clean_env(PORT=str(reserve_port()), LOG_FORMAT="json"), app_dir)
    assert result.returncode == 3
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert [entry["message"] for entry in entries][1:3] == ["migrating", "oops"]
    bad = run_start([], clean_env(PORT="99999", LOG_FORMAT="JSON"), app_dir)
    [entry] = [json.loads(line) for line in bad.stderr.splitlines()]
    assert bad.returncode == 2 and entry["level"] == "error" and entry["message"].startswith("PORT='99999'")
