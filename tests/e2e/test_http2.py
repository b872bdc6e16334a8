"""End to end: HTTP2=on|off under every server, through `python start.py`, asked with curl.

HTTP2=on: HTTP/2 over TLS by ALPN and prior-knowledge cleartext HTTP/2 (h2c), each
beside HTTP/1.1 on the same port; many streams served at once on one connection;
bodies of several MiB both ways, byte-exact. HTTP2=off: HTTP/1.1 only. Gunicorn runs
twice: with its default Uvicorn workers (Uvicorn's zttp HTTP/2 through the
launcher's worker class) and with its own `asgi` worker (Gunicorn's HTTP/2, h2c
from FORWARDED_ALLOW_IPS only). The app is tests/apps/fastapi.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import APPS, Server, clean_env, insecure_tls, reserve_port, run_start

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
# name: the environment that makes it, beside SERVER
VARIANTS = {
    "gunicorn": {"SERVER": "gunicorn"},
    "gunicorn-asgi": {"SERVER": "gunicorn", "WORKER_CLASS": "asgi"},
    "uvicorn": {"SERVER": "uvicorn"},
    "hypercorn": {"SERVER": "hypercorn"},
    "granian": {"SERVER": "granian"},
}
STREAMS = 24  # concurrent requests on one connection
BODY_MIB = 8


def curl_speaks_http2() -> str | None:
    if not CURL:
        return "curl is not installed (apt-get install -y curl)"
    features = subprocess.run([CURL, "-V"], capture_output=True, text=True, timeout=30, check=False).stdout
    return None if "HTTP2" in features else "this curl was built without HTTP/2"


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(curl_speaks_http2() is not None, reason=str(curl_speaks_http2()))]


def app_copy(directory: Path) -> Path:
    pytest.importorskip("fastapi")
    app_dir = directory / "srv"
    shutil.copytree(APPS / "fastapi", app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    return app_dir


MADE: dict[str, bytes] = {}  # one self-signed certificate and key for every server of this module


def certificate(directory: Path) -> tuple[str, str]:
    if not OPENSSL:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not MADE:
        command = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        command += ["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(command, capture_output=True, timeout=60, check=True)
        MADE.update(cert=cert.read_bytes(), key=key.read_bytes())
    cert.write_bytes(MADE["cert"])
    key.write_bytes(MADE["key"])
    return cert.name, key.name  # relative to the app directory


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """curl, never through a proxy from the environment, TLS certificates not checked (the test's own)."""
    return subprocess.run(
        [CURL or "curl", "-sS", "-k", "--noproxy", "*", "--max-time", str(int(timeout)), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        check=False,
    )


def version_and_body(url: str, *options: str) -> tuple[str, dict]:
    """(curl's %{http_version}, the JSON body) of one GET; ("", {}) when curl fails."""
    result = curl(*options, "-w", "\n%{http_version}", url, timeout=20)
    if result.returncode != 0:
        return "", {}
    body, _, version = result.stdout.rpartition("\n")
    try:
        return version, json.loads(body)
    except ValueError:
        return version, {}


def start(request, tmp_path_factory, variant: str, tls: bool, **env: str) -> Server:
    directory = tmp_path_factory.mktemp(f"h2-{variant}-{'tls' if tls else 'plain'}")
    app_dir = app_copy(directory)
    settings = {**VARIANTS[variant], "HOST": "127.0.0.1", "PORT": str(reserve_port()), "WEB_CONCURRENCY": "1"}
    settings.update(APP_MODULE="main:app", **env)
    if tls:
        settings["CERTFILE"], settings["KEYFILE"] = certificate(app_dir)
    server = Server(app_dir, clean_env(**settings))
    request.addfinalizer(server.kill_all)
    server.wait_ready("/scope", tls=tls)
    return server


@pytest.fixture(scope="module", params=list(VARIANTS))
def h2c_server(request, tmp_path_factory):
    """HTTP2=on, plain TCP."""
    return request.param, start(request, tmp_path_factory, request.param, tls=False, HTTP2="on")


@pytest.fixture(scope="module", params=list(VARIANTS))
def h2_tls_server(request, tmp_path_factory):
    """HTTP2=on, TLS."""
    return request.param, start(request, tmp_path_factory, request.param, tls=True, HTTP2="on")


# --------------------------------------------------------------------------
# HTTP2=on
# --------------------------------------------------------------------------
def test_h2c_by_prior_knowledge_beside_http1_on_the_same_port(h2c_server):
    variant, server = h2c_server
    url = f"http://127.0.0.1:{server.port}/scope"
    version, seen = version_and_body(url, "--http2-prior-knowledge")
    assert (version, seen.get("http_version"), seen.get("scheme")) == ("2", "2", "http"), server.output()[-3000:]
    version, seen = version_and_body(url, "--http1.1")
    assert (version, seen.get("http_version")) == ("1.1", "1.1")
    # an HTTP/1.1 request with `Upgrade: h2c`: taken by Gunicorn's own worker and Hypercorn, else answered in 1.1
    version, seen = version_and_body(url, "--http2")
    upgraded = variant in ("gunicorn-asgi", "hypercorn")
    assert (version, seen.get("http_version")) == (("2", "2") if upgraded else ("1.1", "1.1"))


def test_h2_over_tls_by_alpn_beside_http1(h2_tls_server):
    _, server = h2_tls_server
    url = f"https://127.0.0.1:{server.port}/scope"
    version, seen = version_and_body(url, "--http2")
    assert (version, seen.get("http_version"), seen.get("scheme")) == ("2", "2", "https"), server.output()[-3000:]
    version, seen = version_and_body(url, "--http1.1")
    assert (version, seen.get("http_version")) == ("1.1", "1.1")


def get_many_on_one_connection(port: int, path: str, count: int, tls: bool, timeout: float = 30) -> list[dict]:
    """`count` GETs sent at once as streams of one HTTP/2 connection (h2, the h2 package: curl 7.88's
    --parallel breaks on prior-knowledge h2c), then every answer read: each stream's status and JSON body."""
    h2_connection = pytest.importorskip("h2.connection")
    h2_config, h2_events = pytest.importorskip("h2.config"), pytest.importorskip("h2.events")
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = insecure_tls()
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        assert sock.selected_alpn_protocol() == "h2"
    connection = h2_connection.H2Connection(config=h2_config.H2Configuration(client_side=True))
    connection.initiate_connection()
    answers: dict[int, dict] = {}
    for _ in range(count):
        stream = connection.get_next_available_stream_id()
        headers = [(":method", "GET"), (":path", path), (":scheme", "https" if tls else "http")]
        connection.send_headers(stream, [*headers, (":authority", f"127.0.0.1:{port}")], end_stream=True)
        answers[stream] = {"status": None, "body": b"", "ended": False}
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(connection.data_to_send())
        while not all(answer["ended"] for answer in answers.values()) and time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                break
            for event in connection.receive_data(data):
                answer = answers.get(getattr(event, "stream_id", 0))
                if answer is None:
                    continue
                if isinstance(event, h2_events.ResponseReceived):
                    answer["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2_events.DataReceived):
                    answer["body"] += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2_events.StreamEnded, h2_events.StreamReset)):
                    answer["ended"] = True
            sock.sendall(connection.data_to_send())
    finally:
        sock.close()
    return [
        {"status": answer["status"], "body": json.loads(answer["body"]) if answer["status"] == 200 else None}
        for answer in answers.values()
    ]


def many_streams_on_one_connection(port: int, tls: bool) -> None:
    """Each request waits at a barrier until STREAMS of them are inside the app at once: served one after
    another they would each wait 10 s and say met=false. One TCP connection carries them all."""
    started = time.monotonic()
    answers = get_many_on_one_connection(port, f"/barrier?n={STREAMS}", STREAMS, tls)
    elapsed = time.monotonic() - started
    assert [answer["status"] for answer in answers] == [200] * STREAMS, answers
    assert all(answer["body"]["met"] and answer["body"]["http_version"] == "2" for answer in answers), answers
    assert len({tuple(answer["body"]["client"]) for answer in answers}) == 1, answers  # one client port
    assert elapsed < 10, elapsed


def test_many_streams_are_served_at_once_on_one_h2c_connection(h2c_server):
    _, server = h2c_server
    many_streams_on_one_connection(server.port, tls=False)


def test_many_streams_are_served_at_once_on_one_tls_connection(h2_tls_server):
    _, server = h2_tls_server
    many_streams_on_one_connection(server.port, tls=True)


def body_file(directory: Path, mib: int) -> Path:
    path = directory / f"body-{mib}MiB.bin"
    if not path.exists():
        path.write_bytes(os.urandom(mib << 20))
    return path


def echo_is_byte_exact(directory: Path, server: Server, url: str, option: str) -> None:
    sent = body_file(directory, BODY_MIB)
    received = directory / "received.bin"
    command = [option, "--data-binary", f"@{sent}", "-H", "content-type: application/octet-stream"]
    result = curl(*command, "-o", str(received), "-w", "%{http_code} %{http_version}", url, timeout=60)
    assert (result.returncode, result.stdout) == (0, "200 2"), result.stderr + server.output()[-2000:]
    assert received.stat().st_size == sent.stat().st_size
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(sent.read_bytes()).digest()


def test_bodies_of_several_mib_both_ways_byte_exact_over_h2c(h2c_server, tmp_path):
    _, server = h2c_server
    echo_is_byte_exact(tmp_path, server, f"http://127.0.0.1:{server.port}/echo", "--http2-prior-knowledge")


def test_bodies_of_several_mib_both_ways_byte_exact_over_tls(h2_tls_server, tmp_path):
    _, server = h2_tls_server
    echo_is_byte_exact(tmp_path, server, f"https://127.0.0.1:{server.port}/echo", "--http2")


# --------------------------------------------------------------------------
# HTTP2=off, and h2c only from trusted peers under Gunicorn's own workers
# --------------------------------------------------------------------------
def refuses_h2c(port: int) -> bool:
    version, seen = version_and_body(f"http://127.0.0.1:{port}/scope", "--http2-prior-knowledge")
    return version != "2" and seen.get("http_version") != "2"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_http2_off_serves_http1_only(request, tmp_path_factory, variant):
    plain = start(request, tmp_path_factory, variant, tls=False, HTTP2="off")
    assert refuses_h2c(plain.port), plain.output()[-3000:]
    # an h2c Upgrade request is answered in HTTP/1.1
    version, seen = version_and_body(f"http://127.0.0.1:{plain.port}/scope", "--http2")
    assert (version, seen.get("http_version")) == ("1.1", "1.1")
    if variant in ("hypercorn", "granian"):  # elsewhere off is the default, which test_apps_proxies checks over TLS
        tls = start(request, tmp_path_factory, variant, tls=True, HTTP2="off")
        version, seen = version_and_body(f"https://127.0.0.1:{tls.port}/scope", "--http2")  # curl offers h2 too
        assert (version, seen.get("http_version")) == ("1.1", "1.1")


def test_gunicorn_takes_h2c_from_trusted_proxies_only(request, tmp_path_factory):
    """Gunicorn's own worker: from a peer outside FORWARDED_ALLOW_IPS, h2c is not taken (HTTP/1.1 is)."""
    server = start(request, tmp_path_factory, "gunicorn-asgi", tls=False, HTTP2="on", FORWARDED_ALLOW_IPS="10.0.0.1")
    assert refuses_h2c(server.port)
    version, seen = version_and_body(f"http://127.0.0.1:{server.port}/scope", "--http1.1")
    assert (version, seen.get("http_version")) == ("1.1", "1.1")


# --------------------------------------------------------------------------
# configuration errors: exit 2, one line, before anything runs
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"HTTP2": "yes please"}, "asgi-start: error: HTTP2='yes please' is not valid; expected on or off"),
        (
            {"HTTP2": "on", "WORKER_CLASS": "sync"},
            "asgi-start: error: HTTP2=on under SERVER=gunicorn needs Uvicorn's worker class or one of Gunicorn's",
        ),
    ],
)
def test_bad_http2_settings_are_exit_2_with_one_line(tmp_path, env, line):
    app_dir = app_copy(tmp_path)
    for args in (["--dry-run"], []):  # planning and a real start alike
        result = run_start(args, clean_env(HOST="127.0.0.1", PORT=str(reserve_port()), **env), app_dir)
        lines = [text for text in result.stderr.splitlines() if text.strip()]
        assert (result.returncode, len(lines)) == (2, 1), result.stderr
        assert lines[0].startswith(line) and result.stdout == ""


def test_a_server_version_without_http2_is_exit_2_naming_the_version(tmp_path):
    """Uvicorn 0.52 (before zttp's HTTP/2) found on the path: exit 2 naming 0.53."""
    app_dir = app_copy(tmp_path)
    shadow = tmp_path / "shadow"
    (shadow / "uvicorn-0.52.0.dist-info").mkdir(parents=True)  # what start.py reads the version from
    env = clean_env(SERVER="uvicorn", HTTP2="on", PYTHONPATH=str(shadow), HOST="127.0.0.1", PORT=str(reserve_port()))
    result = run_start([], env, app_dir)
    lines = [text for text in result.stderr.splitlines() if text.strip()]
    assert (result.returncode, len(lines)) == (2, 1), result.stderr
    assert "HTTP2=on under SERVER=uvicorn needs uvicorn 0.53 or newer (installed: 0.52.0)" in lines[0]
