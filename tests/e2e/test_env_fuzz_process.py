"""The environment fuzz, where it runs start.py as a process or starts a server (moved from tests/unit)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from helpers import START, Server, clean_env, reserve_port
from hypothesis import given, settings
from unit import test_env_fuzz as fuzz
from unit.test_env_fuzz import APP, ENVIRONS, PREFIX, check_outcome

app_dir = fuzz.app_dir  # the fuzz's module-scoped fixture: an app directory, also the working directory


@settings(settings.get_profile("env-fuzz-subprocess"))
@given(environ=ENVIRONS)
def test_any_environment_gives_a_plan_or_one_line_errors_as_a_process(app_dir, environ):
    result = subprocess.run(
        [sys.executable, str(START), "--dry-run"],
        env=clean_env(**environ),
        cwd=app_dir,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=30,
        check=False,
    )
    check_outcome(environ, result.returncode, result.stdout, result.stderr)


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["gunicorn", "uvicorn", "hypercorn"])
def test_a_backlog_too_large_for_listen_is_a_configuration_error(tmp_path, servers, server_name):
    """Not just --dry-run: a value that parses must also work when the server binds."""
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(APP)
    port = reserve_port()
    server = Server(
        app_dir,
        clean_env(HOST="127.0.0.1", PORT=str(port), SERVER=server_name, WEB_CONCURRENCY="2", BACKLOG=str(2**32)),
    )
    servers.append(server)
    deadline = time.monotonic() + 20
    while server.process.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return  # it started after all (e.g. the value was capped): fine
        time.sleep(0.05)
    output = server.output()
    assert server.process.poll() == 2, f"exit status {server.process.poll()}\n{output[-1500:]}"
    assert "Traceback" not in output
    assert any(line.startswith(PREFIX) and "BACKLOG" in line for line in output.splitlines()), output[-1500:]
