"""The peers' highest-value drop-in cases, through the built `base` image (bookworm stand-in).

Run with `bash tests/docker/run.sh tests/docker/test_compat_images.py` (or with the whole of
tests/docker). It builds nothing of its own: it uses the `base` image that test_images.py uses
(conftest.Images builds it once per session) and mounts each case's /app from a directory the
test writes, read-only, so the image's user (10001) runs it exactly as a copied app.

- hypercorn-docker: `SERVER=hypercorn WORKER_CLASS=trio` serves (its test image), and
  `QUIC_BIND` with TLS serves HTTP/3 (the image carries trio and aioquic);
- tiangolo/uvicorn-gunicorn-docker: a user's own /app/gunicorn_conf.py that sets only bind,
  workers and loglevel serves an ASGI app with the Uvicorn worker; `MAX_WORKERS` caps
  `WEB_CONCURRENCY` (with a warning line); `GUNICORN_CMD_ARGS="--log-level debug"` gives debug records;
- inboard: `UVICORN_APP` names the app, `PROCESS_MANAGER` the server.

Every container runs with --network host and is reached on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path

import pytest
from dockerlib import ENABLED, SKIP_REASON, docker, free_port

pytestmark = [pytest.mark.docker, pytest.mark.skipif(not ENABLED, reason=SKIP_REASON)]

UID = 10001

# The app every case mounts at /app: which async library serves it, the scope's HTTP version
# and scheme, the worker's PID and user.
APP = """\
import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    import sniffio

    body = {
        "library": sniffio.current_async_library(),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "pid": os.getpid(),
        "uid": os.getuid(),
    }
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""

# A self-signed certificate made with the image's own cryptography (which aioquic brings).
MAKE_CERTIFICATE = """\
import datetime, ipaddress
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=2)).add_extension(san, critical=False)
    .sign(key, hashes.SHA256())
)
open("/out/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open("/out/key.pem", "wb").write(
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
)
"""

# One HTTP/3 GET with aioquic's client, run in a second container of the same image.
H3_GET = """\
import asyncio, json, ssl, sys
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

port = int(sys.argv[1])


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.headers, self.body = {}, b""
        self.ended = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event):
        for item in self.http.handle_event(event):
            if isinstance(item, HeadersReceived):
                self.headers.update(item.headers)
            elif isinstance(item, DataReceived):
                self.body += item.data
            if getattr(item, "stream_ended", False) and not self.ended.done():
                self.ended.set_result(None)


async def main():
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    async with connect("127.0.0.1", port, configuration=configuration, create_protocol=Client) as client:
        stream = client._quic.get_next_available_stream_id()
        client.http.send_headers(
            stream,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"), (b":path", b"/h3")],
            end_stream=True,
        )
        client.transmit()
        await client.ended
        return {"status": client.headers[b":status"].decode(), "body": json.loads(client.body)}


print(json.dumps(asyncio.run(asyncio.wait_for(main(), 20))))
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_image(images) -> str:
    return images.get("bookworm", "base")


def app_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    """A directory to mount at /app, readable by the image's user: main.py plus `files`."""
    directory = tmp_path / "app"
    directory.mkdir()
    for name, content in {"main.py": APP, **files}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


def mount(directory: Path) -> list[str]:
    return ["-v", f"{directory}:/app:ro"]


def workers_of_pid1(container, want: int, timeout: float = 30) -> list[tuple[int, str]]:
    """The children of PID 1 that are workers, once `want` of them exist (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = [(pid, cmd) for pid, cmd in container.children_of_pid1() if "tracker" not in cmd]
        if len(workers) >= want or time.monotonic() > deadline:
            return workers
        time.sleep(0.2)


def https_get(port: int, path: str = "/", timeout: float = 5) -> tuple[int, dict[str, str], str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def wait_https(container, port: int, timeout: float = 45) -> tuple[int, dict[str, str], str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return https_get(port)
        except (OSError, http.client.HTTPException):
            if not container.running():
                raise AssertionError(f"container exited ({container.exit_code()}):\n{container.logs()}") from None
            time.sleep(0.2)
    raise AssertionError(f"no HTTPS answer on 127.0.0.1:{port} within {timeout} s:\n{container.logs()}")


def udp_bound(port: int) -> bool:
    """Whether a UDP socket is bound to the port in this network namespace (the containers share it)."""
    for name in ("udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines):
            return True
    return False


def tcp_listening(port: int) -> bool:
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port and line.split()[3] == "0A" for line in lines):
            return True
    return False


def full_logs(container) -> str:
    """Everything the container printed (Container.logs keeps only the tail)."""
    result = docker("logs", container.name, check=False)
    return result.stdout + result.stderr


def stop_gracefully(container) -> None:
    docker("stop", container.name, timeout=30)
    assert container.exit_code() == 0, container.logs()


# --------------------------------------------------------------------------
# hypercorn-docker
# --------------------------------------------------------------------------
def test_hypercorn_trio_worker_serves(base_image, containers, tmp_path):
    """hypercorn-docker's test image: WORKER_CLASS=trio, TCP_PORT, USE_TCP=true."""
    port = free_port()
    container = containers.run(
        base_image,
        env={"SERVER": "hypercorn", "WORKER_CLASS": "trio", "USE_TCP": "true", "TCP_PORT": str(port)},
        extra=mount(app_dir(tmp_path, {})),
        port=0,
    )
    container.port = port
    status, body = container.wait_http("/")
    answer = json.loads(body)
    assert (status, answer["library"], answer["uid"]) == (200, "trio", UID), body
    assert "hypercorn" in container.pid1_cmdline()
    assert "hypercorn (trio)" in container.logs()
    stop_gracefully(container)


def test_hypercorn_quic_bind_with_tls_serves_http3(base_image, containers, tmp_path):
    port = free_port()
    directory = app_dir(tmp_path, {})
    made = containers.run_to_end(
        base_image,
        extra=["--user", "0", "-v", f"{directory}:/out"],
        cmd=["python", "-c", MAKE_CERTIFICATE],
        timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    for name in ("cert.pem", "key.pem"):
        (directory / name).chmod(0o644)
    container = containers.run(
        base_image,
        env={
            "SERVER": "hypercorn",
            "HOST": "127.0.0.1",
            "USE_SSL": "true",
            "USE_TCP": "false",
            "SSL_PORT": str(port),
            "CERTFILE": "/app/cert.pem",
            "KEYFILE": "/app/key.pem",
            "QUIC_BIND": f"127.0.0.1:{port}",
        },
        extra=mount(directory),
        port=0,
    )
    status, headers, body = wait_https(container, port)
    assert status == 200 and json.loads(body)["scheme"] == "https", body
    assert udp_bound(port), container.logs()  # the QUIC listener
    assert headers.get("alt-svc") == f'h3=":{port}"; ma=3600', headers
    assert f"Running on https://127.0.0.1:{port} (QUIC)" in container.logs()
    # a real HTTP/3 request, from aioquic's client in a second container of the same image
    client = containers.run_to_end(base_image, cmd=["python", "-c", H3_GET, str(port)], timeout=60)
    assert client.returncode == 0, client.stdout + client.stderr + container.logs()
    answer = json.loads(client.stdout)
    assert (answer["status"], answer["body"]["http_version"]) == ("200", "3"), answer
    # No `docker stop` here: with a QUIC listener Hypercorn 0.18 waits its whole graceful_timeout
    # (GRACEFUL_TIMEOUT, 120 s) before it exits (tests/compat/hypercorn_docker.md); the fixture
    # removes the container.


# --------------------------------------------------------------------------
# tiangolo/uvicorn-gunicorn-docker
# --------------------------------------------------------------------------
def test_users_gunicorn_conf_with_only_bind_workers_loglevel_serves_asgi(base_image, containers, tmp_path):
    """tiangolo's style: /app/gunicorn_conf.py sets bind, workers and loglevel, no worker_class.

    The Uvicorn worker still runs (WORKER_CLASS's default, as tiangolo's start.sh passed `-k`),
    and what the file sets wins: its bind, not PORT; its workers; its loglevel.
    """
    port, unused = free_port(), free_port()
    conf = f'bind = "127.0.0.1:{port}"\nworkers = 3\nloglevel = "debug"\n'
    container = containers.run(
        base_image, env={"PORT": str(unused)}, extra=mount(app_dir(tmp_path, {"gunicorn_conf.py": conf}))
    )
    container.port = port
    status, body = container.wait_http("/")
    assert (status, json.loads(body)["library"]) == (200, "asyncio"), body
    assert "gunicorn" in container.pid1_cmdline()
    assert len(workers_of_pid1(container, 3)) == 3
    assert not tcp_listening(unused)
    logs = full_logs(container)
    assert "Application startup complete" in logs, logs[-4000:]  # Uvicorn's worker ran the app's lifespan
    assert " DEBUG gunicorn.error [" in logs, logs[-4000:]
    stop_gracefully(container)


def test_max_workers_caps_web_concurrency_and_gunicorn_cmd_args_log_level(base_image, containers, tmp_path):
    container = containers.run(
        base_image,
        env={"WEB_CONCURRENCY": "3", "MAX_WORKERS": "2", "GUNICORN_CMD_ARGS": "--log-level debug"},
        extra=mount(app_dir(tmp_path, {})),
    )
    assert container.wait_http("/")[0] == 200
    workers_of_pid1(container, 2)
    time.sleep(1)  # and no third one comes (as test_images.count_workers)
    workers = workers_of_pid1(container, 2)
    assert len(workers) == 2, workers
    logs = full_logs(container)
    assert "WEB_CONCURRENCY=3 is above MAX_WORKERS=2; starting 2" in logs, logs[-4000:]
    # GUNICORN_CMD_ARGS wins over start.py's LOG_LEVEL (info): Gunicorn's debug records
    assert " DEBUG gunicorn.error [" in logs, logs[-4000:]
    stop_gracefully(container)


# --------------------------------------------------------------------------
# inboard
# --------------------------------------------------------------------------
def test_uvicorn_app_and_process_manager(base_image, containers, tmp_path):
    directory = app_dir(
        tmp_path, {"service/__init__.py": "", "service/api.py": APP.replace("async def app(", "async def api(")}
    )
    container = containers.run(
        base_image, env={"UVICORN_APP": "service.api:api", "PROCESS_MANAGER": "uvicorn"}, extra=mount(directory)
    )
    assert container.wait_http("/")[0] == 200
    assert "uvicorn" in container.pid1_cmdline()
    assert "app service.api:api" in container.logs()
    stop_gracefully(container)
