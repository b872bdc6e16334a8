"""The README's uv recipe, built and run: a project with pyproject.toml and uv.lock, FROM the image.

tests/docker/projects/uv holds the project (a Starlette app), its uv.lock (made
by `uv lock`) and the recipe's Dockerfile, built unchanged with ASGI_START_IMAGE
set to the image under test. uv comes from PyPI in a stage of its own; the
locked packages go into the image's /opt/venv beside the servers.

Like the stand-in bases, which carry this machine's CA bundle and pip index
settings (standins.sh), the image under test gets one test-only layer that
tells uv the same: SSL_CERT_FILE, and the index when pip's is not PyPI. The
recipe needs neither where PyPI is reached directly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import dockerlib
import pytest
from dockerlib import ENABLED, HERE, REPO, SKIP_REASON, docker, http_get

pytestmark = [pytest.mark.docker, pytest.mark.skipif(not ENABLED, reason=SKIP_REASON)]

PROJECT = HERE / "projects" / "uv"
UID = GID = 10001
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # where the stand-ins keep this machine's CA bundle
# compilers, toolchains, pip caches anywhere in the image (as test_images.py checks), and uv's own traces
LEFTOVERS = r"""
fail=0
for tool in cc gcc g++ c++ clang make ld as cargo rustc uv; do
    if command -v "$tool" >/dev/null 2>&1; then echo "tool present: $(command -v $tool)"; fail=1; fi
done
for dir in $(find / -xdev \( -path '*/.cache/pip' -o -path '*/pip/http*' -o -path '*/.cache/uv' \) 2>/dev/null); do
    echo "cache left: $dir"; fail=1
done
for path in /tmp/uv /tmp/requirements.txt; do
    if [ -e "$path" ]; then echo "build leftover: $path"; fail=1; fi
done
# the RUN step's mount points stay, empty (BuildKit)
for path in $(find /uv /tmp/project -mindepth 1 2>/dev/null); do
    if [ -d "$path" ] || [ -s "$path" ]; then echo "build leftover: $path"; fail=1; fi
done
exit $fail
"""


def locked_packages() -> tuple[dict[str, str], set[str]]:
    """From uv.lock: {name: version} of what the project needs at run time, and its dev group's own packages."""
    text = (PROJECT / "uv.lock").read_text()
    try:
        import tomllib
    except ImportError:  # Python < 3.11 running the tests: pytest.skip rather than a second parser
        pytest.skip("reading uv.lock needs tomllib (Python 3.11+)")
    packages = {package["name"]: package for package in tomllib.loads(text)["package"]}
    project = packages["uvservice"]

    def closure(names: list[str]) -> set[str]:
        seen: set[str] = set()
        while names:
            name = names.pop()
            if name not in seen:
                seen.add(name)
                names += [dependency["name"] for dependency in packages[name].get("dependencies", [])]
        return seen

    runtime = closure([dependency["name"] for dependency in project.get("dependencies", [])])
    dev = {dependency["name"] for dependency in project["dev-dependencies"]["dev"]} - runtime
    return {name: packages[name]["version"] for name in runtime}, dev


def image_server_pins() -> dict[str, str]:
    """The servers' pins of the image (requirements/base.in)."""
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", (REPO / "requirements" / "base.in").read_text(), re.M
    )
    return dict(pins)


def machine_index_for_uv() -> list[str]:
    """ENV lines giving uv this machine's CA bundle, and pip's index when it names a remote one (as standins.sh)."""
    lines = [f"ENV SSL_CERT_FILE={CA_BUNDLE}"]

    def pip_config(key: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True, timeout=60, check=False
        )
        return [url for url in result.stdout.split() if url.startswith(("http://", "https://"))]

    index = pip_config("global.index-url")
    extra = pip_config("global.extra-index-url")
    if index:
        lines.append(f"ENV UV_DEFAULT_INDEX={index[0]}")
    if extra:
        lines.append(f"ENV UV_INDEX={' '.join(extra)}")
    return lines


@pytest.fixture(scope="module")
def uv_image(images, tmp_path_factory) -> str:
    workdir = tmp_path_factory.mktemp("uv-recipe")
    base = images.get("bookworm", "base")
    under_test = dockerlib.derived_image(
        "asgi-start-test:uv-recipe-base", "\n".join([f"FROM {base}", *machine_index_for_uv()]) + "\n", {}, workdir
    )
    context = workdir / "project"
    shutil.copytree(PROJECT, context, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    tag = "asgi-start-test:uv-recipe"
    dockerlib.build(tag, context, build_args={"ASGI_START_IMAGE": under_test})
    return tag


def test_uv_recipe_serves_the_app_with_exactly_the_locked_packages(uv_image, containers):
    runtime, dev = locked_packages()
    assert {"starlette", "anyio"} <= set(runtime) and "pytest" in dev
    container = containers.run(uv_image)
    assert container.wait_http("/") == (200, "hello from uv")
    assert "gunicorn" in container.pid1_cmdline()  # the image's default server, started by start.py

    for name, version in sorted(runtime.items()):
        assert http_get(container.port, f"/dist?name={name}") == (200, version), name
    for name in sorted(dev | {"uvservice"}):  # the dev group and the project itself are not installed
        assert http_get(container.port, f"/dist?name={name}")[0] == 404, name
    for name, version in image_server_pins().items():  # the servers of the image are untouched
        assert http_get(container.port, f"/dist?name={name}") == (200, version), name

    ident = json.loads(http_get(container.port, "/id")[1])
    assert (ident["uid"], ident["gid"]) == (UID, GID), ident
    probe = (
        "import os, starlette; here = os.path.dirname(starlette.__file__); "
        "print(here, any(n.endswith('.pyc') for n in os.listdir(os.path.join(here, '__pycache__'))))"
    )
    where, compiled = container.exec("python", "-c", probe).stdout.split()
    assert where.startswith("/opt/venv/"), where
    assert compiled == "True", "the locked packages were installed without their bytecode"


def test_uv_recipe_leaves_no_uv_no_cache_and_no_compiler(uv_image, containers):
    result = containers.run_to_end(uv_image, extra=["--user", "0", "--entrypoint", "sh"], cmd=["-c", LEFTOVERS])
    assert result.returncode == 0, result.stdout + result.stderr
    spec = containers.run_to_end(uv_image, cmd=["python", "-c", "import importlib.util as u; print(u.find_spec('uv'))"])
    assert spec.stdout.strip() == "None", spec.stdout + spec.stderr
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", uv_image).stdout)
    assert config["User"] == f"{UID}:{GID}"


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_uv_recipe_under_the_other_servers(uv_image, containers, server):
    container = containers.run(uv_image, env={"SERVER": server})
    assert container.wait_http("/") == (200, "hello from uv")
    assert server in container.pid1_cmdline()
