"""hypercorn-docker's behaviour, ported: `python start.py` with SERVER=hypercorn on 127.0.0.1.

The peer is mhadam/hypercorn-docker (forked from bynect/hypercorn-fastapi-docker, whose history
it keeps): `images/start.sh`, `images/start-reload.sh`, the config its images load
(`hypercorn_conf.py`, later `hypercorn/hypercorn_conf/config.py`), its `test/` image (FastAPI
under `WORKER_CLASS=trio` on `TCP_PORT=8000`) and the sample `test/hypercorn_conf.py`. Its CI
only builds and pushes the images. Every behaviour those files imply is listed, classified and
mapped to the test that covers it in tests/compat/hypercorn_docker.md.

Real processes, real sockets, real HTTP/1.1, TLS, HTTP/2 (ALPN) and HTTP/3 (QUIC, through
aioquic's client); every server is stopped by its PID and its process tree checked gone.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    START,
    Server,
    all_gone,
    as_python_m,
    clean_env,
    cmdline,
    descendants,
    dry_run,
    get_json,
    request,
    reserve_port,
    run_start,
    start_server,
    stop,
    wait_for_workers,
    wait_until_workers_serve,
)

pytestmark = pytest.mark.e2e

# The test app: which async library and loop serve it, the worker's PID, the scope's scheme and
# HTTP version; `/slow?seconds=N&name=X` leaves X.started in the app directory, then sleeps N s
# with the running library's own sleep (asyncio, uvloop or trio).
APP = """\
import json
import os
from urllib.parse import parse_qs


def runtime():
    import sniffio

    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        module = type(asyncio.get_running_loop()).__module__
        return "uvloop" if module.startswith("uvloop") else "asyncio"
    return library


async def sleep(seconds):
    if runtime() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


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
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/slow":
        open(query["name"][0] + ".started", "w").close()
        await sleep(float(query["seconds"][0]))
    body = {
        "pid": os.getpid(),
        "runtime": runtime(),
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
        "path": scope["path"],
        "from_prestart": os.environ.get("FROM_PRESTART"),
    }
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""

# hypercorn-docker's own test image (test/app/main.py): FastAPI, GET / -> {"message": "Test"};
# /library says which async library serves it (the test image sets WORKER_CLASS=trio).
FASTAPI_APP = """\
import sniffio
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Test"}


@app.get("/library")
async def library():
    return {"library": sniffio.current_async_library()}
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def app_dir_with(tmp_path: Path, source: str = APP, name: str = "main.py") -> Path:
    app_dir = tmp_path / "srv"
    (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (app_dir / name).write_text(source)
    return app_dir


def hypercorn_env(**env: str) -> dict[str, str]:
    """SERVER=hypercorn on 127.0.0.1, one worker and a free TCP_PORT unless the test says otherwise."""
    settings = {"SERVER": "hypercorn", "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"}
    if not {"PORT", "TCP_PORT", "BIND"} & env.keys():
        settings["TCP_PORT"] = str(reserve_port())
    settings.update(env)
    return clean_env(**{key: value for key, value in settings.items() if value is not None})


def start(servers: list, app_dir: Path, port: int | None = None, **env: str | None) -> Server:
    """start.py started for real; `port` (else TCP_PORT or PORT) is where the test talks to it."""
    environment = hypercorn_env(**env)
    port = port or int(environment.get("TCP_PORT") or environment.get("PORT") or 0)
    return start_server(servers, app_dir, environment, port=port)


def tls_context(*, tls12: bool = False, ciphers: str | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def proc_net_ports(kind: str, state: str | None = None) -> set[int]:
    """Local ports in /proc/net/<kind> and <kind>6, optionally only sockets in a given state (0A: LISTEN)."""
    ports = set()
    for name in (kind, kind + "6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if state is None or fields[3] == state:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def tcp_listening(port: int) -> bool:
    return port in proc_net_ports("tcp", "0A")


def udp_bound(port: int) -> bool:
    return port in proc_net_ports("udp")


def listen_backlog(port: int) -> int:
    """A listening socket's accept-queue size, as the kernel reports it (ss's Send-Q for LISTEN)."""
    ss = shutil.which("ss")
    if not ss:
        pytest.skip("ss (iproute2) is not installed: it reads a listener's backlog")
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=30, check=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, out.stdout
    return int(rows[0][2])


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem (P-256, CN=localhost, SAN localhost and 127.0.0.1) in directory."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if not openssl:
            pytest.skip("neither the cryptography package nor the openssl command is installed")
        made = subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"),
                *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def tls_refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        handshake(port, context).close()
    except ssl.SSLError:
        return True
    return False


def in_thread(target) -> tuple[threading.Thread, list]:
    """target() in a daemon thread; its result, or the exception it raised, lands in the list."""
    results: list = []

    def run() -> None:
        try:
            results.append(target())
        except Exception as error:  # the test looks at it
            results.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def wait_for_file(path: Path, server: Server, deadline_s: float = 15) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared:\n{server.output()[-2000:]}"
        assert server.process.poll() is None, server.output()[-2000:]
        time.sleep(0.02)


def refused(app_dir: Path, **env: str) -> str:
    """start.py refuses the environment: exit 2, one line per problem, no traceback, nothing started."""
    result = run_start([], hypercorn_env(**env), app_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", result.stderr
    return result.stderr


def h3_get(port: int, path: str) -> tuple[dict[bytes, bytes], bytes]:
    """One HTTP/3 GET over QUIC with aioquic's client (the certificate is not verified)."""
    client_module = pytest.importorskip("aioquic.asyncio.client")
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration

    class H3Client(QuicConnectionProtocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.http = H3Connection(self._quic)
            self.headers: dict[bytes, bytes] = {}
            self.body = b""
            self.ended = asyncio.get_running_loop().create_future()

        def quic_event_received(self, event) -> None:
            for item in self.http.handle_event(event):
                if isinstance(item, HeadersReceived):
                    self.headers.update(item.headers)
                elif isinstance(item, DataReceived):
                    self.body += item.data
                if getattr(item, "stream_ended", False) and not self.ended.done():
                    self.ended.set_result(None)

        async def get(self) -> tuple[dict[bytes, bytes], bytes]:
            stream_id = self._quic.get_next_available_stream_id()
            headers = [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", f"127.0.0.1:{port}".encode()),
                (b":path", path.encode()),
            ]
            self.http.send_headers(stream_id, headers, end_stream=True)
            self.transmit()
            await self.ended
            return self.headers, self.body

    async def main() -> tuple[dict[bytes, bytes], bytes]:
        configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
        async with client_module.connect(
            "127.0.0.1", port, configuration=configuration, create_protocol=H3Client
        ) as client:
            return await client.get()  # type: ignore[attr-defined]

    return asyncio.run(asyncio.wait_for(main(), 20))


# --------------------------------------------------------------------------
# 1. the peer's test image: FastAPI under WORKER_CLASS=trio on TCP_PORT, USE_TCP=true
# --------------------------------------------------------------------------
def test_the_peers_test_image_fastapi_under_trio_on_tcp_port(servers, tmp_path):
    pytest.importorskip("fastapi")
    app_dir = app_dir_with(tmp_path, FASTAPI_APP)
    server = start(servers, app_dir, WORKER_CLASS="trio", USE_TCP="true", WEB_CONCURRENCY=None)
    assert server.wait_answer()[::2] == (200, '{"message":"Test"}')
    assert get_json(server.port, "/library") == {"library": "trio"}
    # the default worker count (the CPUs × WORKERS_PER_CORE 1, at least 2)
    planned = dry_run(clean_env(SERVER="hypercorn", WORKER_CLASS="trio"), app_dir)["workers"]
    assert planned >= 2
    assert len(wait_for_workers(server.pid, planned)) == planned
    stop(server)


# --------------------------------------------------------------------------
# 2. WORKER_CLASS: asyncio (default), uvloop, trio; exec; graceful SIGTERM under each
# --------------------------------------------------------------------------
@pytest.mark.parametrize("worker_class", [None, "asyncio", "uvloop", "trio"])
def test_worker_class_serves_for_real_and_stops_gracefully(servers, tmp_path, worker_class):
    if worker_class in ("uvloop", "trio"):
        pytest.importorskip(worker_class)
    app_dir = app_dir_with(tmp_path)
    server = start(servers, app_dir, WORKER_CLASS=worker_class)
    server.wait_answer()
    assert get_json(server.port)["runtime"] == (worker_class or "asyncio")
    # start.py became Hypercorn (exec): the PID started is `python -m hypercorn`
    assert as_python_m(cmdline(server.pid))[1:3] == ["-m", "hypercorn"]
    # hypercorn-docker printed its settings as JSON on every start; start.py prints one summary line
    output = server.output()
    assert f"hypercorn ({worker_class or 'asyncio'})" in output
    assert not [line for line in output.splitlines() if line.lstrip().startswith(("{", '"'))], output

    # SIGTERM while a request is in flight: it completes (the library's own sleep), exit 0
    thread, results = in_thread(lambda: get_json(server.port, "/slow?seconds=1&name=inflight"))
    wait_for_file(app_dir / "inflight.started", server)
    stop(server)
    thread.join(30)
    assert len(results) == 1 and isinstance(results[0], dict), results
    assert results[0]["runtime"] == (worker_class or "asyncio")


# --------------------------------------------------------------------------
# 3. TLS: USE_SSL on SSL_PORT beside plain HTTP on TCP_PORT (INSECURE_BIND), USE_TCP=false,
#    INSECURE_BIND given, CA_CERTS, CIPHERS' default, HTTP/2 by ALPN, BACKLOG's default
# --------------------------------------------------------------------------
def test_use_ssl_serves_tls_on_ssl_port_and_plain_http_on_tcp_port(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    cert, _ = self_signed_certificate(app_dir)
    ssl_port, tcp_port = reserve_port(), reserve_port()
    server = start(
        servers,
        app_dir,
        port=tcp_port,
        USE_SSL="true",
        CERTFILE="cert.pem",
        KEYFILE="key.pem",
        CA_CERTS="cert.pem",  # read as a CA bundle; client certificates are not required (as in the peer)
        SSL_PORT=str(ssl_port),
        TCP_PORT=str(tcp_port),
    )
    server.wait_answer(port=ssl_port, tls=tls_context())
    assert get_json(ssl_port, "/", tls=tls_context())["scheme"] == "https"
    assert get_json(tcp_port)["scheme"] == "http"  # USE_TCP defaults to true: INSECURE_BIND = HOST:TCP_PORT

    # HTTP/2 is negotiated by ALPN on the TLS listener (Hypercorn's own; the peer served it too)
    with handshake(ssl_port, tls_context(alpn=["h2", "http/1.1"])) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    # CIPHERS defaults to ECDHE+AESGCM: a TLS 1.2 client offering only ChaCha20 is refused
    assert tls_refused(ssl_port, tls_context(tls12=True, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305"))
    with handshake(ssl_port, tls_context(tls12=True, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")) as tls:
        assert tls.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    # BACKLOG defaults to 100 (the peer's default, Hypercorn's too), on both listeners
    assert listen_backlog(ssl_port) == listen_backlog(tcp_port) == 100
    stop(server)
    assert cert.exists()


def test_use_tcp_false_serves_tls_only(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    ssl_port, tcp_port = reserve_port(), reserve_port()
    server = start(
        servers,
        app_dir,
        port=ssl_port,
        USE_SSL="yes",
        USE_TCP="false",
        CERTFILE="cert.pem",
        KEYFILE="key.pem",
        SSL_PORT=str(ssl_port),
        TCP_PORT=str(tcp_port),
    )
    server.wait_answer(port=ssl_port, tls=tls_context())
    assert not tcp_listening(tcp_port)
    stop(server)


def test_insecure_bind_moves_the_plain_listener(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    ssl_port, tcp_port, insecure_port = reserve_port(), reserve_port(), reserve_port()
    server = start(
        servers,
        app_dir,
        port=insecure_port,
        USE_SSL="1",
        CERTFILE="cert.pem",
        KEYFILE="key.pem",
        SSL_PORT=str(ssl_port),
        TCP_PORT=str(tcp_port),
        INSECURE_BIND=f"127.0.0.1:{insecure_port}",
    )
    server.wait_answer(port=ssl_port, tls=tls_context())
    assert get_json(insecure_port)["scheme"] == "http"
    assert not tcp_listening(tcp_port)
    stop(server)


def test_certfile_without_use_ssl_is_tls_on_tcp_port_with_ciphers_and_backlog_set(servers, tmp_path):
    """The peer passed CERTFILE/KEYFILE to Hypercorn whatever USE_SSL said: TLS on HOST:TCP_PORT."""
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    server = start(servers, app_dir, CERTFILE="cert.pem", KEYFILE="key.pem", CIPHERS="ECDHE+CHACHA20", BACKLOG="37")
    server.wait_answer(tls=tls_context())
    assert get_json(server.port, "/", tls=tls_context())["scheme"] == "https"
    # CIPHERS set: now ChaCha20 is what a TLS 1.2 client gets, and AES-GCM alone is refused
    with handshake(server.port, tls_context(tls12=True)) as tls:
        assert "CHACHA20" in tls.cipher()[0]
    assert tls_refused(server.port, tls_context(tls12=True, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert listen_backlog(server.port) == 37
    stop(server)


# --------------------------------------------------------------------------
# 4. QUIC_BIND: HTTP/3 beside TLS, under asyncio and trio
# --------------------------------------------------------------------------
@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_quic_bind_serves_http3(servers, tmp_path, worker_class):
    pytest.importorskip("aioquic")
    if worker_class == "trio":
        pytest.importorskip("trio")
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    port = reserve_port()
    assert not udp_bound(port)
    server = start(
        servers,
        app_dir,
        port=port,
        WORKER_CLASS=worker_class,
        USE_SSL="true",
        USE_TCP="false",
        CERTFILE="cert.pem",
        KEYFILE="key.pem",
        SSL_PORT=str(port),
        QUIC_BIND=f"127.0.0.1:{port}",  # HTTP/3 on the TLS port's number, over UDP
        # Hypercorn 0.18 waits its whole graceful_timeout on SIGTERM when it has a QUIC listener
        # (also run directly), so keep the stop short here; see hypercorn_docker.md.
        GRACEFUL_TIMEOUT="1",
    )
    _, headers, _ = server.wait_answer(port=port, tls=tls_context())
    assert udp_bound(port)  # the QUIC listener is bound
    assert headers.get("alt-svc") == f'h3=":{port}"; ma=3600'  # and advertised on HTTPS responses
    h3_headers, body = h3_get(port, "/h3")
    assert h3_headers[b":status"] == b"200"
    answer = json.loads(body)
    assert (answer["http_version"], answer["path"], answer["runtime"]) == ("3", "/h3", worker_class)
    assert '"GET /h3 HTTP/3" 200' in server.output()
    stop(server)
    assert not udp_bound(port)


# --------------------------------------------------------------------------
# 5. KEEP_ALIVE (default 5) and GRACEFUL_TIMEOUT (default 120)
# --------------------------------------------------------------------------
def idle_close_seconds(port: int, bound_s: float = 30) -> float:
    """Seconds from the end of a keep-alive response until the server closes the idle connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        served = time.monotonic()
        assert conn.sock is not None
        conn.sock.settimeout(bound_s)
        assert conn.sock.recv(1) == b""  # closed by the server, within the bound (else TimeoutError)
        return time.monotonic() - served
    finally:
        conn.close()


def test_keep_alive_closes_idle_connections_after_its_seconds(servers, tmp_path):
    default = start(servers, app_dir_with(tmp_path / "default"))
    one = start(servers, app_dir_with(tmp_path / "one"), KEEP_ALIVE="1")
    default.wait_answer()
    one.wait_answer()
    default_thread, default_result = in_thread(lambda: idle_close_seconds(default.port))
    one_thread, one_result = in_thread(lambda: idle_close_seconds(one.port))
    one_thread.join(40)
    default_thread.join(40)
    assert isinstance(one_result[0], float) and one_result[0] >= 0.8, one_result
    assert isinstance(default_result[0], float) and default_result[0] >= 4.5, default_result  # 5 s, not 1
    stop(default)
    stop(one)


def test_graceful_timeout_120_lets_a_long_request_finish_and_a_short_one_cuts_it(servers, tmp_path):
    # the default, 120 s, against Hypercorn's own 3 s: a 4 s request in flight completes
    patient_dir = app_dir_with(tmp_path / "patient")
    patient = start(servers, patient_dir)
    # GRACEFUL_TIMEOUT=1: a 60 s request in flight is cut and the server stops
    hasty_dir = app_dir_with(tmp_path / "hasty")
    hasty = start(servers, hasty_dir, GRACEFUL_TIMEOUT="1")
    patient.wait_answer()
    hasty.wait_answer()
    patient_thread, patient_result = in_thread(lambda: get_json(patient.port, "/slow?seconds=4&name=long"))
    hasty_thread, hasty_result = in_thread(lambda: request(hasty.port, "/slow?seconds=60&name=long", timeout=60))
    wait_for_file(patient_dir / "long.started", patient)
    wait_for_file(hasty_dir / "long.started", hasty)
    trees = [patient.pid, *descendants(patient.pid), hasty.pid, *descendants(hasty.pid)]
    patient.process.send_signal(signal.SIGTERM)
    hasty.process.send_signal(signal.SIGTERM)
    assert hasty.process.wait(timeout=30) == 0, hasty.output()[-2000:]
    hasty_thread.join(30)
    # cut off: Hypercorn cancels the request and answers 500 (or the connection just closes)
    assert hasty_result and not (isinstance(hasty_result[0], tuple) and hasty_result[0][0] == 200), hasty_result
    assert patient.process.wait(timeout=30) == 0, patient.output()[-2000:]
    patient_thread.join(30)
    assert patient_result and isinstance(patient_result[0], dict), patient_result
    assert patient_result[0]["path"] == "/slow"
    assert all_gone(trees) == []


# --------------------------------------------------------------------------
# 6. worker counts: WEB_CONCURRENCY, WORKERS_PER_CORE, MAX_WORKERS, the CPUs seen
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WEB_CONCURRENCY": "3"}, 3),  # exact
        ({"WEB_CONCURRENCY": None, "WORKERS_PER_CORE": "2", "MAX_WORKERS": "1"}, 1),  # 2 × 2 CPUs, capped
        # intended difference (issue Drop-in): MAX_WORKERS caps WEB_CONCURRENCY too, with a warning;
        # hypercorn-docker started 3 here
        ({"WEB_CONCURRENCY": "3", "MAX_WORKERS": "2"}, 2),
    ],
    ids=["web-concurrency", "max-workers-caps-computed", "max-workers-caps-web-concurrency"],
)
def test_worker_count_is_real(servers, tmp_path, env, expected):
    app_dir = app_dir_with(tmp_path)
    server = start(servers, app_dir, **env)
    server.wait_answer()
    workers = wait_for_workers(server.pid, expected)
    assert len(workers) == expected, server.output()
    assert len(wait_until_workers_serve(f"http://127.0.0.1:{server.port}/", 1)) == 1
    if "MAX_WORKERS" in env and env.get("WEB_CONCURRENCY"):
        assert "WEB_CONCURRENCY=3 is above MAX_WORKERS=2; starting 2" in server.output()
    stop(server)


def test_worker_count_rules_as_planned(tmp_path):
    app_dir = app_dir_with(tmp_path)

    def workers(preexec_fn=None, **env: str | None) -> int:
        result = subprocess.run(
            [sys.executable, str(START), "--dry-run"],
            env=hypercorn_env(**{"WEB_CONCURRENCY": None, **env}),
            cwd=app_dir,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            preexec_fn=preexec_fn,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["workers"]

    cpus = len(os.sched_getaffinity(0))
    assert workers() == max(cpus, 2)  # WORKERS_PER_CORE 1 × the CPUs, at least 2
    assert workers(WORKERS_PER_CORE="0.5") == max(int(0.5 * cpus), 2)  # fractions, at least 2
    assert workers(WORKERS_PER_CORE="3", MAX_WORKERS="4") == min(max(3 * cpus, 2), 4)
    # intended difference: the CPUs start.py may use, not the machine's (the peer used
    # multiprocessing.cpu_count(), which ignores CPU affinity and cgroup quotas)
    one_cpu = min(os.sched_getaffinity(0))
    assert workers(lambda: os.sched_setaffinity(0, {one_cpu}), WORKERS_PER_CORE="3") == 3


# --------------------------------------------------------------------------
# 7. logs: LOG_LEVEL, ACCESS_LOG, ERROR_LOG (files, "-", empty = off)
# --------------------------------------------------------------------------
def test_access_log_and_error_log_go_to_files(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    server = start(servers, app_dir, ACCESS_LOG="access.log", ERROR_LOG="error.log")
    server.wait_answer()
    request(server.port, "/?to-the-file")
    stop(server)
    access = (app_dir / "access.log").read_text()
    error = (app_dir / "error.log").read_text()
    assert '"GET /?to-the-file HTTP/1.1" 200' in access
    assert f"Running on http://127.0.0.1:{server.port}" in error
    assert "to-the-file" not in server.output() and "Running on" not in server.output()


def test_empty_access_and_error_logs_are_off_and_log_level_applies(servers, tmp_path):
    quiet = start(servers, app_dir_with(tmp_path / "quiet"), ACCESS_LOG="", ERROR_LOG="")
    chatty = start(servers, app_dir_with(tmp_path / "chatty"), LOG_LEVEL="WARNING")
    quiet.wait_answer()
    chatty.wait_answer()
    request(quiet.port, "/?quiet")
    request(chatty.port, "/?chatty")
    stop(quiet)
    stop(chatty)
    server_lines = [line for line in quiet.output().splitlines() if " asgi-start [" not in line]
    assert server_lines == [], server_lines  # neither access nor error records
    chatty_output = chatty.output()
    # LOG_LEVEL=warning: Hypercorn's info records are gone. Intended difference: the access log is
    # its own switch (ACCESS_LOG) under every server; in hypercorn-docker Hypercorn gave its
    # loglevel to hypercorn.access too, so LOG_LEVEL=warning also silenced the access log
    assert "Running on" not in chatty_output, chatty_output
    assert '"GET /?chatty HTTP/1.1" 200' in chatty_output


# --------------------------------------------------------------------------
# 8. which app: app/main.py before main.py, MODULE_NAME, VARIABLE_NAME, APP_MODULE
# --------------------------------------------------------------------------
def test_app_main_is_found_before_main(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)  # main.py
    (app_dir / "app").mkdir()
    (app_dir / "app" / "main.py").write_text(APP.replace('"runtime": runtime()', '"runtime": "app.main"'))
    server = start(servers, app_dir)
    server.wait_answer()
    assert get_json(server.port)["runtime"] == "app.main"
    stop(server)


def test_module_name_variable_name_and_app_module(tmp_path):
    app_dir = app_dir_with(tmp_path)
    (app_dir / "custom").mkdir()
    (app_dir / "custom" / "api.py").write_text("async def api(scope, receive, send):\n    pass\n")
    assert dry_run(hypercorn_env(), app_dir)["app_module"] == "main:app"
    env = hypercorn_env(MODULE_NAME="custom.api", VARIABLE_NAME="api")
    assert dry_run(env, app_dir)["app_module"] == "custom.api:api"
    env = hypercorn_env(APP_MODULE="custom.api:api", MODULE_NAME="main")
    assert dry_run(env, app_dir)["app_module"] == "custom.api:api"


# --------------------------------------------------------------------------
# 9. HYPERCORN_CONF and the user's own hypercorn_conf.py
# --------------------------------------------------------------------------
# What a hypercorn-docker user may have in /app/hypercorn_conf.py: a complete config in the style
# of the peer's test/hypercorn_conf.py (reads the environment itself, prints its settings).
PEER_STYLE_CONFIG = """\
import json
import os

host = os.getenv("HOST", "0.0.0.0")
tcp_port = os.getenv("TCP_PORT", "80")
bind = "{}:{}".format(host, tcp_port)
workers = int(os.getenv("WEB_CONCURRENCY", "2"))
loglevel = os.getenv("LOG_LEVEL", "info")
accesslog = os.getenv("ACCESS_LOG", "-") or None
errorlog = os.getenv("ERROR_LOG", "-") or None
graceful_timeout = int(os.getenv("GRACEFUL_TIMEOUT", "120"))
keep_alive_timeout = int(os.getenv("KEEP_ALIVE", "5"))
include_server_header = False
print(json.dumps({"bind": bind, "workers": workers}), flush=True)
"""


def test_a_peer_style_hypercorn_conf_in_the_app_directory_is_used(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    (app_dir / "hypercorn_conf.py").write_text(PEER_STYLE_CONFIG)
    server = start(servers, app_dir, WEB_CONCURRENCY="2")
    status, headers, _ = server.wait_answer()
    assert status == 200 and "server" not in headers  # include_server_header = False: the file ran
    assert len(wait_for_workers(server.pid, 2)) == 2
    assert f'{{"bind": "127.0.0.1:{server.port}", "workers": 2}}' in server.output()
    assert f"config file:{app_dir / 'hypercorn_conf.py'}" in server.output()
    stop(server)


@pytest.mark.parametrize(
    ("file_name", "hypercorn_conf", "content"),
    [
        ("hypercorn_conf.py", None, "include_server_header = False\n"),
        ("app/hypercorn_conf.py", None, "include_server_header = False\n"),
        ("conf/custom.py", "file:conf/custom.py", "include_server_header = False\n"),
        ("conf/custom.py", "conf/custom.py", "include_server_header = False\n"),  # the peer needed file:
        ("conf/hypercorn.toml", "conf/hypercorn.toml", "include_server_header = false\n"),
        ("myconf.py", "python:myconf", "include_server_header = False\n"),
    ],
    ids=["app-dir", "app-app-dir", "file-prefix", "bare-py-path", "toml", "python-module"],
)
def test_a_users_config_file_is_layered_over_start_pys_settings(servers, tmp_path, file_name, hypercorn_conf, content):
    """What the user's file sets wins; start.py's bind, workers and logging still apply (issue Drop-in)."""
    app_dir = app_dir_with(tmp_path)
    (app_dir / file_name).parent.mkdir(parents=True, exist_ok=True)
    (app_dir / file_name).write_text(content)
    server = start(servers, app_dir, WEB_CONCURRENCY="2", HYPERCORN_CONF=hypercorn_conf)
    status, headers, _ = server.wait_answer()
    assert status == 200 and "server" not in headers, headers  # the user's setting
    assert len(wait_for_workers(server.pid, 2)) == 2  # start.py's worker count
    request(server.port, "/?layered")
    stop(server)
    # start.py's logging: its access-log shape and text format
    assert '"GET /?layered HTTP/1.1" 200' in server.output()
    assert " INFO hypercorn.access [" in server.output()


def test_config_search_order(tmp_path):
    """./hypercorn_conf.py, then app/hypercorn_conf.py, then the default beside start.py.

    Intended difference: bynect's start.sh looked in app/ first; tiangolo's (and cormorack's
    hypercorn-docker) in the app directory first, as start.py does for both servers' files.
    """
    app_dir = app_dir_with(tmp_path)
    assert dry_run(hypercorn_env(), app_dir)["config_file"].endswith("/hypercorn_conf.py")
    (app_dir / "app").mkdir()
    (app_dir / "app" / "hypercorn_conf.py").write_text("workers = 1\n")
    assert dry_run(hypercorn_env(), app_dir)["config_file"] == f"file:{app_dir / 'app' / 'hypercorn_conf.py'}"
    (app_dir / "hypercorn_conf.py").write_text("workers = 1\n")
    assert dry_run(hypercorn_env(), app_dir)["config_file"] == f"file:{app_dir / 'hypercorn_conf.py'}"


# --------------------------------------------------------------------------
# 10. the pre-start script
# --------------------------------------------------------------------------
def test_prestart_sh_runs_before_the_server_in_a_child_shell(servers, tmp_path):
    app_dir = app_dir_with(tmp_path)
    port = reserve_port()
    (app_dir / "prestart.sh").write_text(
        "echo 'Inside the prestart script'\n"
        "export FROM_PRESTART=sourced\n"
        f'python3 -c \'import socket; s = socket.socket(); print("port free:", s.connect_ex(("127.0.0.1", {port})) != 0)\''
        " > prestart.out\n"
    )
    server = start(servers, app_dir, TCP_PORT=str(port))
    server.wait_answer()
    assert (app_dir / "prestart.out").read_text() == "port free: True\n"  # it ran before the server bound
    assert "Inside the prestart script" in server.output()
    assert "running pre-start script" in server.output()  # the peer echoed "Running script …"
    # intended difference: run with sh in a child, not sourced, so its exports do not reach the server
    assert get_json(server.port)["from_prestart"] is None
    stop(server)
    # PRE_START_PATH names another script (the peer's variable, unchanged)
    (app_dir / "scripts").mkdir()
    (app_dir / "scripts" / "before.sh").write_text("true\n")
    plan = dry_run(hypercorn_env(PRE_START_PATH="scripts/before.sh"), app_dir)
    assert plan["prestart"] == str(app_dir / "scripts" / "before.sh")


# --------------------------------------------------------------------------
# 11. what the peer accepted, and start.py's answer to it (planned, nothing started)
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "tls"),
    [
        *[("true", True), ("True", True), ("YES", True), ("y", True), ("1", True)],
        *[("false", False), ("No", False), ("N", False), ("0", False)],
    ],
)
def test_booleans_are_the_peers_words_in_any_case(tmp_path, value, tls):
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    env = hypercorn_env(USE_SSL=value, CERTFILE="cert.pem", KEYFILE="key.pem", TCP_PORT="8080", SSL_PORT="8443")
    assert dry_run(env, app_dir)["bind"] == (["127.0.0.1:8443", "127.0.0.1:8080"] if tls else ["127.0.0.1:8080"])


def test_defaults_of_the_peers_listeners(tmp_path):
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    env = clean_env(SERVER="hypercorn")
    assert dry_run(env, app_dir)["bind"] == ["0.0.0.0:80"]  # HOST 0.0.0.0, TCP_PORT 80
    tls = dict(env, USE_SSL="true", CERTFILE="cert.pem", KEYFILE="key.pem")
    assert dry_run(tls, app_dir)["bind"] == ["0.0.0.0:443", "0.0.0.0:80"]  # SSL_PORT 443 + INSECURE_BIND
    assert dry_run(dict(env, BIND="127.0.0.1:9000"), app_dir)["bind"] == ["127.0.0.1:9000"]
    # the peer's README said one of USE_SSL and USE_TCP must be true; its code served plain HTTP anyway
    assert dry_run(dict(env, USE_SSL="false", USE_TCP="false"), app_dir)["bind"] == ["0.0.0.0:80"]
    # TCP_PORT is PORT's other name
    assert dry_run(dict(env, TCP_PORT="8081"), app_dir)["bind"] == ["0.0.0.0:8081"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"WORKER_CLASS": "gevent"}, "WORKER_CLASS", id="worker-class"),  # peer: AssertionError
        pytest.param({"USE_SSL": "on"}, "USE_SSL", id="not-a-boolean"),  # peer: TypeError traceback
        pytest.param({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY", id="no-workers"),  # peer: AssertionError
        pytest.param({"KEEP_ALIVE": "five"}, "KEEP_ALIVE", id="keep-alive"),  # peer: ValueError traceback
        pytest.param({"BACKLOG": "-1"}, "BACKLOG", id="backlog"),
        pytest.param({"LOG_LEVEL": "verbose"}, "LOG_LEVEL", id="log-level"),  # peer: ValueError in Hypercorn
        # intended differences: the peer took these as "at least 2" and "no cap"
        pytest.param({"WORKERS_PER_CORE": "0"}, "WORKERS_PER_CORE", id="workers-per-core-zero"),
        pytest.param({"MAX_WORKERS": "0"}, "MAX_WORKERS", id="max-workers-zero"),
        # intended difference: the peer said "There is no script" and went on
        pytest.param({"PRE_START_PATH": "missing.sh"}, "PRE_START_PATH", id="missing-prestart"),
        # intended difference: the peer served plain HTTP on SSL_PORT (443) without a certificate
        pytest.param({"USE_SSL": "true"}, "USE_SSL", id="use-ssl-without-certificate"),
        pytest.param({"QUIC_BIND": "127.0.0.1:8443"}, "QUIC_BIND", id="quic-without-tls"),
        # the peer's assertion, kept where both listeners would collide
        pytest.param(
            {"USE_SSL": "true", "CERTFILE": "main.py", "KEYFILE": "main.py", "SSL_PORT": "8080", "TCP_PORT": "8080"},
            "SSL_PORT",
            id="ssl-port-is-tcp-port",
        ),
    ],
)
def test_what_the_peer_crashed_on_or_ignored_is_an_error_naming_the_variable(tmp_path, env, named):
    app_dir = app_dir_with(tmp_path)
    err = refused(app_dir, **env)
    assert named in err, err


def test_no_app_is_an_error_before_anything_runs(tmp_path):
    """The peer exported APP_MODULE=":app" when neither app/main.py nor main.py existed, and Hypercorn failed."""
    empty = tmp_path / "srv"
    empty.mkdir()
    err = refused(empty)
    assert "no app found" in err and "APP_MODULE" in err, err


def test_ssl_port_may_equal_tcp_port_when_use_tcp_is_false(tmp_path):
    """Intended difference: the peer asserted SSL_PORT != TCP_PORT whenever USE_SSL was set."""
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    env = hypercorn_env(
        USE_SSL="true", USE_TCP="false", CERTFILE="cert.pem", KEYFILE="key.pem", SSL_PORT="8080", TCP_PORT="8080"
    )
    assert dry_run(env, app_dir)["bind"] == ["127.0.0.1:8080"]


def test_use_tcp_false_with_insecure_bind_is_refused(tmp_path):
    """hypercorn-docker opened no plain listener with USE_TCP=false; start.py refuses the contradiction
    (before, it opened INSECURE_BIND's plain listener all the same)."""
    app_dir = app_dir_with(tmp_path)
    self_signed_certificate(app_dir)
    env = {
        "USE_SSL": "true",
        "USE_TCP": "false",
        "CERTFILE": "cert.pem",
        "KEYFILE": "key.pem",
        "SSL_PORT": "8443",
        "INSECURE_BIND": "127.0.0.1:8081",
    }
    result = run_start(["--dry-run"], hypercorn_env(**env), app_dir)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "asgi-start: error: INSECURE_BIND='127.0.0.1:8081' is a plain-HTTP listener and USE_TCP=false says there"
        " is none: unset one of them\n"
    )


def test_insecure_bind_without_tls_is_refused(tmp_path):
    """Without TLS Hypercorn ignores insecure_bind; start.py listed it as a listener all the same. Now refused."""
    app_dir = app_dir_with(tmp_path)
    env = hypercorn_env(TCP_PORT="8080", INSECURE_BIND="127.0.0.1:8081")
    result = run_start(["--dry-run"], env, app_dir)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("asgi-start: error: INSECURE_BIND='127.0.0.1:8081' is the plain-HTTP listener")
    assert result.stderr.count("\n") == 1
