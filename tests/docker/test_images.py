"""The container images, built from the real Dockerfile and run in a real Docker engine.

Run with `bash tests/docker/run.sh` (installs and starts a private engine, makes
the stand-in base images, runs this module, stops the engine). Without
ASGI_START_DOCKER=1 every test here is skipped.

No python:* image can be pulled here, so the Dockerfile is built unchanged on
stand-in bases (debootstrapped Debian with its own python3; see standins.sh):
bookworm = Python 3.11, trixie = Python 3.13, bullseye = Python 3.9.
Every container runs with --network host and is reached on 127.0.0.1 only; the
host's net.ipv4.ip_unprivileged_port_start applies, so the non-root server is
given a free high PORT instead of its default 80.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from pathlib import Path

import dockerlib
import pytest
from dockerlib import (
    APPS,
    ENABLED,
    HERE,
    REPO,
    REPORT,
    SKIP_REASON,
    STANDINS,
    docker,
    free_port,
    http_get,
    image_size,
    standin,
)

pytestmark = [pytest.mark.docker, pytest.mark.skipif(not ENABLED, reason=SKIP_REASON)]

UID = GID = 10001
# (suite, target) pairs built from the project's Dockerfile
BUILDS = [("bookworm", "base"), ("bookworm", "fastapi"), ("bookworm", "starlette"), ("trixie", "base")]
BUILD_IDS = [f"{suite}-{target}" for suite, target in BUILDS]
APP_OF = {"base": "raw", "fastapi": "fastapi", "starlette": "starlette"}
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian")
HEALTH_FAST = ["--health-interval=1s", "--health-timeout=5s", "--health-retries=3", "--health-start-period=30s"]

# Finds compilers/toolchains and pip caches anywhere in an image (run as root).
NO_BUILD_TOOLS = r"""
fail=0
for tool in cc gcc g++ c++ clang make ld as cargo rustc; do
    if command -v "$tool" >/dev/null 2>&1; then echo "compiler/tool present: $(command -v $tool)"; fail=1; fi
done
for dir in $(find / -xdev -type d \( -path '*/.cache/pip' -o -path '*/pip/http*' -o -path '/tmp/requirements' \) 2>/dev/null); do
    echo "pip cache or leftover: $dir"; fail=1
done
exit $fail
"""


def app_files(target: str, layout: str = "main.py") -> dict[str, Path]:
    return {f"app/{layout}": APPS / APP_OF[target] / "main.py"}


@pytest.fixture(scope="session")
def app_image(images, tmp_path_factory):
    """The user's view: FROM <built image>, COPY ./app /app (app/main.py -> module main)."""
    workdir = tmp_path_factory.mktemp("contexts")
    made: dict[tuple[str, str], str] = {}

    def get(suite: str, target: str) -> str:
        if (suite, target) not in made:
            base = images.get(suite, target)
            tag = f"asgi-start-test:{suite}-{target}-app"
            dockerlib.derived_image(tag, f"FROM {base}\nCOPY app /app\n", app_files(target), workdir)
            made[(suite, target)] = tag
        return made[(suite, target)]

    return get


@pytest.fixture(scope="session")
def derived(engine, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("derived")

    def build(tag: str, dockerfile: str, files: dict) -> str:
        return dockerlib.derived_image(tag, dockerfile, files, workdir)

    return build


def hello_of(target: str) -> str:
    return f"hello from {APP_OF[target]}"


def wait_health(container, want: str, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        health = json.loads(container.state("json .State.Health"))
        if health.get("Status") == want:
            return health
        time.sleep(0.5)
    raise AssertionError(f"health never became {want!r}: {json.dumps(health, indent=1)[-3000:]}\n{container.logs()}")


# --------------------------------------------------------------------------
# each target builds and serves a copied app with the launcher's defaults
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("suite", "target"), BUILDS, ids=BUILD_IDS)
def test_serves_app_with_defaults_as_non_root_and_turns_healthy(app_image, containers, suite, target):
    image = app_image(suite, target)
    container = containers.run(image, extra=HEALTH_FAST)

    status, body = container.wait_http("/")
    assert (status, body) == (200, hello_of(target))

    # the launcher exec'd the server: PID 1 is the Gunicorn master (the default server)
    assert "gunicorn" in container.pid1_cmdline()

    # the non-root user, fixed UID/GID, in the image config and in the worker serving the request
    assert docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() == f"{UID}:{GID}"
    status, body = http_get(container.port, "/id")
    ident = json.loads(body)
    assert (ident["uid"], ident["gid"]) == (UID, GID), ident
    assert ident["python"].startswith(STANDINS[suite] + "."), ident
    status1 = container.exec("sh", "-c", "grep -E '^(Uid|Gid):' /proc/1/status").stdout.split()
    assert status1 == ["Uid:", *[str(UID)] * 4, "Gid:", *[str(GID)] * 4], status1

    health = wait_health(container, "healthy")
    assert health["Log"][-1]["ExitCode"] == 0


def test_unhealthy_when_the_app_answers_500(app_image, containers):
    image = app_image("bookworm", "base")
    container = containers.run(
        image,
        env={"HEALTHCHECK_PATH": "/boom"},
        extra=["--health-interval=1s", "--health-timeout=5s", "--health-retries=2", "--health-start-period=1s"],
    )
    assert container.wait_http("/")[0] == 200
    health = wait_health(container, "unhealthy")
    assert health["Log"][-1]["ExitCode"] == 1, health["Log"][-1]


# --------------------------------------------------------------------------
# docker stop: graceful, exit status 0, an in-flight request completes
# --------------------------------------------------------------------------
GRACEFUL_CASES = [(suite, target, "gunicorn") for suite, target in BUILDS] + [
    ("bookworm", "base", "uvicorn"),
    ("bookworm", "base", "hypercorn"),
    ("bookworm", "base", "granian"),
    ("bookworm", "fastapi", "granian"),
    ("trixie", "base", "granian"),
]


@pytest.mark.parametrize(
    ("suite", "target", "server"), GRACEFUL_CASES, ids=[f"{s}-{t}-{v}" for s, t, v in GRACEFUL_CASES]
)
def test_docker_stop_is_graceful_with_a_request_in_flight(app_image, containers, suite, target, server):
    container = containers.run(app_image(suite, target), env={"SERVER": server})
    assert container.wait_http("/")[0] == 200
    stop_seconds, result = stop_with_a_slow_request_in_flight(container)

    logs = container.logs()
    print(f"{server}: docker stop took {stop_seconds:.2f} s; in-flight request {result}")
    assert result.get("response") == (200, "slow done"), f"{result}\n{logs}"
    assert container.exit_code() == 0, logs
    assert stop_seconds < 9, f"stop took {stop_seconds:.1f} s (SIGKILL comes at 10 s)\n{logs}"


def stop_with_a_slow_request_in_flight(container) -> tuple[float, dict]:
    """docker stop while a 2 s request is being served; (seconds docker stop took, the request's outcome)."""
    result: dict = {}

    def slow_request():
        started = time.monotonic()
        try:
            result["response"] = http_get(container.port, "/slow?seconds=2", timeout=20)
        except OSError as exc:
            result["error"] = repr(exc)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # the request is being served
    started = time.monotonic()
    docker("stop", container.name, timeout=30)  # Docker's default: SIGTERM, SIGKILL after 10 s
    stop_seconds = time.monotonic() - started
    thread.join(30)
    return stop_seconds, result


# --------------------------------------------------------------------------
# SERVER=uvicorn, SERVER=hypercorn and SERVER=granian in the same image
# --------------------------------------------------------------------------
@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
def test_other_servers_serve_the_same_image(app_image, containers, suite, server):
    container = containers.run(app_image(suite, "base"), env={"SERVER": server})
    assert container.wait_http("/") == (200, hello_of("base"))
    assert server in container.pid1_cmdline()
    ident = json.loads(http_get(container.port, "/id")[1])
    assert ident["uid"] == UID


def full_logs(container) -> list[str]:
    """Every line the container printed, stdout and stderr (Container.logs keeps only the tail)."""
    result = docker("logs", container.name, check=False)
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.parametrize("server", SERVERS)
def test_json_logs_every_line_is_an_object(app_image, containers, server):
    """LOG_FORMAT=json in the image: start.py, the server, its workers and the access log, one object a line."""
    container = containers.run(app_image("bookworm", "base"), env={"SERVER": server, "LOG_FORMAT": "json"})
    assert container.wait_http("/") == (200, hello_of("base"))
    assert http_get(container.port, "/?via=image")[0] == 200
    docker("stop", container.name, timeout=30)
    assert container.exit_code() == 0, container.logs()
    lines = [line for line in full_logs(container) if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{server}: not a JSON line: {line!r}\n" + "\n".join(lines[-40:])) from None
    assert all({"time", "level", "logger", "pid", "message"} <= set(entry) for entry in entries), lines
    assert "asgi-start" in {entry["logger"] for entry in entries}
    access = [e for e in entries if e["logger"].endswith(".access") and e.get("query") == "via=image"]
    assert [(e["path"], e["status"]) for e in access if e["status"] is not None] == [("/", 200)], lines


@pytest.mark.parametrize("server", SERVERS)
def test_with_reload_serves_in_the_image(app_image, containers, server):
    """WITH_RELOAD=true: what each server's reloader needs is in the image (watchfiles for Granian)."""
    container = containers.run(app_image("bookworm", "base"), env={"SERVER": server, "WITH_RELOAD": "true"})
    assert container.wait_http("/") == (200, hello_of("base"))
    # Uvicorn's reloader serves SERVER=gunicorn in development (README, WITH_RELOAD)
    assert ("uvicorn" if server == "gunicorn" else server) in container.pid1_cmdline()
    docker("stop", container.name, timeout=30)
    assert container.exit_code() == 0, container.logs()


# --------------------------------------------------------------------------
# --cpus (a real CFS quota): the worker count follows the launcher's rules
# --------------------------------------------------------------------------
def expected_workers(per_core: float, cores: int) -> int:
    # contract.md: max(int(WORKERS_PER_CORE x cores), 2)
    return max(int(per_core * cores), 2)


def count_workers(container, want: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    workers: list = []
    while time.monotonic() < deadline:
        workers = [
            (pid, cmd)
            for pid, cmd in container.children_of_pid1()
            if "resource_tracker" not in cmd and "semaphore_tracker" not in cmd
        ]
        if len(workers) >= want:
            time.sleep(1.0)  # and no more than that appear
            return [
                (pid, cmd)
                for pid, cmd in container.children_of_pid1()
                if "resource_tracker" not in cmd and "semaphore_tracker" not in cmd
            ]
        time.sleep(0.3)
    return workers


@pytest.mark.parametrize(
    ("server", "cpus"),
    [
        ("gunicorn", "1"),
        ("gunicorn", "0.5"),
        ("gunicorn", None),
        ("uvicorn", "1"),
        ("hypercorn", "1"),
        ("granian", "1"),
    ],
)
def test_worker_count_follows_the_cpu_quota(app_image, containers, server, cpus):
    per_core = 3
    extra = [f"--cpus={cpus}"] if cpus else []
    container = containers.run(
        app_image("bookworm", "base"), env={"SERVER": server, "WORKERS_PER_CORE": str(per_core)}, extra=extra
    )
    assert container.wait_http("/")[0] == 200
    host_cpus = len(os.sched_getaffinity(0))
    cores = min(host_cpus, math.ceil(float(cpus))) if cpus else host_cpus
    want = expected_workers(per_core, cores)
    workers = count_workers(container, want)
    print(f"{server} --cpus={cpus}: {len(workers)} workers (want {want}): {workers}")
    assert len(workers) == want, f"{workers}\n{container.logs()}"


# --------------------------------------------------------------------------
# what Kubernetes relies on (deploy/kubernetes): a read-only root filesystem and
# an arbitrary UID, docker stop at any moment, a memory limit
# --------------------------------------------------------------------------
# OpenShift's restricted policy runs a container as a UID from the namespace's
# range, with group 0, whatever the image's USER says.
ARBITRARY_UID = 1000770000
READ_ONLY_ARBITRARY_UID = ["--read-only", "--tmpfs", "/tmp", "--user", f"{ARBITRARY_UID}:0"]
EARLY_STOP_BOUND = 5.0  # seconds; Docker sends SIGKILL at 10


@pytest.mark.parametrize("server", SERVERS)
def test_read_only_root_and_an_arbitrary_uid_serve_and_stop_gracefully(app_image, containers, server):
    container = containers.run(app_image("bookworm", "base"), env={"SERVER": server}, extra=READ_ONLY_ARBITRARY_UID)
    assert container.wait_http("/") == (200, hello_of("base"))
    ident = json.loads(http_get(container.port, "/id")[1])
    assert (ident["uid"], ident["gid"]) == (ARBITRARY_UID, 0), ident
    # the command of an exec probe (and of the image's HEALTHCHECK) works there too
    check = container.exec("python", "/start.py", "--healthcheck", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # start.py's private directory is in TMPDIR (/tmp), owned by the arbitrary UID
    tmp = container.exec("ls", "-ln", "/tmp").stdout
    print(f"{server}: /tmp holds\n{tmp}")
    assert any(
        line.split()[-1].startswith(f"asgi-start-{ARBITRARY_UID}-") and line.split()[2] == str(ARBITRARY_UID)
        for line in tmp.splitlines()[1:]
    ), tmp

    stop_seconds, result = stop_with_a_slow_request_in_flight(container)
    logs = container.logs()
    print(f"{server}: docker stop took {stop_seconds:.2f} s; in-flight request {result}")
    assert result.get("response") == (200, "slow done"), f"{result}\n{logs}"
    assert container.exit_code() == 0, logs
    assert stop_seconds < 9, f"stop took {stop_seconds:.1f} s (SIGKILL comes at 10 s)\n{logs}"
    # nothing tried to write outside /tmp (a warning would say so)
    assert "read-only file system" not in logs.lower(), logs


def sigterm_is_held_or_handled(container_name: str) -> bool:
    """Whether the container's PID 1 blocks or catches SIGTERM (start.py's first line blocks it).

    Before that line only the interpreter's own start-up has run, and a SIGTERM
    to PID 1 then is dropped by the kernel whatever a launcher does (README,
    Running on Kubernetes); the test starts its clock from there.
    """
    pid = docker("inspect", "-f", "{{.State.Pid}}", container_name).stdout.strip()
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = dict(line.split(":\t", 1) for line in status.splitlines() if line.startswith(("SigBlk", "SigCgt")))
    return any(int(masks.get(name, "0"), 16) & (1 << 14) for name in ("SigBlk", "SigCgt"))  # bit of SIGTERM (15)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.05)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("server", SERVERS)
def test_docker_stop_right_after_docker_run_returns_promptly(app_image, containers, server):
    """SIGTERM before the server is up (start.py planning, the server booting) must stop the container at once.

    Kubernetes does this whenever a pod is deleted while it starts (a rollout
    replaced again, a scale-down). The container's PID 1 ignores a signal it has
    no handler for, so a SIGTERM that comes too early could be lost and leave
    the kill timeout (Docker's 10 s, the grace period in Kubernetes) to end it.
    """
    image = app_image("bookworm", "base")
    runs = []
    for delay in (0.0, 0.1, 0.2):  # after start.py's first line ran in the container
        container = containers.run(image, env={"SERVER": server})
        deadline = time.monotonic() + 5
        while not sigterm_is_held_or_handled(container.name) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        listening = port_open(container.port)  # start.py binds Uvicorn's socket before the exec
        started = time.monotonic()
        docker("stop", container.name, timeout=30)
        seconds = time.monotonic() - started
        runs.append(
            {"delay": delay, "listening": listening, "stop_s": round(seconds, 2), "exit": container.exit_code()}
        )
        if seconds >= EARLY_STOP_BOUND:
            print(f"{server}: slow stop after {delay} s; logs:\n{container.logs()}")
    print(f"{server}: docker stop right after docker run: {runs}")
    slow = [run for run in runs if run["stop_s"] >= EARLY_STOP_BOUND]
    assert not slow, f"{server}: docker stop took {EARLY_STOP_BOUND} s or more: {runs}"


@pytest.mark.parametrize("server", SERVERS)
def test_worker_count_follows_the_memory_limit(app_image, containers, server):
    """contract-next.md, WORKER_MEMORY: at most memory limit / WORKER_MEMORY workers.

    512m / 200M is 2 (2.56 or 2.68, whether M is 2**20 or 10**6), against 4 x the
    host's CPUs (WORKERS_PER_CORE=4) without the memory cap.
    """
    image = app_image("bookworm", "base")
    env = {"SERVER": server, "WORKER_MEMORY": "200M", "WORKERS_PER_CORE": "4"}
    memory = ["--memory", "512m"]
    without_cap = expected_workers(4, len(os.sched_getaffinity(0)))
    assert without_cap > 2  # else this test could not tell

    result = containers.run_to_end(image, env=env, extra=memory, cmd=["python", "/start.py", "--dry-run"])
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    print(f"{server} --memory 512m WORKER_MEMORY=200M: --dry-run workers {plan['workers']} ({plan['workers_reason']})")
    assert plan["workers"] == 2, plan
    assert "memory" in plan["workers_reason"].lower(), plan["workers_reason"]

    container = containers.run(image, env=env, extra=memory)
    assert container.wait_http("/")[0] == 200
    workers = count_workers(container, 2)
    print(f"{server} --memory 512m WORKER_MEMORY=200M: {len(workers)} workers: {workers}")
    assert len(workers) == 2, f"{workers}\n{container.logs()}"
    # the summary line (`... | 2 workers = 512 MiB limit ÷ WORKER_MEMORY 200 MiB ...`), not a warning line
    summary = [line for line in container.logs().splitlines() if "asgi-start" in line and " workers = " in line]
    assert summary and "memory" in summary[0].lower(), f"the summary line should say memory decided:\n{summary}"


# --------------------------------------------------------------------------
# pre-start scripts in /app
# --------------------------------------------------------------------------
def test_failing_prestart_makes_the_container_exit_with_its_status(app_image, derived, containers):
    image = derived(
        "asgi-start-test:prestart-fails",
        f"FROM {app_image('bookworm', 'base')}\nCOPY prestart.sh /app/prestart.sh\n",
        {"prestart.sh": "#!/bin/sh\necho 'prestart: failing on purpose' >&2\nexit 3\n"},
    )
    result = containers.run_to_end(image, env={"PORT": str(free_port())}, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "failing on purpose" in result.stderr


def test_prestart_runs_before_the_server(app_image, derived, containers):
    image = derived(
        "asgi-start-test:prestart-ok",
        f"FROM {app_image('bookworm', 'base')}\nCOPY prestart.py /app/prestart.py\n",
        {"prestart.py": "import os\nopen('/tmp/prestart.ran', 'w').write(str(os.getuid()))\nprint('prestart ran')\n"},
    )
    container = containers.run(image)
    assert container.wait_http("/")[0] == 200
    assert container.exec("cat", "/tmp/prestart.ran").stdout == str(UID)
    assert "prestart ran" in container.logs()


# --------------------------------------------------------------------------
# the app's own dependencies in a derived image
# --------------------------------------------------------------------------
REQUIREMENTS_DOCKERFILE = """\
FROM {base}
USER root
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
USER 10001:10001
COPY app /app
"""

PYPROJECT_DEPS_DOCKERFILE = """\
FROM {base}
USER root
COPY pyproject.toml /app/pyproject.toml
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('/app/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \\
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
USER 10001:10001
COPY app /app/app
"""

PYPROJECT_INSTALL_DOCKERFILE = """\
FROM {base}
USER root
COPY . /tmp/src
RUN pip install /tmp/src && rm -rf /tmp/src
USER 10001:10001
ENV APP_MODULE=myservice.main:app
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "myservice"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["itsdangerous==2.2.0"]

[tool.setuptools]
packages = ["myservice"]
"""


def check_dependency_image(image: str, containers) -> None:
    container = containers.run(image)
    assert container.wait_http("/") == (200, hello_of("base"))
    assert http_get(container.port, "/dist?name=itsdangerous") == (200, "2.2.0")
    where = container.exec("python", "-c", "import itsdangerous; print(itsdangerous.__file__)").stdout
    assert where.startswith("/opt/venv/"), where
    result = containers.run_to_end(image, extra=["--user", "0", "--entrypoint", "sh"], cmd=["-c", NO_BUILD_TOOLS])
    assert result.returncode == 0, result.stdout + result.stderr


def test_requirements_txt_pattern(images, derived, containers):
    base = images.get("bookworm", "base")
    image = derived(
        "asgi-start-test:pattern-requirements",
        REQUIREMENTS_DOCKERFILE.format(base=base),
        {"requirements.txt": "itsdangerous==2.2.0\n", **app_files("base")},
    )
    check_dependency_image(image, containers)


def test_pyproject_dependencies_pattern(images, derived, containers):
    base = images.get("bookworm", "base")
    image = derived(
        "asgi-start-test:pattern-pyproject-deps",
        PYPROJECT_DEPS_DOCKERFILE.format(base=base),
        {"pyproject.toml": PYPROJECT, **app_files("base")},  # app/main.py -> /app/app/main.py: module app.main
    )
    check_dependency_image(image, containers)


def test_pyproject_installed_project_pattern(images, derived, containers):
    base = images.get("bookworm", "base")
    image = derived(
        "asgi-start-test:pattern-pyproject-install",
        PYPROJECT_INSTALL_DOCKERFILE.format(base=base),
        {
            "pyproject.toml": PYPROJECT,
            "myservice/__init__.py": "",
            "myservice/main.py": APPS / "raw" / "main.py",
        },
    )
    check_dependency_image(image, containers)


# --------------------------------------------------------------------------
# what is (not) in the images
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("suite", "target"), BUILDS, ids=BUILD_IDS)
def test_no_compiler_and_no_pip_cache(images, containers, suite, target):
    image = images.get(suite, target)
    result = containers.run_to_end(image, extra=["--user", "0", "--entrypoint", "sh"], cmd=["-c", NO_BUILD_TOOLS])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("suite", "target"), BUILDS, ids=BUILD_IDS)
def test_image_contents(images, containers, suite, target):
    image = images.get(suite, target)
    script = (
        "import importlib.metadata as m, json, os, sys\n"
        "names = ['gunicorn', 'uvicorn', 'uvicorn-worker', 'hypercorn', 'granian', 'watchfiles', 'uvloop', 'httptools',\n"
        "         'fastapi', 'starlette']\n"
        "found = {}\n"
        "for n in names:\n"
        "    try: found[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps({'dists': found, 'exe': sys.executable, 'files': sorted(os.listdir('/')),\n"
        "  'cwd': os.getcwd(), 'env': {k: os.environ.get(k) for k in ('PYTHONPATH', 'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE')}}))\n"
    )
    result = containers.run_to_end(image, cmd=["python", "-c", script])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    dists = info["dists"]
    assert dists["gunicorn"] == "27.0.1" and dists["uvicorn"] == "0.54.0"
    assert dists["uvicorn-worker"] == "0.4.0" and dists["hypercorn"] == "0.18.0"
    assert dists["granian"] == "2.8.7" and "watchfiles" in dists  # granian[reload]: WITH_RELOAD under SERVER=granian
    assert "uvloop" in dists and "httptools" in dists  # uvicorn[standard] on Debian
    assert ("fastapi" in dists) == (target == "fastapi")
    assert ("starlette" in dists) == (target in ("fastapi", "starlette"))
    assert info["exe"].startswith("/opt/venv/bin/python")
    # every server imports, Granian's compiled extension and the reloader it needs included
    imports = "import gunicorn, uvicorn, uvicorn_worker, hypercorn, granian, granian._granian, watchfiles"
    imported = containers.run_to_end(image, cmd=["python", "-c", imports])
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert info["cwd"] == "/app"
    assert info["env"] == {"PYTHONPATH": "/app", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    assert {"start.py", "gunicorn_conf.py", "hypercorn_conf.py"} <= set(info["files"])
    for name in ("start.py", "gunicorn_conf.py", "hypercorn_conf.py"):  # copied verbatim
        inside = containers.run_to_end(image, cmd=["cat", f"/{name}"]).stdout
        assert inside == (REPO / name).read_text(), name
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
    # start.py's bytecode, compiled at build time with a checked hash of the very start.py beside it
    assert config["Cmd"] == ["python", "/start.pyc"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "/start.pyc", "--healthcheck"]
    assert "start.pyc" in info["files"]
    check = (
        "import _imp, importlib.util as u\n"
        "header, source = open('/start.pyc', 'rb').read(16), open('/start.py', 'rb').read()\n"
        "assert header[:4] == u.MAGIC_NUMBER and header[4] == 3, header\n"  # hash-based, checked
        "assert header[8:16] == u.source_hash(source)\n"
    )
    assert containers.run_to_end(image, cmd=["python", "-c", check]).returncode == 0
    assert "80/tcp" in config["ExposedPorts"]
    assert config["Labels"]["org.opencontainers.image.title"] == "asgi-start"


def test_image_sizes_are_recorded(images):
    """Builds every image of BUILDS (if no test did yet) and prints the size table."""
    for suite, target in BUILDS:
        images.get(suite, target)
    REPORT.setdefault("bases", {})
    for suite in ("bookworm", "trixie"):
        REPORT["bases"][f"asgi-start-standin:{suite}"] = image_size(standin(suite))
    lines = []
    for suite, target in BUILDS:
        tag = f"asgi-start-test:{suite}-{target}"
        size = image_size(tag)
        base = REPORT["bases"][f"asgi-start-standin:{suite}"]
        lines.append(f"{tag}: {size / 1e6:.1f} MB ({(size - base) / 1e6:.1f} MB over the stand-in base)")
        assert size - base < 150e6, lines[-1]  # the venv and user only
    print("\n".join(lines))


# --------------------------------------------------------------------------
# start.py alone on Python 3.9 (bullseye), servers unpinned, no Dockerfile
# --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def py39_image(engine, tmp_path_factory):
    base = standin("bullseye")
    tag = "asgi-start-test:bullseye-py39"
    context = tmp_path_factory.mktemp("py39")
    dockerlib.build(tag, context, dockerfile=HERE / "py39.Dockerfile", build_args={"BASE_IMAGE": base})
    return tag


def project_test_dirs() -> list[str]:
    """tests/unit and tests/e2e of the launcher, where they hold tests (else the placeholder)."""
    return [f"/src/tests/{name}" for name in ("unit", "e2e") if list((REPO / "tests" / name).glob("test_*.py"))]


def test_py39_runs_the_launcher_unit_and_e2e_tests(py39_image, containers):
    dirs = project_test_dirs()
    if not dirs:
        pytest.skip("tests/unit and tests/e2e hold no tests yet")
    result = containers.run_to_end(
        py39_image,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        extra=["-v", f"{REPO}:/src:ro", "-w", "/tmp"],
        cmd=["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=short", "-rfEs", *dirs],
        timeout=900,
    )
    print(f"python3 -m pytest {' '.join(dirs)} (Python 3.9):\n{result.stdout[-3000:]}")
    failures = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, (
        "the launcher's tests fail on Python 3.9 (servers as pip resolves them there):\n"
        + "\n".join(failures)  # the -rfEs summary's skip lines would push them out of the tail below
        + f"\n{result.stdout[-5000:]}{result.stderr[-2000:]}"
    )


PY39_NO_GRANIAN = (
    "Granian's last release for Python 3.9 (2.5.7) lacks --ssl-protocol-min and at times hangs on SIGTERM; "
    "py39.Dockerfile installs no Granian"
)


@pytest.mark.parametrize(
    "server",
    [pytest.param(s, marks=pytest.mark.skip(reason=PY39_NO_GRANIAN)) if s == "granian" else s for s in SERVERS],
)
def test_py39_starts_each_server(py39_image, containers, server):
    container = containers.run(
        py39_image,
        env={"SERVER": server},
        extra=["-v", f"{REPO}:/src:ro", "-v", f"{APPS / 'raw'}:/app:ro", "-w", "/app"],
        cmd=["python3", "/src/start.py"],
    )
    assert container.wait_http("/") == (200, hello_of("base"))
    assert json.loads(http_get(container.port, "/id")[1])["python"].startswith("3.9.")
    docker("stop", container.name, timeout=30)
    assert container.exit_code() == 0, container.logs()
