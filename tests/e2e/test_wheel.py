"""The wheel `asgi-start`: built from this checkout, installed into a fresh venv, serving through
its console script `asgi-start` and through `python -m asgi_start`.

The wheel holds one module, `asgi_start`, which is start.py byte for byte. The servers are not the
wheel's (it has no dependencies): the fresh venv sees this test run's servers through a `.pth` file
naming their site-packages, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, SERVERS, START, cmdline, local_env, start_server, stop

pytestmark = pytest.mark.e2e

# The app reports, from the worker that serves the request, where its `asgi_start` came from.
APP = """\
import json, os, sys


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    runtime = sys.modules.get("asgi_start")
    body = json.dumps({"asgi_start": getattr(runtime, "__file__", None), "pid": os.getpid(),
                       "executable": sys.executable}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


def version_of_start_py() -> str:
    for line in START.read_text().splitlines():
        if line.startswith("__version__ = "):
            return line.split('"')[1]
    raise AssertionError("no __version__ in start.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="the build backend (requirements/dev.txt) builds the wheel")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no pip of its own) with the wheel installed by this run's pip, as `pip install` does it."""
    directory = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=60)
    python = directory / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    Path(purelib, "servers-of-the-test-run.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return directory


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def test_the_wheel_is_start_py_and_its_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"asgi_start-{version_of_start_py()}.dist-info"
        # one module, no top-level `start`, no package, no data: start.py and the metadata
        assert names == {
            "asgi_start.py",
            *(f"{info}/{name}" for name in ("METADATA", "RECORD", "WHEEL", "entry_points.txt")),
        }
        assert archive.read("asgi_start.py") == START.read_bytes()  # byte for byte
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        wheel_file = archive.read(f"{info}/WHEEL").decode()
    assert wheel.name == f"asgi_start-{version_of_start_py()}-py3-none-any.whl"
    assert "[console_scripts]\nasgi-start = asgi_start:main\n" in entry_points
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert "Name: asgi-start" in headers and f"Version: {version_of_start_py()}" in headers
    assert "Requires-Python: >=3.9" in headers
    assert not [line for line in headers if line.startswith("Requires-Dist")]  # no dependency
    assert "Root-Is-Purelib: true" in wheel_file and "Tag: py3-none-any" in wheel_file


def test_installed_compiled_and_runnable_both_ways(venv):
    packages = site_packages(venv)
    assert (packages / "asgi_start.py").read_bytes() == START.read_bytes()
    assert not (packages / "start.py").exists()
    tag = sys.implementation.cache_tag
    # pip compiles at install: no start compiles the 4000-line module
    assert (packages / "__pycache__" / f"asgi_start.{tag}.pyc").is_file()
    for command in ([str(venv / "bin" / "asgi-start")], [str(venv / "bin" / "python"), "-m", "asgi_start"]):
        result = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=30, check=False, env=local_env()
        )
        assert (result.returncode, result.stdout) == (0, f"asgi-start {version_of_start_py()}\n"), result.stderr


WAYS = {"console script": ["bin/asgi-start"], "python -m": ["bin/python", "-m", "asgi_start"]}


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("way", sorted(WAYS))
def test_serves_through_the_wheel_and_stops_gracefully(servers, tmp_path, venv, way, server_name):
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(APP)
    fresh_tmp = tmp_path / "tmp"
    fresh_tmp.mkdir()
    env = local_env(SERVER=server_name, WEB_CONCURRENCY="2", TMPDIR=str(fresh_tmp))
    command = [str(venv / WAYS[way][0]), *WAYS[way][1:]]
    server = start_server(servers, app_dir, env, command=command, wait=True, expect_status=200)
    answer = json.loads(server.wait_ready("/")[1])
    # start.py exec'd the server in the venv's interpreter: the PID started is the server now
    argv = cmdline(server.pid)
    assert argv[0] == str(venv / "bin" / "python") and argv[1].endswith("/hand_over.py"), argv
    assert answer["executable"] == str(venv / "bin" / "python")
    # the servers import the small runtime module start.py wrote, never the launcher in site-packages
    runtime_module = answer["asgi_start"]
    assert runtime_module and runtime_module.startswith(str(fresh_tmp) + os.sep), answer
    assert "site-packages" not in runtime_module
    stop(server, uvicorn_reraise=True)
