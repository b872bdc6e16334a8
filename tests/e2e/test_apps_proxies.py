"""End to end, issue 11: every app behind every proxy, under every server, through `python start.py`.

Real servers on 127.0.0.1 (and [::1]) serving real apps: the raw scope app
(tests/apps/scope), a FastAPI app and a Django project made by `django-admin
startproject` (test dependencies only, requirements/dev.txt). Covered: app
factories (`module:factory()`, and the exit-2 errors), ROOT_PATH, X-Forwarded-For
and -Proto from trusted and untrusted peers, HOST=:: and BIND=[::]:PORT as
dual-stack listeners, SERVER_ARGS, a WebSocket echo, HTTPS with CERTFILE/KEYFILE
and HTTP/2 over TLS where the server speaks it.

A known launcher bug is marked `xfail(strict=True)` with its reason, so the
marker has to go when the bug is fixed.
"""

from __future__ import annotations

import http.client
import inspect
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from helpers import (
    APPS,
    SERVERS,
    START,
    Server,
    as_python_m,
    clean_env,
    cmdline,
    dry_run,
    get_json,
    local_env,
    request,
    reserve_port,
    run_start,
    start_server,
    stop,
    wait_for_workers,
)

pytestmark = pytest.mark.e2e

CLIENT = "203.0.113.7"  # what a trusted proxy says the client is (TEST-NET-3)
FORWARDED = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="this machine has no IPv6 loopback (::1)")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def app_copy(tmp_path: Path, name: str) -> Path:
    """tests/apps/<name> copied whole into tmp_path/srv (the app directory); the servers' logs go beside it."""
    app_dir = tmp_path / "srv"
    shutil.copytree(APPS / name, app_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3"))
    return app_dir


def scope_env(server_name: str, **env: str) -> dict[str, str]:
    """SERVER=server_name, one worker unless env says otherwise, on 127.0.0.1 and a reserved port unless env has a BIND."""
    return local_env(SERVER=server_name, **{"WEB_CONCURRENCY": "1", **env})


def websocket_connect(url: str, **kwargs):
    websockets_client = pytest.importorskip("websockets.sync.client")
    if "proxy" in inspect.signature(websockets_client.connect).parameters:
        kwargs["proxy"] = None  # never a proxy from the environment
    return websockets_client.connect(url, open_timeout=10, close_timeout=5, **kwargs)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    if not OPENSSL:
        pytest.skip("the openssl command is not installed (needed to make a self-signed certificate)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    subject = ["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    result = subprocess.run(
        [*request, *subject],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return cert, key


# --------------------------------------------------------------------------
# one server per server name: the raw scope app as a factory, under ROOT_PATH,
# trusting the default FORWARDED_ALLOW_IPS (127.0.0.1, the test client)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=SERVERS)
def scope_server(request, tmp_path_factory):
    server_name = request.param
    app_dir = app_copy(tmp_path_factory.mktemp(f"scope-{server_name}"), "scope")
    env = clean_env(
        SERVER=server_name,
        HOST="127.0.0.1",
        PORT=str(reserve_port()),
        WEB_CONCURRENCY="1",
        APP_MODULE="main:create_app()",
        ROOT_PATH="/api",
    )
    plan = dry_run(env, app_dir)
    server = Server(app_dir, env)
    try:
        server.wait_ready()
        yield server_name, server, plan
    finally:
        server.kill_all()  # the whole process group


def test_factory_is_served_and_is_what_the_plan_said(scope_server):
    server_name, server, plan = scope_server
    seen = get_json(server.port, "/hello")
    assert seen["type"] == "http" and seen["path"].endswith("/hello")
    assert cmdline(server.pid) == plan["argv"]  # start.py exec'd the planned server
    argv = plan["argv"]
    if server_name == "uvicorn":
        assert argv[3:5] == ["main:create_app", "--factory"], argv
    elif server_name == "gunicorn":
        assert argv[-1] == "main:create_app()", argv
    elif server_name == "granian":  # the launcher's wrapper as Granian's factory; it calls the user's factory
        assert argv[-2:] == ["--factory", "asgi_start:granian_app"], argv
        assert plan["env"]["ASGI_START_APP"] == "main:create_app()", plan
    else:
        assert argv[-1] == "asgi_start:proxied_app()" and plan["env"]["ASGI_START_APP"] == "main:create_app()", plan


def test_root_path_reaches_the_scope(scope_server):
    _, server, _ = scope_server
    assert get_json(server.port, "/hello")["root_path"] == "/api"


def known_bug(request, server_name: str, affected: set[str], reason: str) -> None:
    """Mark this test as failing, strictly, where a launcher bug is known: fixing the bug turns it red."""
    if server_name in affected:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"launcher bug: {reason}"))


def test_root_path_gives_the_same_path_under_every_server(scope_server):
    """Uvicorn (and so Gunicorn's Uvicorn worker) puts root_path in front of path, as the ASGI spec's WSGI
    note reads (PATH_INFO = path less root_path); one meaning means the same path under every server."""
    _, server, _ = scope_server
    assert get_json(server.port, "/hello")["path"] == "/api/hello"


def test_without_forwarded_headers_the_peer_is_the_client(scope_server):
    _, server, _ = scope_server
    seen = get_json(server.port, "/")
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert seen["scheme"] == "http"


def test_trusted_peer_sets_client_and_scheme(scope_server):
    _, server, _ = scope_server
    seen = get_json(server.port, "/", FORWARDED)
    assert (seen["client"], seen["scheme"]) == ([CLIENT, 0], "https")
    # the nearest hop that is not trusted is the client (only 127.0.0.1 is trusted here)
    hops = {"X-Forwarded-For": f"{CLIENT}, 198.51.100.9", "X-Forwarded-Proto": "http"}
    seen = get_json(server.port, "/", hops)
    assert (seen["client"], seen["scheme"]) == (["198.51.100.9", 0], "http")


def test_forwarded_proto_is_read_the_same_under_every_server(scope_server):
    """Uvicorn takes X-Forwarded-Proto as written (http, https, ws, wss) and ignores anything else."""
    _, server, _ = scope_server
    assert get_json(server.port, "/", {"X-Forwarded-Proto": "HTTPS"})["scheme"] == "http"


def test_websocket_echo_and_its_scope(scope_server):
    _, server, _ = scope_server
    with websocket_connect(f"ws://127.0.0.1:{server.port}/chat", additional_headers=FORWARDED) as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert seen["type"] == "websocket" and seen["path"].endswith("/chat")
        assert seen["root_path"] == "/api"
        assert (seen["client"], seen["scheme"]) == ([CLIENT, 0], "wss")  # https from the proxy means wss
        ws.send("hello over a websocket")
        assert ws.recv(timeout=10) == "hello over a websocket"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"


# --------------------------------------------------------------------------
# factories and SERVER_ARGS that are configuration errors: exit 2, one line each
# --------------------------------------------------------------------------
BAD_APP_MODULES = [
    ('main:make_app("demo")', "a factory called without arguments"),
    ("main:make_app(name='demo')", "a factory called without arguments"),
    ("main:create-app()", "module:attribute or module:factory()"),
    ("main:1app", "module:attribute or module:factory()"),
    ("main:app.not-a-name", "module:attribute or module:factory()"),
]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize(("app_module", "accepted"), BAD_APP_MODULES, ids=[value for value, _ in BAD_APP_MODULES])
def test_factory_with_arguments_or_bad_attribute_is_exit_2(tmp_path, server_name, app_module, accepted):
    app_dir = app_copy(tmp_path, "scope")
    env = clean_env(SERVER=server_name, HOST="127.0.0.1", PORT=str(reserve_port()), APP_MODULE=app_module)
    for args in (["--dry-run"], []):  # planning and a real start alike
        result = run_start(args, env, app_dir)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"asgi-start: error: APP_MODULE={app_module!r} is not valid"), lines
        assert accepted in lines[0] and "Traceback" not in result.stderr
        assert result.stdout == ""


@pytest.mark.parametrize("server_name", SERVERS)
def test_server_args_with_unbalanced_quotes_is_exit_2(tmp_path, server_name):
    app_dir = app_copy(tmp_path, "scope")
    env = clean_env(SERVER=server_name, HOST="127.0.0.1", PORT=str(reserve_port()), SERVER_ARGS="--header 'x-a: b")
    for args in (["--dry-run"], []):
        result = run_start(args, env, app_dir)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("asgi-start: error: SERVER_ARGS="), result.stderr
        assert "No closing quotation" in lines[0] and "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# proxy headers: untrusted peers, several hops
# --------------------------------------------------------------------------
@pytest.mark.parametrize("server_name", SERVERS)
def test_untrusted_peer_headers_are_ignored(servers, tmp_path, server_name):
    server = start_server(
        servers, app_copy(tmp_path, "scope"), scope_env(server_name, FORWARDED_ALLOW_IPS="10.0.0.1"), wait=True
    )
    seen = get_json(server.port, "/", {**FORWARDED, "X-Forwarded-For": f"{CLIENT}, 10.0.0.1"})
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert seen["scheme"] == "http"
    with websocket_connect(f"ws://127.0.0.1:{server.port}/", additional_headers=FORWARDED) as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "ws"
    stop(server, uvicorn_reraise=True)


HOPS = f"{CLIENT}, 198.51.100.9, 10.1.2.3"  # client, an outer proxy, an inner proxy of ours
TRUST_CASES = [
    ("127.0.0.1,10.1.0.0/16", "198.51.100.9"),  # walking back from our side: 10.1.2.3 is ours, 198.51.100.9 is not
    ("127.0.0.1, 10.1.2.3, 198.51.100.0/24", CLIENT),  # every proxy trusted: the farthest hop
    ("*", CLIENT),  # everything trusted: the farthest hop
]


def gunicorn_version() -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in metadata.version("gunicorn").split(".")[:2] if part.isdigit())
    except metadata.PackageNotFoundError:
        return ()


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize(("trusted", "client"), TRUST_CASES, ids=["network", "all-proxies", "star"])
def test_several_hops_the_nearest_untrusted_one_is_the_client(request, servers, tmp_path, server_name, trusted, client):
    if "/" in trusted and server_name == "gunicorn" and gunicorn_version() < (24,):
        # what pip installs for Python 3.9 (Gunicorn 23.0.0) takes no networks: refused before anything runs
        result = run_start(
            ["--dry-run"], clean_env(SERVER=server_name, FORWARDED_ALLOW_IPS=trusted), app_copy(tmp_path, "scope")
        )
        assert result.returncode == 2 and "Gunicorn before 24 takes addresses only" in result.stderr, result.stderr
        return
    server = start_server(
        servers, app_copy(tmp_path, "scope"), scope_env(server_name, FORWARDED_ALLOW_IPS=trusted), wait=True
    )
    seen = get_json(server.port, "/", {"X-Forwarded-For": HOPS, "X-Forwarded-Proto": "https"})
    assert (seen["client"], seen["scheme"]) == ([client, 0], "https")
    stop(server, uvicorn_reraise=True)


# --------------------------------------------------------------------------
# HOST=:: and BIND=[::]:PORT: IPv4 and IPv6 clients, one worker or two
# --------------------------------------------------------------------------
@needs_ipv6
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("form", ["HOST", "BIND"])
def test_ipv6_any_address_is_dual_stack(servers, tmp_path, server_name, workers, form):
    port = reserve_port()
    listen = {"HOST": "::", "PORT": str(port)} if form == "HOST" else {"BIND": f"[::]:{port}"}
    server = start_server(
        servers, app_copy(tmp_path, "scope"), scope_env(server_name, WEB_CONCURRENCY=workers, **listen), wait=True
    )
    over_ipv4 = get_json(port, "/", host="127.0.0.1")
    over_ipv6 = get_json(port, "/", host="::1")
    assert over_ipv4["client"][0] in ("127.0.0.1", "::ffff:127.0.0.1"), over_ipv4
    assert over_ipv6["client"][0] == "::1", over_ipv6
    # a proxy at 127.0.0.1 or ::1 (the default FORWARDED_ALLOW_IPS) is trusted through the IPv6 socket
    for proxy in ("127.0.0.1", "::1"):
        seen = get_json(port, "/", FORWARDED, host=proxy)
        assert (seen["client"], seen["scheme"]) == ([CLIENT, 0], "https"), proxy
    if workers == "2":  # one listener shared by both workers
        assert len(wait_for_workers(server.pid, 2)) == 2
    stop(server, uvicorn_reraise=True)


# The same, where the kernel binds :: to IPv6 only unless told otherwise
# (net.ipv6.bindv6only=1): inside a network namespace of its own, as root.
V6ONLY_SCRIPT = r"""
import http.client, json, os, signal, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv6/bindv6only", "w") as sysctl:
    sysctl.write("1")
env = dict(os.environ, HOST="::", PORT="18080", WEB_CONCURRENCY=sys.argv[3])
server = subprocess.Popen([sys.executable, sys.argv[1]], cwd=sys.argv[2], env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def get(host):
    connection = http.client.HTTPConnection(host, 18080, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    except OSError as error:
        return type(error).__name__
    finally:
        connection.close()
answers = {}
try:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and get("::1") != 200 and server.poll() is None:
        time.sleep(0.1)
    answers = {"ipv6": get("::1"), "ipv4": get("127.0.0.1")}
finally:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(10)
print(json.dumps(answers))
"""


def can_unshare_network() -> str | None:
    """None when `unshare -n` (root, util-linux) and `ip` work here, else why not."""
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own, to set net.ipv6.bindv6only there)"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "needs the unshare and ip commands"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return None if probe.returncode == 0 else f"unshare -n is not allowed here: {probe.stderr.decode().strip()}"


@needs_ipv6
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_host_ipv6_any_is_dual_stack_even_where_bindv6only_is_set(request, tmp_path, server_name, workers):
    known_bug(
        request,
        server_name,
        {"gunicorn", "hypercorn", "granian"},
        f"with net.ipv6.bindv6only=1, HOST=:: under SERVER={server_name} is IPv6 only: the server binds it "
        "(Granian in Rust, in every worker), and start.py clears IPV6_V6ONLY only on the socket it binds for Uvicorn",
    )
    why_not = can_unshare_network()
    if why_not:
        pytest.skip(why_not)
    app_dir = app_copy(tmp_path, "scope")
    script = tmp_path / "v6only.py"
    script.write_text(V6ONLY_SCRIPT)
    env = clean_env(SERVER=server_name)
    result = subprocess.run(
        ["unshare", "-n", sys.executable, str(script), str(START), str(app_dir), workers],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers == {"ipv6": 200, "ipv4": 200}


# --------------------------------------------------------------------------
# SERVER_ARGS: after start.py's own arguments, before those after --, and in effect
# --------------------------------------------------------------------------
SERVER_ARGS_CASES = {
    # server: (SERVER_ARGS, the words it must become)
    "gunicorn": ("--workers 3 --name 'asgi start test'", ["--workers", "3", "--name", "asgi start test"]),
    "uvicorn": (
        "--no-server-header --header 'x-from-server-args:set by SERVER_ARGS'",
        ["--no-server-header", "--header", "x-from-server-args:set by SERVER_ARGS"],
    ),
    "hypercorn": (
        "--workers 3 --access-logformat 'server-args says %(m)s %(U)s'",
        ["--workers", "3", "--access-logformat", "server-args says %(m)s %(U)s"],
    ),
    "granian": (
        "--workers 3 --access-log-fmt 'server-args says %(method)s %(path)s'",
        ["--workers", "3", "--access-log-fmt", "server-args says %(method)s %(path)s"],
    ),
}
AFTER_DASHES = {
    "gunicorn": ["--graceful-timeout", "7"],
    "uvicorn": ["--header", "x-after-dashes:yes"],
    "hypercorn": ["--graceful-timeout", "7"],
    "granian": ["--workers-kill-timeout", "7"],
}
# The access line each server writes for GET /probe-server-args with SERVER_ARGS' access format.
SERVER_ARGS_ACCESS_LINE = {
    "hypercorn": "server-args says GET /probe-server-args",
    "granian": "server-args says GET /probe-server-args",
}


def contains_run(argv: list[str], run: list[str]) -> int:
    """Where `run` starts in argv as consecutive items, or -1."""
    for index in range(len(argv) - len(run) + 1):
        if argv[index : index + len(run)] == run:
            return index
    return -1


@pytest.mark.parametrize("server_name", SERVERS)
def test_server_args_come_before_the_dash_arguments_and_take_effect(servers, tmp_path, server_name):
    raw, words = SERVER_ARGS_CASES[server_name]
    after = AFTER_DASHES[server_name]
    app_dir = app_copy(tmp_path, "scope")
    env = clean_env(
        SERVER=server_name, HOST="127.0.0.1", PORT=str(reserve_port()), WEB_CONCURRENCY="1", SERVER_ARGS=raw
    )
    result = run_start(["--dry-run", "--", *after], env, app_dir)
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)["argv"]
    argv = as_python_m(planned)
    at = contains_run(argv, [*words, *after])
    assert at > 0, argv
    assert contains_run(argv[:at], words) == -1  # once only
    if server_name == "uvicorn":
        assert argv[3] == "main:app" and at > 4  # start.py's own arguments first
    elif server_name == "granian":  # no config file: start.py's own flags, the target, then the user's (last wins)
        assert argv[3:5] == ["--interface", "asgi"] and argv[at - 2 : at] == ["--factory", "asgi_start:granian_app"]
        assert argv[at + len(words) + len(after) :] == []
    else:
        assert argv[-1] in ("main:app", "asgi_start:proxied_app()") and argv[3] == "--config" and at > 4

    server = start_server(servers, app_dir, env, wait=True, args=("--", *after))
    assert cmdline(server.pid) == planned
    if server_name == "uvicorn":
        status, headers, _ = request(server.port, "/")
        assert status == 200 and "server" not in headers, headers
        assert headers.get("x-from-server-args") == "set by SERVER_ARGS", headers
        assert headers.get("x-after-dashes") == "yes", headers
    else:
        assert len(wait_for_workers(server.pid, 3)) == 3  # WEB_CONCURRENCY=1, SERVER_ARGS --workers 3
    if server_name in SERVER_ARGS_ACCESS_LINE:
        expected = SERVER_ARGS_ACCESS_LINE[server_name]
        request(server.port, "/probe-server-args")
        deadline = time.monotonic() + 10
        while expected not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert expected in server.output(), server.output()[-3000:]
    stop(server, uvicorn_reraise=True)


# --------------------------------------------------------------------------
# HTTPS with CERTFILE/KEYFILE, and HTTP/2 over TLS where the server speaks it
# --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=SERVERS)
def tls_server(request, tmp_path_factory):
    """USE_SSL=true on SSL_PORT with CERTFILE/KEYFILE (Hypercorn adds plain HTTP on PORT: USE_TCP's default)."""
    server_name = request.param
    app_dir = app_copy(tmp_path_factory.mktemp(f"tls-{server_name}"), "scope")
    cert, key = self_signed_certificate(app_dir)
    ssl_port, port = reserve_port(), reserve_port()
    env = clean_env(
        SERVER=server_name,
        HOST="127.0.0.1",
        PORT=str(port),
        SSL_PORT=str(ssl_port),
        USE_SSL="true",
        WEB_CONCURRENCY="1",
        CERTFILE=cert.name,  # relative to the app directory
        KEYFILE=key.name,
    )
    server = Server(app_dir, env)
    server.port = ssl_port
    try:
        server.wait_ready(tls=True)
        yield server_name, server, port
    finally:
        server.kill_all()


def test_https_with_use_ssl_certfile_and_keyfile(tls_server):
    server_name, server, port = tls_server
    seen = get_json(server.port, "/secure", tls=True)
    assert seen["scheme"] == "https" and seen["http_version"] == "1.1"
    try:  # plain HTTP on the TLS port is not served
        status: int | None = request(server.port, "/", timeout=3)[0]
    except (OSError, http.client.HTTPException):
        status = None
    assert status != 200
    if server_name == "hypercorn":  # USE_TCP: plain HTTP beside TLS, on PORT
        assert get_json(port, "/plain")["scheme"] == "http"


def test_wss_echo_over_tls(tls_server):
    _, server, _ = tls_server
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with websocket_connect(f"wss://127.0.0.1:{server.port}/tls-chat", ssl=context) as ws:
        assert json.loads(ws.recv(timeout=10))["scheme"] == "wss"
        ws.send("over TLS")
        assert ws.recv(timeout=10) == "over TLS"


HTTP2_SPEAKERS = {"hypercorn", "granian"}  # HTTP2 unset: the servers' own default (test_http2.py: on and off)


def test_http2_over_tls_where_the_server_speaks_it(tls_server):
    server_name, server, _ = tls_server
    if not CURL:
        pytest.skip("curl is not installed (apt-get install -y curl)")
    if "HTTP2" not in subprocess.run([CURL, "-V"], capture_output=True, text=True, timeout=30, check=False).stdout:
        pytest.skip("this curl was built without HTTP/2")
    url = f"https://127.0.0.1:{server.port}/h2"
    base = [CURL, "--http2", "-k", "-s", "--max-time", "10"]
    version = subprocess.run(
        [*base, "-o", "/dev/null", "-w", "%{http_version}", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    body = subprocess.run([*base, url], capture_output=True, text=True, timeout=30, check=False)
    assert version.returncode == 0 and body.returncode == 0, version.stderr + body.stderr
    want = "2" if server_name in HTTP2_SPEAKERS else "1.1"
    assert version.stdout == want
    assert json.loads(body.stdout)["http_version"] == want


@pytest.mark.parametrize("server_name", SERVERS)
def test_certfile_and_keyfile_alone_turn_tls_on(request, servers, tmp_path, server_name):
    """README: CERTFILE with KEYFILE turns TLS on (on PORT, without USE_SSL)."""
    app_dir = app_copy(tmp_path, "scope")
    cert, key = self_signed_certificate(app_dir)
    server = start_server(
        servers, app_dir, scope_env(server_name, CERTFILE=cert.name, KEYFILE=key.name), wait=True, ready={"tls": True}
    )
    assert get_json(server.port, "/", tls=True)["scheme"] == "https"
    stop(server, uvicorn_reraise=True)


# --------------------------------------------------------------------------
# real frameworks: FastAPI (a factory) and a Django project, behind a proxy, under a prefix
# --------------------------------------------------------------------------
@pytest.mark.parametrize("server_name", SERVERS)
def test_fastapi_factory_behind_a_proxy_under_a_prefix(servers, tmp_path, server_name):
    pytest.importorskip("fastapi")
    env = scope_env(server_name, APP_MODULE="main:create_app()", ROOT_PATH="/api")
    server = start_server(servers, app_copy(tmp_path, "fastapi"), env, wait=True)
    seen = get_json(server.port, "/scope", FORWARDED)
    assert seen["framework"] == "fastapi"
    assert seen["root_path"] == "/api" and seen["path"].endswith("/scope")
    assert (seen["client"], seen["scheme"]) == ([CLIENT, 0], "https")
    assert seen["url_for"] == f"https://127.0.0.1:{server.port}/api/scope"
    plain = get_json(server.port, "/scope")
    assert plain["client"][0] == "127.0.0.1" and plain["scheme"] == "http"
    status, _, _ = request(server.port, "/missing")
    assert status == 404
    stop(server, uvicorn_reraise=True)


@pytest.fixture(scope="module", params=SERVERS)
def django_server(request, tmp_path_factory):
    """The Django project (mysite.asgi:application) under ROOT_PATH=/api, default FORWARDED_ALLOW_IPS."""
    pytest.importorskip("django")
    server_name = request.param
    app_dir = app_copy(tmp_path_factory.mktemp(f"django-{server_name}"), "django")
    env = clean_env(
        SERVER=server_name,
        HOST="127.0.0.1",
        PORT=str(reserve_port()),
        WEB_CONCURRENCY="1",
        APP_MODULE="mysite.asgi:application",
        ROOT_PATH="/api",
    )
    server = Server(app_dir, env)
    try:
        server.wait_ready()
        yield server_name, server
    finally:
        server.kill_all()


def test_django_project_behind_a_proxy_under_a_prefix(django_server):
    _, server = django_server
    seen = get_json(server.port, "/whoami/", FORWARDED)
    assert seen["framework"] == "django"
    assert (seen["scheme"], seen["remote_addr"]) == ("https", CLIENT)
    assert (seen["script_name"], seen["path_info"], seen["reverse"]) == ("/api", "/whoami/", "/api/whoami/")
    plain = get_json(server.port, "/whoami/")
    assert (plain["scheme"], plain["remote_addr"]) == ("http", "127.0.0.1")


def test_django_request_path_and_redirects_keep_the_prefix(django_server):
    """Django takes request.path from the scope's path; its redirects (APPEND_SLASH here) build on it."""
    _, server = django_server
    assert get_json(server.port, "/whoami/")["path"] == "/api/whoami/"
    status, headers, _ = request(server.port, "/whoami")
    assert (status, headers.get("location")) == (301, "/api/whoami/")
