"""Parsing the environment into Settings: strict values, aliases, defaults, all problems at once."""

from __future__ import annotations

import pytest

import start


def parse(**env: str) -> start.Settings:
    return start.parse_settings(env)


def problems(**env: str) -> list[str]:
    with pytest.raises(start.ConfigError) as caught:
        start.parse_settings(env)
    return caught.value.problems


def test_defaults_come_from_the_table():
    settings = parse()
    for var in start.VARIABLES:
        if var.default is not None:
            assert settings.values[var.name] == var.parse(var.default), var.name
    assert (settings.server, settings.port, settings.host, settings.workers_per_core) == (
        "gunicorn",
        80,
        "0.0.0.0",
        1.0,
    )
    assert [settings.values[name] for name in ("TIMEOUT", "GRACEFUL_TIMEOUT", "KEEP_ALIVE")] == [120, 120, 5]
    assert (settings.access_log, settings.error_log, settings.log_level) == ("-", "-", "info")
    assert settings.with_reload is False and settings.web_concurrency is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("y", True),
        (" true ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("n", False),
    ],
)
def test_booleans_are_strict_but_case_insensitive(raw, expected):
    assert parse(WITH_RELOAD=raw).with_reload is expected


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"WITH_RELOAD": "maybe"}, "WITH_RELOAD='maybe'"),
        ({"USE_SSL": "on"}, "USE_SSL='on'"),
        ({"WORKERS_PER_CORE": "abc"}, "WORKERS_PER_CORE='abc'"),
        ({"WORKERS_PER_CORE": "0"}, "WORKERS_PER_CORE='0'"),
        ({"WORKERS_PER_CORE": "-1"}, "WORKERS_PER_CORE='-1'"),
        ({"WORKERS_PER_CORE": "nan"}, "WORKERS_PER_CORE='nan'"),
        ({"WORKERS_PER_CORE": "inf"}, "WORKERS_PER_CORE='inf'"),
        ({"WORKERS_PER_CORE": "1e3"}, "WORKERS_PER_CORE='1e3'"),
        ({"WORKERS_PER_CORE": "65"}, "WORKERS_PER_CORE='65'"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0'"),
        ({"WEB_CONCURRENCY": "+5"}, "WEB_CONCURRENCY='+5'"),
        ({"WEB_CONCURRENCY": "1_000"}, "WEB_CONCURRENCY='1_000'"),
        ({"WEB_CONCURRENCY": "٣"}, "WEB_CONCURRENCY='٣'"),  # ARABIC-INDIC DIGIT THREE
        ({"WEB_CONCURRENCY": "4097"}, "WEB_CONCURRENCY='4097'"),
        ({"BACKLOG": "4294967296"}, "BACKLOG='4294967296'"),
        ({"GRACEFUL_TIMEOUT": "86401"}, "GRACEFUL_TIMEOUT='86401'"),
        ({"WEB_CONCURRENCY": "2.5"}, "WEB_CONCURRENCY='2.5'"),
        ({"MAX_WORKERS": "-3"}, "MAX_WORKERS='-3'"),
        ({"PORT": "99999"}, "PORT='99999'"),
        ({"PORT": "0"}, "PORT='0'"),
        ({"PORT": "http"}, "PORT='http'"),
        ({"TCP_PORT": "70000"}, "TCP_PORT='70000'"),
        ({"SSL_PORT": "-1"}, "SSL_PORT='-1'"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='verbose'"),
        ({"SERVER": "nginx"}, "SERVER='nginx'"),
        ({"PROCESS_MANAGER": "apache"}, "PROCESS_MANAGER='apache'"),
        ({"APP_MODULE": "no-colon-or-bad name"}, "APP_MODULE='no-colon-or-bad name'"),
        ({"APP_MODULE": "main"}, "APP_MODULE='main'"),
        ({"APP_MODULE": "main:"}, "APP_MODULE='main:'"),
        ({"APP_MODULE": "1main:app"}, "APP_MODULE='1main:app'"),
        ({"MODULE_NAME": "my-app"}, "MODULE_NAME='my-app'"),
        ({"VARIABLE_NAME": "app()"}, "VARIABLE_NAME='app()'"),
        ({"BIND": "localhost"}, "BIND='localhost'"),
        ({"BIND": "0.0.0.0:80,:::"}, "BIND='0.0.0.0:80,:::'"),
        ({"TIMEOUT": "-5"}, "TIMEOUT='-5'"),
        ({"KEEP_ALIVE": "soon"}, "KEEP_ALIVE='soon'"),
        ({"GRACEFUL_TIMEOUT": "1.5"}, "GRACEFUL_TIMEOUT='1.5'"),
        ({"PYTHON_CPU_COUNT": "0"}, "PYTHON_CPU_COUNT='0'"),
        ({"CPU_REQUEST": "0"}, "CPU_REQUEST='0'"),
        ({"CPU_REQUEST": "0m"}, "CPU_REQUEST='0m'"),
        ({"CPU_REQUEST": "-1"}, "CPU_REQUEST='-1'"),
        ({"CPU_REQUEST": "half"}, "CPU_REQUEST='half'"),
        ({"CPU_REQUEST": "1.5m"}, "CPU_REQUEST='1.5m'"),
        ({"CPU_REQUEST": "0.0001"}, "CPU_REQUEST='0.0001'"),
        ({"CPU_REQUEST": "500Mi"}, "CPU_REQUEST='500Mi'"),
        ({"CPU_REQUEST": "1e3"}, "CPU_REQUEST='1e3'"),
        ({"CPU_REQUEST": ".5"}, "CPU_REQUEST='.5'"),
        ({"PRELOAD_APP": "sometimes"}, "PRELOAD_APP='sometimes'"),
        ({"HOST": "a b"}, "HOST='a b'"),
        ({"HEALTHCHECK_PATH": "health"}, "HEALTHCHECK_PATH='health'"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_accepted(env, fragment):
    found = problems(**env)
    assert len(found) == 1
    assert fragment in found[0]
    assert "expected" in found[0]


def test_all_problems_are_reported_together():
    found = problems(WITH_RELOAD="maybe", PORT="99999", LOG_LEVEL="verbose", SERVER="nginx")
    assert [line.split("=")[0] for line in found] == ["SERVER", "WITH_RELOAD", "PORT", "LOG_LEVEL"]


@pytest.mark.parametrize("name", ["PORT", "TCP_PORT"])
def test_port_alias(name):
    assert parse(**{name: "8080"}).port == 8080


def test_aliases_that_disagree_are_an_error_and_that_agree_are_not():
    assert parse(PORT="8080", TCP_PORT="8080").port == 8080
    assert "disagree" in problems(PORT="8080", TCP_PORT="9090")[0]
    assert parse(PROCESS_MANAGER="hypercorn").server == "hypercorn"
    assert "disagree" in problems(SERVER="uvicorn", PROCESS_MANAGER="hypercorn")[0]


def test_empty_means_default_except_for_the_logs():
    settings = parse(PORT="", WORKERS_PER_CORE=" ", ACCESS_LOG="", ERROR_LOG="")
    assert settings.port == 80 and settings.workers_per_core == 1
    assert settings.access_log == "" and settings.error_log == ""


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"USE_SSL": "true"}, "USE_SSL=true needs both CERTFILE and KEYFILE"),
        ({"USE_SSL": "true", "CERTFILE": "c.pem"}, "KEYFILE is missing"),
        ({"KEYFILE": "k.pem"}, "CERTFILE is missing"),
        ({"SERVER": "uvicorn", "USE_SSL": "1", "USE_TCP": "1", "CERTFILE": "c", "KEYFILE": "k"}, "USE_TCP=true"),
        ({"INSECURE_BIND": "0.0.0.0:80"}, "INSECURE_BIND works only with SERVER=hypercorn"),
        ({"SERVER": "uvicorn", "QUIC_BIND": "0.0.0.0:443"}, "QUIC_BIND works only with SERVER=hypercorn"),
        ({"SERVER": "hypercorn", "QUIC_BIND": "0.0.0.0:443"}, "QUIC_BIND needs TLS"),
        (
            {"SERVER": "hypercorn", "USE_SSL": "1", "CERTFILE": "c", "KEYFILE": "k", "SSL_PORT": "80"},
            "TLS and plain HTTP (USE_TCP) cannot share 0.0.0.0:80",
        ),
        ({"SERVER": "hypercorn", "WORKER_CLASS": "uvicorn_worker.UvicornWorker"}, "WORKER_CLASS="),
        ({"SERVER": "uvicorn", "BIND": "127.0.0.1:1,127.0.0.1:2"}, "binds one address only"),
        ({"MAX_REQUESTS_JITTER": "10"}, "MAX_REQUESTS_JITTER needs MAX_REQUESTS"),
        ({"SERVER": "uvicorn", "PRELOAD_APP": "true"}, "PRELOAD_APP works only with SERVER=gunicorn, not uvicorn"),
        ({"SERVER": "granian", "PRELOAD_APP": "true"}, "PRELOAD_APP works only with SERVER=gunicorn, not granian"),
        ({"PRELOAD_APP": "true", "WITH_RELOAD": "true"}, "PRELOAD_APP does not work with WITH_RELOAD=true"),
    ],
)
def test_combinations_that_cannot_work(env, fragment):
    assert any(fragment in problem for problem in problems(**env))


def test_use_tcp_defaults_to_true_only_where_it_exists():
    # Under Gunicorn/Uvicorn USE_SSL alone is fine: TLS only, no plain listener.
    tls = {"USE_SSL": "true", "CERTFILE": "c.pem", "KEYFILE": "k.pem"}
    assert parse(**tls).use_tcp is None
    hyper = parse(SERVER="hypercorn", **tls)
    assert hyper.insecure_binds == ["0.0.0.0:80"]
    assert parse(SERVER="hypercorn", USE_TCP="false", **tls).insecure_binds == []


@pytest.mark.parametrize(
    ("env", "binds"),
    [
        ({}, ["0.0.0.0:80"]),
        ({"HOST": "127.0.0.1", "PORT": "8000"}, ["127.0.0.1:8000"]),
        ({"HOST": "::", "PORT": "8000"}, ["[::]:8000"]),
        ({"USE_SSL": "1", "CERTFILE": "c", "KEYFILE": "k", "SSL_PORT": "8443"}, ["0.0.0.0:8443"]),
        ({"BIND": "127.0.0.1:1, [::1]:2 ,unix:/tmp/s.sock"}, ["127.0.0.1:1", "[::1]:2", "unix:/tmp/s.sock"]),
    ],
)
def test_bind_addresses(env, binds):
    assert parse(**env).binds == binds


@pytest.mark.parametrize(
    ("address", "expected"),
    [("h:80", ("h", 80)), ("[::1]:8", ("::1", 8)), ("::1:8", ("", None)), ("h:0", ("", None)), ("[::1]8", ("", None))],
)
def test_split_host_port(address, expected):
    assert start.split_host_port(address) == expected


@pytest.mark.parametrize(
    ("raw", "millicores"),
    [("500m", 500), ("1500m", 1500), ("1m", 1), ("2", 2000), ("1.5", 1500), ("0.25", 250), (" 3 ", 3000), ("1.", 1000)],
)
def test_cpu_request_reads_kubernetes_quantities_as_millicores(raw, millicores):
    assert parse(CPU_REQUEST=raw).cpu_request == millicores
    assert parse().cpu_request is None


def test_preload_app_with_reload_is_one_line():
    [line] = problems(PRELOAD_APP="true", WITH_RELOAD="true")
    assert line.startswith("PRELOAD_APP does not work with WITH_RELOAD=true")
