"""End to end: every server behind real proxies — Debian's nginx, HAProxy and Caddy, run in the foreground
on 127.0.0.1 by these tests (.ci/run installs them) — through `python start.py`.

Each proxy terminates TLS and strips a path prefix; the app (tests/apps/fastapi) runs with ROOT_PATH=/api,
HOST=:: and FORWARDED_ALLOW_IPS=127.0.0.1. The client speaks from 127.0.0.2, so the address the app sees
says who it believed: through `/api/` the proxy reaches the server over 127.0.0.1 (trusted: the client's
address and https), through `/ext/` over ::1 (not trusted: the proxy's own address and http). `/h2/` is
HAProxy's `proto h2` backend and Caddy's `h2c://` upstream: real h2c clients of HTTP2=on. Checked: the
client's address and scheme, FastAPI's `url_for`, redirects and `/docs` under the prefix, WebSocket,
20 MiB bodies both ways, a graceful stop with requests in flight, and the keep-alive race with the
settings the README gives for each proxy.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import APPS, SERVERS, Server, clean_env, insecure_tls, request, reserve_port, wait_until

PROXIES = ("nginx", "haproxy", "caddy")
CLIENT = "127.0.0.2"  # where the test client speaks from (all of 127/8 is this machine)
PREFIX = "/api"
BIG_MIB = 20
RACE_KEEP_ALIVE = "2"  # the server's idle keep-alive in the race test (seconds)
RACE_PROXY_IDLE = "500ms"  # the proxies' upstream idle timeout, as the README says: below KEEP_ALIVE


def missing_tools() -> str | None:
    missing = [tool for tool in (*PROXIES, "openssl") if not shutil.which(tool)]
    return f"not installed: {' '.join(missing)} (.ci/run installs them from Debian)" if missing else None


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))]


# --------------------------------------------------------------------------
# the proxies' configurations
# --------------------------------------------------------------------------
def nginx_config(work: Path, port: int, upstream: int, idle: str | None) -> list[str]:
    proxied = """
            proxy_pass http://{up}/;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 60s;"""
    idle_timeout = f"keepalive_timeout {idle};" if idle else ""
    temp = " ".join(f"{kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = f"""
daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {temp}
    client_max_body_size 64m;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 16; {idle_timeout} }}
    upstream ext {{ server [::1]:{upstream}; keepalive 16; {idle_timeout} }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        location /api/ {{ {proxied.format(up="app")} }}
        location /ext/ {{ {proxied.format(up="ext")} }}
    }}
}}
"""
    (work / "nginx.conf").write_text(text)
    return ["nginx", "-p", str(work), "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")]


def haproxy_config(work: Path, port: int, upstream: int, idle: str | None) -> list[str]:
    (work / "both.pem").write_text((work / "cert.pem").read_text() + (work / "key.pem").read_text())
    # HAProxy has no upstream idle timeout of its own: it closes half of its idle server connections every
    # pool-purge-delay (5 s), so one can outlive the server's KEEP_ALIVE; the README's setting closes the
    # server connection after each response.
    server_close = "option http-server-close" if idle else ""
    text = f"""
global
    maxconn 512
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    option forwardfor
    {server_close}
frontend front
    bind 127.0.0.1:{port} ssl crt {work}/both.pem alpn http/1.1
    http-request set-header X-Forwarded-Proto https
    use_backend h2 if {{ path_beg /h2/ }}
    use_backend ext if {{ path_beg /ext/ }}
    default_backend app
backend app
    http-request replace-path /api(/.*) \\1
    server app 127.0.0.1:{upstream}
backend ext
    http-request replace-path /ext(/.*) \\1
    server ext ipv6@::1:{upstream}
backend h2
    http-request replace-path /h2(/.*) \\1
    server h2 127.0.0.1:{upstream} proto h2
"""
    (work / "haproxy.cfg").write_text(text)
    return ["haproxy", "-db", "-f", str(work / "haproxy.cfg")]


def caddy_config(work: Path, port: int, upstream: int, idle: str | None) -> list[str]:
    transport = f"transport http {{\n            keepalive {idle}\n        }}" if idle else ""
    text = f"""
{{
    admin off
    auto_https off
    storage file_system {work}/caddy
}}
https://127.0.0.1:{port} {{
    tls {work}/cert.pem {work}/key.pem
    handle_path /api/* {{
        reverse_proxy 127.0.0.1:{upstream} {{
            {transport}
        }}
    }}
    handle_path /ext/* {{
        reverse_proxy [::1]:{upstream}
    }}
    handle_path /h2/* {{
        reverse_proxy h2c://127.0.0.1:{upstream}
    }}
}}
"""
    (work / "Caddyfile").write_text(text)
    return ["caddy", "run", "--config", str(work / "Caddyfile"), "--adapter", "caddyfile"]


CONFIGS = {"nginx": nginx_config, "haproxy": haproxy_config, "caddy": caddy_config}


class Proxy:
    """A proxy run in the foreground, in its own session, by PID; `port` is its TLS listener. `idle`: the
    upstream idle timeout the README gives against the keep-alive race (HAProxy, which has none: its
    `option http-server-close`); None: the proxy's stock settings."""

    def __init__(self, name: str, work: Path, upstream: int, idle: str | None = None) -> None:
        self.name = name
        self.port = reserve_port()
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(CERTIFICATE[0], work / "cert.pem")
        shutil.copy(CERTIFICATE[1], work / "key.pem")
        command = CONFIGS[name](work, self.port, upstream, idle)
        self.log = open(work / "proxy.log", "w+")  # noqa: SIM115 -- closed in stop()
        env = clean_env(XDG_DATA_HOME=str(work / "data"), XDG_CONFIG_HOME=str(work / "config"), HOME=str(work))
        self.process = subprocess.Popen(
            command, cwd=work, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{name} exited: {self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{name} did not listen on {self.port}: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        if not self.log.closed:
            self.log.close()


CERTIFICATE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def certificate(tmp_path_factory):
    """One self-signed certificate for every proxy of this module."""
    directory = tmp_path_factory.mktemp("certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    command += ["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, capture_output=True, timeout=60, check=True)
    CERTIFICATE[:] = [cert, key]


# --------------------------------------------------------------------------
# the server and the client
# --------------------------------------------------------------------------
def start_app(directory: Path, server_name: str, **env: str) -> Server:
    pytest.importorskip("fastapi")
    app_dir = directory / "srv"
    shutil.copytree(APPS / "fastapi", app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "SERVER": server_name,
        "HOST": "::",
        "PORT": str(reserve_port()),
        "WEB_CONCURRENCY": "1",
        "APP_MODULE": "main:create_app()",
        "ROOT_PATH": PREFIX,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # not ::1: the /ext/ route is an untrusted proxy
        "HTTP2": "on",  # for the proxies' h2c upstreams
        **env,
    }
    server = Server(app_dir, clean_env(**settings))
    server.wait_ready("/scope")
    return server


def call(
    proxy: Proxy, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """One request to the proxy over TLS, from 127.0.0.2, on a fresh connection."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", proxy.port, timeout=timeout, context=insecure_tls(), source_address=(CLIENT, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def get_json(proxy: Proxy, path: str) -> dict:
    status, _, body = call(proxy, "GET", path)
    assert status == 200, (status, body[-2000:], proxy.output())
    return json.loads(body)


@pytest.fixture(scope="module", params=SERVERS)
def behind(request, tmp_path_factory):
    """One server (HTTP2=on, ROOT_PATH=/api) and the three proxies in front of it."""
    directory = tmp_path_factory.mktemp(f"proxied-{request.param}")
    server = start_app(directory, request.param)
    proxies: dict[str, Proxy] = {}
    try:
        for name in PROXIES:
            proxies[name] = Proxy(name, directory / name, server.port)
        yield request.param, server, proxies
    finally:
        for proxy in proxies.values():
            proxy.stop()
        server.kill_all()


# --------------------------------------------------------------------------
# through each proxy
# --------------------------------------------------------------------------
@pytest.mark.parametrize("proxy_name", PROXIES)
def test_the_clients_address_and_https_come_from_a_trusted_proxy_only(behind, proxy_name):
    _, _, proxies = behind
    proxy = proxies[proxy_name]
    port = proxy.port
    trusted = get_json(proxy, "/api/scope")
    assert (trusted["client"][0], trusted["scheme"]) == (CLIENT, "https"), trusted
    assert (trusted["root_path"], trusted["path"]) == (PREFIX, f"{PREFIX}/scope")
    assert trusted["url_for"] == f"https://127.0.0.1:{port}/api/scope"
    untrusted = get_json(proxy, "/ext/scope")  # the proxy reached the server over ::1, not trusted here
    assert (untrusted["client"][0], untrusted["scheme"]) == ("::1", "http"), untrusted


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_redirects_and_the_docs_keep_the_prefix(behind, proxy_name):
    _, _, proxies = behind
    proxy = proxies[proxy_name]
    status, headers, _ = call(proxy, "GET", "/api/go")
    assert (status, headers.get("location")) == (307, f"https://127.0.0.1:{proxy.port}/api/scope")
    status, _, page = call(proxy, "GET", "/api/docs")
    assert status == 200 and b"/api/openapi.json" in page, page[:2000]
    schema = get_json(proxy, "/api/openapi.json")
    assert "/scope" in schema["paths"]


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_websocket_through_the_proxy(behind, proxy_name):
    websockets_client = pytest.importorskip("websockets.sync.client")
    _, _, proxies = behind
    proxy = proxies[proxy_name]
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=(CLIENT, 0))
    with websockets_client.connect(
        f"wss://127.0.0.1:{proxy.port}/api/ws", sock=sock, ssl=insecure_tls(), open_timeout=10, close_timeout=5
    ) as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert (seen["client"][0], seen["scheme"], seen["root_path"]) == (CLIENT, "wss", PREFIX), seen
        ws.send("through the proxy")
        assert ws.recv(timeout=10) == "through the proxy"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=10) == b"\x00\xff" * 1000


BIG = os.urandom(BIG_MIB << 20)


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_20_mib_bodies_both_ways(behind, proxy_name):
    _, _, proxies = behind
    status, _, body = call(proxies[proxy_name], "POST", "/api/echo", BIG, {"content-type": "application/octet-stream"})
    assert status == 200 and len(body) == len(BIG)
    assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()


@pytest.mark.parametrize("proxy_name", ["haproxy", "caddy"])
def test_the_proxys_h2c_upstream_is_served_http2(behind, proxy_name):
    """HAProxy's `proto h2` server line and Caddy's `h2c://` upstream speak prior-knowledge h2c to the server."""
    _, _, proxies = behind
    proxy = proxies[proxy_name]
    seen = get_json(proxy, "/h2/scope")
    assert (seen["http_version"], seen["client"][0], seen["scheme"]) == ("2", CLIENT, "https"), seen
    # 4 MiB: Uvicorn's HTTP/2 (zttp) takes 13-22 s for 20 MiB through HAProxy's h2 upstream (README)
    sent = BIG[: 4 << 20]
    status, _, body = call(proxy, "POST", "/h2/echo", sent, {"content-type": "application/octet-stream"})
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(sent).digest()


# --------------------------------------------------------------------------
# a graceful stop behind each proxy, with requests in flight
# --------------------------------------------------------------------------
@pytest.mark.parametrize("server_name", SERVERS)
def test_a_graceful_stop_finishes_the_requests_in_flight_behind_the_proxies(tmp_path, server_name):
    server = start_app(tmp_path, server_name, GRACEFUL_TIMEOUT="20")
    proxies = []
    try:
        proxies = [Proxy(name, tmp_path / name, server.port) for name in PROXIES]
        with concurrent.futures.ThreadPoolExecutor(len(proxies)) as pool:
            slow = [pool.submit(call, proxy, "GET", "/api/sleep?seconds=2") for proxy in proxies]
            in_app = wait_until(lambda: request(server.port, "/sleeping", host="::1")[2] == str(len(proxies)), 15)
            assert in_app, server.output()[-3000:]
            server.process.send_signal(signal.SIGTERM)
            answers = [future.result(timeout=30) for future in slow]
        assert [status for status, _, _ in answers] == [200] * len(proxies), answers
        assert all(json.loads(body)["slept"] == 2 for _, _, body in answers)
        assert server.process.wait(30) in (0, -signal.SIGTERM), server.output()[-3000:]
    finally:
        for proxy in proxies:
            proxy.stop()
        server.kill_all()


# --------------------------------------------------------------------------
# the keep-alive race: a proxy reusing an idle upstream connection just as the server closes it
# --------------------------------------------------------------------------
ESTABLISHED = "01"  # a connection's state in /proc/net/tcp


def open_connections(port: int) -> int:
    """The server's open connections on `port` (its side of them: the local port is the server's)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            count += fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port
    return count


def burst(proxy: Proxy, count: int) -> list[int]:
    """`count` POSTs at once through the proxy (so that it opens several upstream connections): statuses."""

    def post(index: int) -> int:
        try:
            return call(proxy, "POST", "/api/echo", f"burst {index}".encode(), timeout=15)[0]
        except (OSError, http.client.HTTPException):
            return 0

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


@pytest.fixture(scope="module")
def keep_alive_server(tmp_path_factory):
    """Gunicorn with Uvicorn workers and KEEP_ALIVE=2, HTTP/1.1 only, for the keep-alive race."""
    server = start_app(tmp_path_factory.mktemp("keep-alive"), "gunicorn", KEEP_ALIVE=RACE_KEEP_ALIVE, HTTP2="off")
    yield server
    server.kill_all()


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_with_the_readmes_setting_no_idle_connection_reaches_the_servers_keep_alive(
    keep_alive_server, tmp_path, proxy_name
):
    """The race needs an idle connection that the proxy still holds when the server's KEEP_ALIVE runs out
    (2 s here): a request the proxy sends on it as the server closes it gets a 502. Half a second before
    that moment, with each proxy's stock settings the proxy still holds its connections; with the setting
    the README gives for that proxy it holds none (nginx and Caddy close them after 0.5 s idle; HAProxy,
    which has no idle timeout of its own, with `option http-server-close` keeps none)."""
    port = keep_alive_server.port
    for idle in (None, RACE_PROXY_IDLE):  # stock, then the README's
        proxy = Proxy(proxy_name, tmp_path / f"{proxy_name}-{idle or 'stock'}", port, idle=idle)
        try:
            assert wait_until(lambda: open_connections(port) == 0, 10)  # none left from before
            assert burst(proxy, 4) == [200] * 4, proxy.output()
            time.sleep(float(RACE_KEEP_ALIVE) - 0.5)
            held = open_connections(port)
            assert (held > 0) if idle is None else (held == 0), (idle, held)
        finally:
            proxy.stop()
