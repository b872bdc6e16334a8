"""The distroless variant (Dockerfile target `distroless`): no shell, no pip, non-root, exec-form HEALTHCHECK.

Its real base, gcr.io/distroless/python3-debian13, cannot be pulled here, so the test makes a stand-in
the way that image is made: Debian trixie's own python3.13 (from the trixie stand-in), its standard
library and the shared libraries it and its extension modules link, on `scratch`, with a passwd file;
no shell, no coreutils, no pip, no package manager. The Dockerfile is built unchanged with
BASE_IMAGE = the trixie stand-in (the builder; the real build uses debian:trixie-slim) and
DISTROLESS_IMAGE = that stand-in, so the venv is the one the `base` image on trixie has (BuildKit
reuses its layers).
"""

from __future__ import annotations

import json

import dockerlib
import pytest
from dockerlib import APPS, ENABLED, REPO, REPORT, SKIP_REASON, STANDINS, docker, http_get, image_size, standin
from test_images import HEALTH_FAST, hello_of, stop_with_a_slow_request_in_flight, wait_health

pytestmark = [pytest.mark.docker, pytest.mark.skipif(not ENABLED, reason=SKIP_REASON)]

UID = GID = 10001
DISTROLESS_STANDIN = "asgi-start-standin:distroless-trixie"

# Debian trixie's python3 as distroless lays it out: the interpreter, its standard library (no
# dist-packages: no pip), the libraries that `ldd` lists for it and for its extension modules, and
# all of glibc, libgcc_s and libstdc++, which distroless/cc (the python3 image's base) has for compiled
# extensions (Granian's, a Rust one, needs libgcc_s and librt).
STANDIN_DOCKERFILE = r"""
FROM {trixie} AS rootfs
RUN set -eu; out=/distroless; \
    mkdir -p "$out/usr/bin" "$out/usr/lib" "$out/etc" "$out/tmp" "$out/home/nonroot"; chmod 1777 "$out/tmp"; \
    cp -a /lib /lib64 "$out/" ; \
    cp -a /usr/bin/python3 /usr/bin/python3.13 "$out/usr/bin/"; \
    cp -a /usr/lib/python3.13 "$out/usr/lib/"; \
    for f in /usr/bin/python3.13 /usr/lib/python3.13/lib-dynload/*.so; do ldd "$f"; done \
        | awk '$2 == "=>" && $3 ~ /^\// {{print $3}} $1 ~ /^\// {{print $1}}' | sort -u > /tmp/libs; \
    while read -r lib; do \
        dir=$(readlink -f "$(dirname "$lib")"); \
        cp -a --parents "$dir/$(basename "$lib")" "$out/"; \
        cp -a --parents "$(readlink -f "$lib")" "$out/"; \
    done < /tmp/libs; \
    dpkg -L libc6 libgcc-s1 libstdc++6 | grep -E '/lib[^/]*\.so' | while read -r lib; do \
        if [ -e "$lib" ]; then cp -a --parents "$lib" "$out/"; fi; \
    done; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$out/etc/passwd"; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > "$out/etc/group"

FROM scratch
COPY --from=rootfs /distroless/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
USER 65532:65532
"""

# what must not be in the image (checked from inside, with its own python3)
ABSENT = [
    "/bin/sh", "/usr/bin/sh", "/bin/bash", "/bin/dash", "/bin/busybox", "/usr/bin/apt-get", "/usr/bin/dpkg",
    "/usr/bin/apk", "/opt/venv/bin/pip", "/opt/venv/bin/pip3",
]  # fmt: skip
PROBE = (
    "import importlib.util, json, os, sys\n"
    f"absent = {ABSENT!r}\n"
    "print(json.dumps({'present': [p for p in absent if os.path.lexists(p)],\n"
    "  'pip': importlib.util.find_spec('pip') is not None, 'exe': sys.executable,\n"
    "  'python': sys.version.split()[0], 'files': sorted(os.listdir('/'))}))\n"
)


@pytest.fixture(scope="module")
def distroless_image(engine, tmp_path_factory) -> str:
    workdir = tmp_path_factory.mktemp("distroless")
    trixie = standin("trixie")
    dockerlib.derived_image(DISTROLESS_STANDIN, STANDIN_DOCKERFILE.format(trixie=trixie), {}, workdir)
    REPORT.setdefault("bases", {})[DISTROLESS_STANDIN] = image_size(DISTROLESS_STANDIN)
    tag = "asgi-start-test:trixie-distroless"
    dockerlib.build(
        tag,
        REPO,
        target="distroless",
        build_args={"BASE_IMAGE": trixie, "DISTROLESS_IMAGE": DISTROLESS_STANDIN, "PYTHON_VERSION": STANDINS["trixie"]},
    )
    return tag


@pytest.fixture(scope="module")
def distroless_app(distroless_image, tmp_path_factory) -> str:
    tag = "asgi-start-test:trixie-distroless-app"
    files = {"app/main.py": APPS / "raw" / "main.py"}
    dockerlib.derived_image(tag, f"FROM {distroless_image}\nCOPY app /app\n", files, tmp_path_factory.mktemp("app"))
    return tag


def test_no_shell_no_pip_and_the_launcher_compiled(distroless_image, containers):
    result = containers.run_to_end(distroless_image, cmd=["python3", "-c", PROBE])
    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads(result.stdout)
    assert info["present"] == [] and info["pip"] is False, info
    assert info["exe"] == "/opt/venv/bin/python3" and info["python"].startswith(STANDINS["trixie"] + "."), info
    assert {"start.py", "start.pyc", "gunicorn_conf.py", "hypercorn_conf.py"} <= set(info["files"])
    # no shell at all: a shell-form command cannot even start
    shell = containers.run_to_end(distroless_image, extra=["--entrypoint", "/bin/sh"], cmd=["-c", "true"])
    said = (shell.stdout + shell.stderr).lower()
    assert shell.returncode != 0 and ("no such file" in said or "not found" in said), said
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", distroless_image).stdout)
    assert config["User"] == f"{UID}:{GID}"
    assert config["Cmd"] == ["python3", "/start.pyc"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python3", "/start.pyc", "--healthcheck"]  # exec form
    inside = containers.run_to_end(distroless_image, cmd=["python3", "-c", "print(open('/start.py').read(), end='')"])
    assert inside.stdout == (REPO / "start.py").read_text()  # copied verbatim


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_serves_turns_healthy_and_stops_gracefully(distroless_app, containers, server):
    container = containers.run(distroless_app, env={"SERVER": server}, extra=HEALTH_FAST)
    assert container.wait_http("/") == (200, hello_of("base"))
    assert server in container.pid1_cmdline()  # start.py exec'd the server
    ident = json.loads(http_get(container.port, "/id")[1])
    assert (ident["uid"], ident["gid"]) == (UID, GID), ident
    health = wait_health(container, "healthy")
    assert health["Log"][-1]["ExitCode"] == 0
    stop_seconds, result = stop_with_a_slow_request_in_flight(container)
    logs = container.logs()
    print(f"distroless {server}: docker stop took {stop_seconds:.2f} s; in-flight request {result}")
    assert result.get("response") == (200, "slow done"), f"{result}\n{logs}"
    assert container.exit_code() == 0, logs
    assert stop_seconds < 9, f"stop took {stop_seconds:.1f} s (SIGKILL comes at 10 s)\n{logs}"


def test_distroless_size_beside_slim(distroless_image, images):
    slim = images.get("trixie", "base")
    sizes = {
        "distroless (stand-in base)": image_size(distroless_image),
        "slim (trixie stand-in base)": image_size(slim),
        "distroless stand-in base": image_size(DISTROLESS_STANDIN),
        "trixie stand-in base": image_size(standin("trixie")),
    }
    print("\n".join(f"{name}: {size / 1e6:.1f} MB" for name, size in sizes.items()))
    assert sizes["distroless (stand-in base)"] < sizes["slim (trixie stand-in base)"], sizes
