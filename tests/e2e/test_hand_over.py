"""The explicit hand-over: start.py execs `python RUNTIME/hand_over.py [--fork-guard] MODULE ARGS...`,
which puts the runtime directory on sys.path, takes the SIGTERM held back and runs the server's module.

Nothing of the launcher reaches the processes the app starts: no PYTHONPATH entry, no sitecustomize,
no module `asgi_start` in a `python -c` the app runs, under every server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import SERVERS, Server, children, clean_env, cmdline, http_get, reserve_port, wait_for_workers

pytestmark = pytest.mark.e2e

# An app whose /child runs a Python process of its own, as a migration tool or a subprocess would.
CHILD_APP = """
import json, os, subprocess, sys

PROBE = (
    "import json, os, sys; print(json.dumps({'pythonpath': os.environ.get('PYTHONPATH'), 'path': sys.path,"
    " 'modules': {name: getattr(sys.modules[name], '__file__', None) for name in ('asgi_start', 'sitecustomize')"
    " if name in sys.modules}}))"
)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/child":
        child = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
        body = {"child": child, "own_pythonpath": os.environ.get("PYTHONPATH")}
    else:
        body = {"pid": os.getpid()}
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""


@pytest.mark.parametrize("server_name", SERVERS)
def test_the_apps_own_processes_carry_nothing_of_the_launcher(servers, tmp_path, server_name):
    """Before: the app's PYTHONPATH held the runtime directory, and a `python -c` it started imported
    `asgi_start` and the launcher's sitecustomize."""
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(CHILD_APP)
    port = reserve_port()
    server = Server(app_dir, clean_env(HOST="127.0.0.1", PORT=str(port), SERVER=server_name, WEB_CONCURRENCY="2"))
    server.port = port
    servers.append(server)
    assert server.wait_ready()[0] == 200, server.output()
    master = cmdline(server.pid)
    assert master[1].endswith("/hand_over.py") and "asgi-start-" in master[1], master
    status, text = http_get(server.url("/child"))
    assert status == 200, text
    body = json.loads(text)
    assert body["own_pythonpath"] is None
    assert body["child"]["pythonpath"] is None
    # no module of the launcher's; a sitecustomize of the system's own (Debian ships one) is not ours
    modules = body["child"]["modules"]
    assert "asgi_start" not in modules and "asgi-start-" not in str(modules.get("sitecustomize")), modules
    assert not [entry for entry in body["child"]["path"] if "asgi-start-" in entry]
    assert server.terminate() == 0


def test_a_hand_over_that_cannot_take_effect_fails_loudly(tmp_path):
    """hand_over.py without the runtime module beside it, or without a module to run: an error, not a server."""
    from helpers import START

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    import start

    (runtime / "hand_over.py").write_text(start.HAND_OVER)
    alone = subprocess.run(
        [sys.executable, str(runtime / "hand_over.py"), "gunicorn"], capture_output=True, text=True, timeout=30
    )
    assert alone.returncode == 1 and "No module named 'asgi_start'" in alone.stderr
    (runtime / "asgi_start.py").write_text(start.runtime_module_source())
    empty = subprocess.run([sys.executable, str(runtime / "hand_over.py")], capture_output=True, text=True, timeout=30)
    assert empty.returncode == 1
    assert empty.stderr == "asgi-start: error: the hand-over needs the server's module (start.py passes it)\n"
    assert START.is_file()


def test_gunicorn_re_executes_itself_through_the_hand_over(servers, tmp_path):
    """SIGUSR2 starts a new Gunicorn master with the old one's argv: hand_over.py again, so it finds the
    runtime (the logging configuration names `asgi_start`) and gets the same guards."""
    from helpers import copy_app

    app_dir = copy_app(tmp_path)
    port = reserve_port()
    server = Server(app_dir, clean_env(HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="1", LOG_FORMAT="json"))
    server.port = port
    servers.append(server)
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 1)) == 1
    old_workers = set(children(server.pid))
    os.kill(server.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 20
    new_master = None
    while time.monotonic() < deadline and new_master is None:
        for child in set(children(server.pid)) - old_workers:
            if children(child):  # the new master has workers of its own
                new_master = child
        time.sleep(0.05)
    assert new_master is not None, server.output()
    try:
        assert cmdline(new_master) == cmdline(server.pid)
        # its records are formatted by the launcher's JSON formatter: it found the runtime module
        deadline = time.monotonic() + 10
        booted = []
        while time.monotonic() < deadline and not booted:
            booted = [
                json.loads(line)
                for line in server.output().splitlines()
                if line.startswith("{") and f'"pid": {new_master}' in line
            ]
            time.sleep(0.05)
        assert booted, server.output()
        assert http_get(server.url("/"))[0] == 200
    finally:
        os.kill(new_master, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and new_master in children(server.pid):
        time.sleep(0.05)
    assert new_master not in children(server.pid)
    assert server.terminate() == 0
