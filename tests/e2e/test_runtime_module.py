"""No server process compiles launcher code: the servers import the small module `asgi_start`
from the bytecode start.py writes, also where they may not write bytecode themselves."""

from __future__ import annotations

import re

import pytest
from helpers import REPO, SERVERS, Server, clean_env, copy_app, reserve_port, wait_until_workers_serve

pytestmark = pytest.mark.e2e

CODE_OBJECT = re.compile(r"^# code object from '?([^']+?)'?$")


@pytest.mark.parametrize("server_name", SERVERS)
def test_servers_load_the_launcher_code_from_bytecode_only(servers, tmp_path, server_name):
    fresh_tmp = tmp_path / "tmp"
    fresh_tmp.mkdir()
    app_dir = copy_app(tmp_path)
    env = clean_env(
        HOST="127.0.0.1",
        PORT=str(reserve_port()),
        SERVER=server_name,
        WEB_CONCURRENCY="2",
        TMPDIR=str(fresh_tmp),  # an empty TMPDIR, as in a new container
        PYTHONDONTWRITEBYTECODE="1",  # as the image sets: the servers cache nothing themselves
        PYTHONVERBOSE="1",  # every import says where its code object came from
    )
    server = Server(app_dir, env)
    servers.append(server)
    assert server.wait_ready()[0] == 200
    assert len(wait_until_workers_serve(server.url("/pid"), 2)) == 2
    assert server.terminate() == 0
    loaded = [match.group(1) for line in server.output().splitlines() if (match := CODE_OBJECT.match(line))]
    assert loaded, "no import was reported: the check is broken"
    runtime = [path for path in loaded if "/asgi-start-" in path]
    # both spawned workers imported it (Gunicorn's and Granian's forked workers inherit the master's import)
    assert len(runtime) >= (1 if server_name in ("gunicorn", "granian") else 2), runtime
    # the launcher's modules only (asgi_start; the worker keeper, the access log's handler), from bytecode:
    # hand_over.py, run as a script, imports them; no sitecustomize any more
    assert all(path.endswith(".pyc") and "/__pycache__/asgi_start" in path for path in runtime), runtime
    assert not [path for path in loaded if path.startswith(str(REPO / "start.py"))]
