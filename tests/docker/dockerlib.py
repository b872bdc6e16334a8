"""Helpers for the image tests: drive the docker CLI, build images, run containers.

Every container runs with --network host and every request goes to 127.0.0.1.
Every container is labelled ``asgi-start-test`` and removed again.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
APPS = HERE / "apps"
LABEL = "asgi-start-test"
DOCKER = os.environ.get("DOCKER") or ("/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker")

ENABLED = os.environ.get("ASGI_START_DOCKER") == "1"
SKIP_REASON = (
    "image tests need a Docker engine: run `bash tests/docker/run.sh` "
    "(or set ASGI_START_DOCKER=1 with DOCKER_HOST pointing at an engine)"
)
# stand-in base images (tests/docker/standins.sh): Debian suite -> its Python
STANDINS = {"bookworm": "3.11", "trixie": "3.13", "bullseye": "3.9"}

# What the session built and measured; printed by conftest.pytest_terminal_summary.
REPORT: dict[str, dict] = {"builds": {}, "sizes": {}}
_build_lock = threading.Lock()


class DockerError(AssertionError):
    pass


def docker(
    *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "1"
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=env, input=input, check=False
    )
    if check and result.returncode != 0:
        raise DockerError(
            f"docker {' '.join(args)} -> {result.returncode}\n"
            f"--- stdout (tail)\n{result.stdout[-4000:]}\n--- stderr (tail)\n{result.stderr[-4000:]}"
        )
    return result


def engine_available() -> str | None:
    """None when the engine answers, else why not."""
    if not os.environ.get("DOCKER_HOST"):
        return "DOCKER_HOST is not set (tests/docker/run.sh starts a private engine and sets it)"
    try:
        result = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{DOCKER}: {exc}"
    if result.returncode != 0:
        return f"no engine at {os.environ['DOCKER_HOST']}: {result.stderr.strip()}"
    return None


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())


def build(
    tag: str,
    context: Path,
    *,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
    dockerfile: Path | None = None,
    record: bool = True,
) -> float:
    """docker build (BuildKit, host network: the engine has no bridge); returns the seconds it took."""
    args = ["build", "--network", "host", "--progress", "plain", "-t", tag]
    if target:
        args += ["--target", target]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if dockerfile:
        args += ["-f", str(dockerfile)]
    args.append(str(context))
    started = time.monotonic()
    docker(*args, timeout=1200)
    seconds = time.monotonic() - started
    if record:
        with _build_lock:
            REPORT["builds"][tag] = seconds
            REPORT["sizes"][tag] = image_size(tag)
    return seconds


def derived_image(tag: str, dockerfile: str, files: dict[str, str | Path], workdir: Path) -> str:
    """Build `tag` from a Dockerfile text and a context of files (text, or a path to copy)."""
    context = workdir / f"ctx-{tag.replace(':', '-').replace('/', '-')}"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_text(content)
        if name.endswith(".sh"):
            target.chmod(0o755)
    build(tag, context)
    return tag


_standin_lock = threading.Lock()


def standin(suite: str) -> str:
    """The stand-in base image for a Debian suite, made (from the cache when possible) if missing."""
    tag = f"asgi-start-standin:{suite}"
    with _standin_lock:
        if not image_exists(tag):
            subprocess.run(["bash", str(HERE / "standins.sh"), suite], check=True, timeout=1800)
    return tag


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class Container:
    """One `docker run -d --network host` container; see Containers."""

    def __init__(self, name: str, port: int | None) -> None:
        self.name = name
        self.port = port

    def state(self, field: str) -> str:
        return docker("inspect", "-f", "{{" + field + "}}", self.name).stdout.strip()

    def running(self) -> bool:
        return self.state(".State.Running") == "true"

    def exit_code(self) -> int:
        return int(self.state(".State.ExitCode"))

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def exec(self, *cmd: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["exec"]
        if user:
            args += ["--user", user]
        return docker(*args, self.name, *cmd, check=check)

    def wait_http(self, path: str = "/", timeout: float = 45) -> tuple[int, str]:
        """Poll 127.0.0.1:port until it answers; fail early with the logs if the container died."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return http_get(self.port, path, timeout=5)
            except OSError as exc:
                last = exc
            if not self.running():
                raise AssertionError(
                    f"container {self.name} exited ({self.exit_code()}) before serving:\n{self.logs()}"
                )
            time.sleep(0.2)
        raise AssertionError(f"no answer on 127.0.0.1:{self.port}{path} within {timeout} s ({last}):\n{self.logs()}")

    def wait_exit(self, timeout: float = 60) -> int:
        return int(docker("wait", self.name, timeout=timeout).stdout.strip())

    def children_of_pid1(self) -> list[tuple[int, str]]:
        """(pid, cmdline) of every process whose parent is PID 1, read from /proc inside the container."""
        script = (
            "import json, os\n"
            "out = []\n"
            "for p in os.listdir('/proc'):\n"
            "    if not p.isdigit(): continue\n"
            "    try:\n"
            "        stat = open('/proc/%s/stat' % p).read()\n"
            "        cmd = open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
            "    except OSError: continue\n"
            "    if int(stat.rsplit(')', 1)[1].split()[1]) == 1: out.append((int(p), cmd))\n"
            "print(json.dumps(sorted(out)))\n"
        )
        return [tuple(x) for x in json.loads(self.exec("python", "-c", script).stdout)]  # type: ignore[misc]

    def pid1_cmdline(self) -> str:
        return self.exec(
            "python", "-c", "print(open('/proc/1/cmdline','rb').read().replace(b'\\0',b' ').decode())"
        ).stdout.strip()


class Containers:
    """Runs containers for one test and removes every one of them afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def _args(self, image: str, env: dict[str, str] | None, extra: list[str] | None, name: str) -> list[str]:
        args = ["--network", "host", "--label", LABEL, "--name", name]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        return [*args, *(extra or []), image]

    def run(
        self,
        image: str,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        cmd: list[str] | None = None,
        port: int | None = None,
    ) -> Container:
        """docker run -d; PORT is set to a free port unless env already names one (or port=0: none)."""
        env = dict(env or {})
        if port is None and "PORT" not in env:
            port = free_port()
            env["PORT"] = str(port)
        elif "PORT" in env:
            port = int(env["PORT"])
        name = f"{LABEL}-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        docker("run", "-d", *self._args(image, env, extra, name), *(cmd or []))
        return Container(name, port or None)

    def run_to_end(
        self,
        image: str,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        cmd: list[str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """docker run (attached) --rm; returns the finished process (returncode = the container's status)."""
        name = f"{LABEL}-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return docker("run", "--rm", *self._args(image, env, extra, name), *(cmd or []), check=False, timeout=timeout)

    def remove_all(self) -> None:
        existing = [n for n in self.names if docker("inspect", n, check=False).returncode == 0]
        if existing:
            docker("rm", "-f", *existing, check=False, timeout=60)
        self.names.clear()


def remove_labelled_containers() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False, timeout=60)
