"""End to end: what is specific to SERVER=granian, through real `python start.py` processes on 127.0.0.1.

TLS and HTTP/2, KEEP_ALIVE as Granian's header-read timeout, GRACEFUL_TIMEOUT as its kill timeout,
respawned workers, an app that cannot load, the reloader, WORKER_CLASS as the event loop, BIND,
the settings Granian cannot honour, a missing granian or watchfiles, the scope the launcher's
wrapper gives the app (ports, proxy headers, ROOT_PATH) and WebSockets.
"""

from __future__ import annotations

import http.client
import inspect
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
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    APPS,
    START,
    Server,
    all_gone,
    clean_env,
    connection,
    copy_app,
    dry_run,
    get_json,
    local_env,
    request,
    reserve_port,
    start_server,
    stop,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.e2e

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
CLIENT = "203.0.113.7"  # what a proxy says the client is (TEST-NET-3)
FORWARDED = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def app_dir_with(tmp_path: Path, name: str) -> Path:
    """tests/apps/<name>/main.py copied as tmp_path/srv/main.py; the server's logs go to tmp_path."""
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    shutil.copy(APPS / name / "main.py", app_dir / "main.py")
    return app_dir


def granian_env(**env: str) -> dict[str, str]:
    """SERVER=granian, one worker unless env says otherwise, on 127.0.0.1 and a reserved port unless env has a BIND."""
    return local_env(**{"SERVER": "granian", "WEB_CONCURRENCY": "1", **env})


def start(servers: list, app_dir: Path, wait: bool = True, **env: str) -> Server:
    return start_server(servers, app_dir, granian_env(**env), wait=wait)


def tls_context(maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    if maximum is not None:
        context.maximum_version = maximum
    return context


def run_refused(app_dir: Path, env: dict[str, str], python: str = sys.executable) -> tuple[int, str, str]:
    """start.py run for real (no --dry-run), expected to refuse at once: (status, stdout, stderr).

    Started in its own session: should it start a server after all, the whole group is killed."""
    process = subprocess.Popen(
        [python, str(START)],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # not reaped yet: the group is still ours
        out, err = process.communicate(timeout=10)
        raise AssertionError(f"start.py did not refuse, it kept running:\n{out[-2000:]}\n{err[-2000:]}") from None
    return process.returncode, out, err


def assert_refused(app_dir: Path, *names: str, python: str = sys.executable, **env: str) -> str:
    """Exit 2 at once, before any server started, with every one of `names` in an error line."""
    status, out, err = run_refused(app_dir, granian_env(**env), python)
    assert status == 2, f"{status}\n{out}\n{err}"
    assert "granian" not in out and "_granian" not in err and "Listening" not in err, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    for name in names:
        assert any(name in line for line in lines), f"{name} not named:\n{err}"
    return err


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    if not OPENSSL:
        pytest.skip("the openssl command is not installed (needed to make a self-signed certificate)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [
            *(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return cert, key


def websocket_connect(url: str, **kwargs):
    websockets_client = pytest.importorskip("websockets.sync.client")
    if "proxy" in inspect.signature(websockets_client.connect).parameters:
        kwargs["proxy"] = None  # never a proxy from the environment
    return websockets_client.connect(url, open_timeout=10, close_timeout=5, **kwargs)


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list]:
    """target() run in a daemon thread; its result (or the exception it raised) lands in the list."""
    results: list = []

    def run() -> None:
        try:
            results.append(target())
        except Exception as error:  # the test looks at it
            results.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


# --------------------------------------------------------------------------
# 1. TLS, HTTP/2, TLS 1.2 clients, an encrypted key
# --------------------------------------------------------------------------
def test_tls_serves_http2_and_tls12_clients(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "scope")
    cert, key = self_signed_certificate(app_dir)
    server = start(servers, app_dir, wait=False, CERTFILE=cert.name, KEYFILE=key.name)
    server.wait_ready(tls=tls_context())

    # TLS 1.2 only client: start.py passes --ssl-protocol-min tls1.2 (Granian's own minimum is 1.3)
    conn = connection(server.port, tls=tls_context(maximum=ssl.TLSVersion.TLSv1_2))
    try:
        conn.request("GET", "/tls12")
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200
        assert conn.sock.version() == "TLSv1.2"
    finally:
        conn.close()
    assert body["scheme"] == "https" and body["path"] == "/tls12"

    if not CURL:
        pytest.skip("curl is not installed (the HTTP/2 client)")
    if "HTTP2" not in subprocess.run([CURL, "-V"], capture_output=True, text=True, timeout=30, check=False).stdout:
        pytest.skip("this curl was built without HTTP/2")
    result = subprocess.run(
        [
            CURL,
            "--http2",
            "-k",
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version}",
            f"https://127.0.0.1:{server.port}/h2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body_text, _, version = result.stdout.rpartition("\n")
    assert version == "2"
    assert json.loads(body_text)["http_version"] == "2"
    stop(server, timeout=15)


def test_encrypted_keyfile_is_refused_before_the_server_starts(tmp_path):
    app_dir = app_dir_with(tmp_path, "basic")
    cert, key = self_signed_certificate(app_dir)
    encrypted = app_dir / "encrypted.pem"
    made = subprocess.run(
        [OPENSSL, "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert b"ENCRYPTED" in encrypted.read_bytes()
    err = assert_refused(app_dir, "KEYFILE", CERTFILE=cert.name, KEYFILE=encrypted.name)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "encrypted" in lines[0], err


# --------------------------------------------------------------------------
# 2. KEEP_ALIVE
# --------------------------------------------------------------------------
def test_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "basic")
    server = start(servers, app_dir, KEEP_ALIVE="2")
    conn = connection(server.port)
    try:
        conn.request("GET", "/pid")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        assert sock is not None and first.getheader("connection", "").lower() != "close"
        time.sleep(0.5)
        conn.request("GET", "/pid")  # still open after a pause shorter than KEEP_ALIVE: the same connection
        second = conn.getresponse()
        second.read()
        assert second.status == 200 and conn.sock is sock
        idle_from = time.monotonic()
        sock.settimeout(10)
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
        idle = time.monotonic() - idle_from
    finally:
        conn.close()
    assert data == b""
    assert 1.5 <= idle <= 3.5, f"closed after {idle:.2f}s, KEEP_ALIVE=2"
    stop(server, timeout=15)


def test_keep_alive_0_closes_every_connection(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "basic")
    server = start(servers, app_dir, KEEP_ALIVE="0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # the server closes: recv ends with b"" (a timeout fails the test)
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"hello from the test app"
    assert b"connection: close" in head.lower()
    stop(server, timeout=15)


def test_keep_alive_above_60_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "KEEP_ALIVE=61", KEEP_ALIVE="61")


# --------------------------------------------------------------------------
# 3. GRACEFUL_TIMEOUT
# --------------------------------------------------------------------------
def slow_request_in_the_app(server: Server, app_dir: Path, seconds: float) -> tuple[threading.Thread, list]:
    """GET /slow?seconds=N in a thread, returned once the request is in the app (it made its mark)."""
    mark = f"in-app-{seconds}"
    thread, result = in_thread(lambda: request(server.port, f"/slow?seconds={seconds}&mark={mark}", timeout=20))
    assert wait_until((app_dir / mark).exists, 10), f"the request never reached the app: {result}"
    return thread, result


def sigterm_and_wait(server: Server) -> tuple[int, float]:
    """SIGTERM; the exit status and the seconds it took."""
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(timeout=15)
    return status, time.monotonic() - sent


def test_graceful_timeout_cuts_a_longer_request_and_exits_0(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "granian")
    server = start(servers, app_dir, GRACEFUL_TIMEOUT="2")
    workers = worker_pids(server.pid)
    thread, result = slow_request_in_the_app(server, app_dir, 30)
    status, took = sigterm_and_wait(server)
    thread.join(10)
    assert status == 0, server.output()[-3000:]
    assert result and isinstance(result[0], (OSError, http.client.HTTPException)), result
    assert 1.5 <= took <= 3.5, f"exited {took:.2f}s after SIGTERM, GRACEFUL_TIMEOUT=2"
    assert all_gone(workers) == []


def test_request_shorter_than_graceful_timeout_is_answered_after_sigterm(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "granian")
    server = start(servers, app_dir, GRACEFUL_TIMEOUT="3")
    workers = worker_pids(server.pid)
    thread, result = slow_request_in_the_app(server, app_dir, 1)
    status, took = sigterm_and_wait(server)
    thread.join(10)
    assert status == 0, server.output()[-3000:]
    answer = result[0] if result else None
    assert isinstance(answer, tuple) and answer[:3:2] == (200, str(workers[0])), (
        f"{answer!r}\n{server.output()[-3000:]}"
    )
    # the worker stops once its last request is answered, without waiting for GRACEFUL_TIMEOUT
    assert took < 2.5, f"exited {took:.2f}s after SIGTERM, the request took 1 s, GRACEFUL_TIMEOUT=3"
    assert all_gone(workers) == []


def test_graceful_timeout_above_1800_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "GRACEFUL_TIMEOUT=1801", GRACEFUL_TIMEOUT="1801")


# --------------------------------------------------------------------------
# 4. a worker killed with SIGKILL is respawned
# --------------------------------------------------------------------------
def test_worker_killed_with_sigkill_is_respawned(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "basic")
    server = start(servers, app_dir)
    (old,) = worker_pids(server.pid)
    assert request(server.port, "/pid")[2] == str(old)
    os.kill(old, signal.SIGKILL)

    def new_worker_answers() -> str | None:
        try:
            status, _, body = request(server.port, "/pid", timeout=2)
        except (OSError, http.client.HTTPException):
            return None
        return body if status == 200 and body != str(old) else None

    new = wait_until(new_worker_answers, 15)
    assert new, server.output()[-3000:]
    assert server.process.poll() is None
    assert worker_pids(server.pid) == [int(new)]
    for _ in range(5):
        assert request(server.port, "/pid")[:3:2] == (200, new)
    assert "Respawning worker-1" in server.output()
    stop(server, timeout=15)


# --------------------------------------------------------------------------
# 5. an app that cannot be loaded
# --------------------------------------------------------------------------
def wait_exit(server: Server, deadline_s: float = 30) -> int:
    try:
        return server.process.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {deadline_s}s:\n{server.output()[-3000:]}") from None


def test_app_raising_at_import_exits_non_zero_with_one_json_traceback(servers, tmp_path):
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    (app_dir / "main.py").write_text('app = None\nraise RuntimeError("broken at import")\n')
    server = start(servers, app_dir, wait=False, LOG_FORMAT="json", WEB_CONCURRENCY="2")
    status = wait_exit(server)
    assert status != 0
    server.output()  # flush
    records = []
    for stream in ("stdout.log", "stderr.log"):
        for line in (tmp_path / stream).read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise AssertionError(f"not JSON on {stream}: {line!r}") from None
    tracebacks = [record for record in records if "RuntimeError: broken at import" in record.get("exception", "")]
    assert tracebacks, records
    assert all(record["level"] == "error" and "main:app" in record["message"] for record in tracebacks)
    assert str(app_dir / "main.py") in tracebacks[0]["exception"]


def test_app_module_naming_a_missing_attribute_exits_non_zero(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "basic")
    server = start(servers, app_dir, wait=False, APP_MODULE="main:nothere")
    status = wait_exit(server)
    assert status != 0
    assert "Cannot load application from 'main:nothere'" in server.output()


# --------------------------------------------------------------------------
# 6. WITH_RELOAD and its settings
# --------------------------------------------------------------------------
def test_reload_serves_edited_code_and_ignores_excluded_files(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "granian")
    server = start(servers, app_dir, WITH_RELOAD="true", RELOAD_EXCLUDES="*.log")
    first_pid = request(server.port, "/pid")[2]
    assert request(server.port, "/version")[2] == "one"

    # an excluded file: no reload (same worker, no "Changes detected"); the default check is every 50 ms
    (app_dir / "x.log").write_text("a log line\n")
    time.sleep(1.5)
    assert request(server.port, "/pid")[2] == first_pid
    assert "Changes detected" not in server.output()

    # the app's own file: the new code is served, by a new worker
    source = app_dir / "main.py"
    source.write_text(source.read_text().replace('VERSION = "one"', 'VERSION = "the second one"'))

    def new_version() -> str | None:
        try:
            return request(server.port, "/version", timeout=2)[2] == "the second one" or None
        except (OSError, http.client.HTTPException):
            return None

    assert wait_until(new_version, 15), server.output()[-3000:]
    assert request(server.port, "/pid")[2] != first_pid
    assert "Changes detected" in server.output()
    stop(server, timeout=15)


def test_reload_delay_outside_granians_range_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "RELOAD_DELAY=0.01", WITH_RELOAD="true", RELOAD_DELAY="0.01")


def test_reload_includes_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "RELOAD_INCLUDES", WITH_RELOAD="true", RELOAD_INCLUDES="*.py")


# --------------------------------------------------------------------------
# 7. WORKER_CLASS is Granian's event loop
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("worker_class", "loop_type"), [("asyncio", "asyncio."), ("uvloop", "uvloop.Loop")])
def test_worker_class_chooses_the_event_loop(servers, tmp_path, worker_class, loop_type):
    if worker_class == "uvloop":
        pytest.importorskip("uvloop")
    app_dir = app_dir_with(tmp_path, "granian")
    server = start(servers, app_dir, WORKER_CLASS=worker_class)
    status, _, body = request(server.port, "/loop")
    assert status == 200
    assert body.startswith(loop_type), body
    assert "uvloop" not in body or worker_class == "uvloop"
    stop(server, timeout=15)


def test_worker_class_trio_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "WORKER_CLASS='trio'", WORKER_CLASS="trio")


# --------------------------------------------------------------------------
# 8. BIND
# --------------------------------------------------------------------------
def test_bind_unix_socket_serves_over_the_socket(servers, tmp_path):
    app_dir = app_dir_with(tmp_path, "scope")
    path = str(tmp_path / "g.sock")
    if len(path) > 100:
        pytest.skip(f"socket path too long for AF_UNIX: {path}")
    server = start(servers, app_dir, wait=False, BIND=f"unix:{path}")
    server.wait_ready(uds=path)
    status, _, body = request(0, "/over-uds", uds=path)
    assert status == 200
    assert json.loads(body)["path"] == "/over-uds"
    stop(server, timeout=15)
    assert not os.path.exists(path)


def test_bind_with_two_addresses_is_refused(tmp_path):
    first, second = reserve_port(), reserve_port()
    assert_refused(app_dir_with(tmp_path, "basic"), "BIND=", BIND=f"127.0.0.1:{first},127.0.0.1:{second}")


def test_bind_fd_is_refused(tmp_path):
    assert_refused(app_dir_with(tmp_path, "basic"), "fd://", BIND="fd://3")


# --------------------------------------------------------------------------
# 9. settings Granian cannot honour, all reported at once
# --------------------------------------------------------------------------
def test_unsupported_settings_are_all_refused_at_once(tmp_path):
    assert_refused(
        app_dir_with(tmp_path, "basic"),
        *("MAX_REQUESTS ", "MAX_REQUESTS_JITTER", "CIPHERS", "TIMEOUT", "QUIC_BIND"),
        MAX_REQUESTS="100",
        MAX_REQUESTS_JITTER="10",
        CIPHERS="ECDHE+AESGCM",
        TIMEOUT="30",
        QUIC_BIND="127.0.0.1:4433",
    )


# --------------------------------------------------------------------------
# 10. granian or watchfiles not installed
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A venv of this interpreter with nothing installed (no pip either)."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    probe = subprocess.run([python, "-c", "import granian"], env=clean_env(), capture_output=True, timeout=30)
    assert probe.returncode != 0
    return python


def test_granian_not_installed_is_refused_naming_the_package(tmp_path, bare_python):
    err = assert_refused(app_dir_with(tmp_path, "basic"), "SERVER=granian", python=str(bare_python))
    assert "pip install granian" in err


def test_reload_without_watchfiles_is_refused(tmp_path):
    """granian (and click) linked into a venv without watchfiles."""
    import granian

    site_packages = Path(granian.__file__).resolve().parent.parent
    venv = tmp_path / "no-watchfiles"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (target,) = (venv / "lib").glob("python*/site-packages")
    for entry in site_packages.iterdir():
        if entry.name.split("-")[0] in ("granian", "click"):
            (target / entry.name).symlink_to(entry)
    python = str(venv / "bin" / "python")
    app_dir = app_dir_with(tmp_path, "basic")
    # granian counts as installed there: without WITH_RELOAD the plan is made
    planned = subprocess.run(
        [python, str(START), "--dry-run"], env=granian_env(), cwd=app_dir, capture_output=True, text=True, timeout=30
    )
    assert planned.returncode == 0, planned.stderr
    err = assert_refused(app_dir, "WITH_RELOAD", python=python, WITH_RELOAD="true")
    assert "watchfiles" in err and "granian[reload]" in err


# --------------------------------------------------------------------------
# 11. the scope the app sees, 12. WebSockets
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scope_server(tmp_path_factory):
    """The scope app under ROOT_PATH=/api, trusting the default FORWARDED_ALLOW_IPS (127.0.0.1)."""
    app_dir = app_dir_with(tmp_path_factory.mktemp("scope"), "scope")
    server = Server(app_dir, granian_env(ROOT_PATH="/api"))
    try:
        server.wait_ready()
        yield server
        stop(server, timeout=15)
    finally:
        server.kill_all()


def test_scope_ports_are_ints_and_root_path_prefixes_the_path(scope_server):
    scope = get_json(scope_server.port, "/x")
    host, port = scope["client"]
    assert host == "127.0.0.1" and type(port) is int and port > 0
    assert scope["server"] == ["127.0.0.1", scope_server.port]
    assert scope["root_path"] == "/api" and scope["path"] == "/api/x"
    assert scope["scheme"] == "http"


def test_forwarded_headers_from_127_0_0_1_are_honoured_by_default(scope_server):
    scope = get_json(scope_server.port, "/fwd", FORWARDED)
    assert scope["client"][0] == CLIENT
    assert scope["scheme"] == "https"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(servers, tmp_path):
    server = start(servers, app_dir_with(tmp_path, "scope"), FORWARDED_ALLOW_IPS="10.0.0.1")
    scope = get_json(server.port, "/fwd", FORWARDED)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    stop(server, timeout=15)


def test_websocket_echo(scope_server):
    with websocket_connect(f"ws://127.0.0.1:{scope_server.port}/chat") as ws:
        scope = json.loads(ws.recv(timeout=10))
        assert scope["type"] == "websocket" and scope["scheme"] == "ws"
        assert scope["path"] == "/api/chat" and type(scope["client"][1]) is int
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"


def test_dry_run_warns_when_tcp_migrate_req_is_off(tmp_path):
    """Read from this machine's /proc (the unit tests hand the probe fixture trees): the warning is there
    exactly when the sysctl is 0, and only with more than one worker."""
    setting = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    if not setting.exists():
        pytest.skip("this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+)")
    app_dir = copy_app(tmp_path)
    plan = dry_run(clean_env(SERVER="granian", WEB_CONCURRENCY="2"), app_dir)
    warned = [warning for warning in plan["warnings"] if "net.ipv4.tcp_migrate_req" in warning]
    assert len(warned) == (setting.read_text().strip() == "0"), plan["warnings"]
    for warning in warned:
        assert "sysctl -w net.ipv4.tcp_migrate_req=1" in warning
    one = dry_run(clean_env(SERVER="granian", WEB_CONCURRENCY="1"), app_dir)
    assert not [warning for warning in one["warnings"] if "tcp_migrate_req" in warning]
