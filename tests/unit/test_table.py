"""The table drives every per-server mapping: each entry reaches every server it names, in both
modes (config file and command line), and nothing a server is told lacks what its mode needs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import start

ALL_INSTALLED = frozenset(
    {"gunicorn", "uvicorn", "uvicorn_worker", "hypercorn", "granian", "watchfiles", "uvloop", "rloop", "trio"}
)
# Servers without config files: every setting is a flag.
FLAGS_ONLY = ("uvicorn", "granian")

# A valid sample value for each kind of variable; a variable of a new kind needs one here.
SAMPLE_BY_PARSER = {
    start.parse_seconds: "7",
    start.parse_backlog: "256",
    start.parse_request_count: "9",
    start.parse_log_level: "warning",
    start.parse_text: "10.0.0.1",
    start.parse_path: "given.pem",
    start.parse_address_list: "127.0.0.1:8443",
    start.parse_path_list: "*.py",
    start.parse_reload_delay: "0.25",
    start.parse_root_path: "/api",
    start.parse_forwarded_allow_ips: "10.0.0.1",
    start.parse_bool: "true",  # a switch: a bare flag, True in a config file
    start.parse_memory: "300M",
    start.parse_worker_lifetime: "90",
    start.parse_http2: "off",
}
# Where the parser's sample is not a valid value of the variable.
SAMPLE_BY_NAME = {"WORKER_CLASS": "asyncio"}
# What a variable needs beside it to be valid at all.
COMPANIONS = {
    "CERTFILE": {"KEYFILE": "other.pem"},
    "KEYFILE": {"CERTFILE": "other.pem"},
    "MAX_REQUESTS_JITTER": {"MAX_REQUESTS": "100"},
    "QUIC_BIND": {"CERTFILE": "other.pem", "KEYFILE": "other.pem"},
    "RELOAD_INCLUDES": {"WITH_RELOAD": "true"},
    "RELOAD_EXCLUDES": {"WITH_RELOAD": "true"},
    "RELOAD_DELAY": {"WITH_RELOAD": "true"},
}
MAPPED = [(var, server) for var in start.VARIABLES for server in var.to]


def facts_for(app_dir: Path, start_dir: Path) -> start.Facts:
    return start.Facts(
        app_dir=str(app_dir),
        start_dir=str(start_dir),
        cpus=start.CpuCount(2, "CPU affinity"),
        installed=lambda name: name in ALL_INSTALLED,
        search_path=start.module_search_path(str(app_dir)),
        dev_shm=False,
        version=lambda name: {"gunicorn": (27, 0, 1), "granian": (2, 8, 7)}.get(name, (0,)),
    )


@pytest.fixture
def dirs(tmp_path):
    app_dir, with_config, alone = tmp_path / "app", tmp_path / "image", tmp_path / "alone"
    for directory in (app_dir, with_config, alone):
        directory.mkdir()
    (app_dir / "main.py").write_text("app = None\n")
    for name in ("given.pem", "other.pem"):
        (app_dir / name).write_text("")
    for name in ("gunicorn_conf.py", "hypercorn_conf.py"):
        (with_config / name).write_text("")
    return app_dir, with_config, alone


def sample(var: start.Var) -> str:
    return SAMPLE_BY_NAME.get(var.name) or SAMPLE_BY_PARSER[var.parse]


def expected_value(var: start.Var, server: str, app_dir: Path) -> str:
    """The sample as the server is told it: a path made absolute, in the server's unit (To.convert)."""
    if var.is_path:
        return str(app_dir / sample(var))
    convert = var.to[server].convert
    if convert is None:
        return sample(var)
    value = convert(var.parse(sample(var)))
    return str(value[0] if isinstance(value, list) else value)


def plan(env: dict[str, str], app_dir: Path, start_dir: Path) -> tuple[start.Plan | None, list[str]]:
    problems: list[str] = []
    settings = start.parse_settings(env, problems)
    result = start.plan_launch(settings, facts_for(app_dir, start_dir), (), problems)
    return (None if problems else result), problems


def command_line(result: start.Plan) -> list[str]:
    """What the server reads as its command line: the argv, and Gunicorn's GUNICORN_CMD_ARGS."""
    return result.argv + shlex.split(result.env.get("GUNICORN_CMD_ARGS", ""))


def test_every_mapped_variable_has_a_sample_value():
    assert MAPPED, "the table maps nothing: the check is broken"
    assert {var.name for var, _ in MAPPED if var.parse not in SAMPLE_BY_PARSER} == set()


@pytest.mark.parametrize(("var", "server"), MAPPED, ids=[f"{var.name}-{server}" for var, server in MAPPED])
def test_each_entry_reaches_the_server_on_its_command_line(dirs, var, server):
    app_dir, _, alone = dirs
    to = var.to[server]
    env = {"SERVER": server, var.name: sample(var), **COMPANIONS.get(var.name, {})}
    result, problems = plan(env, app_dir, alone)
    if to.flag is None:  # the value cannot go on this server's command line: said so, not dropped
        assert any(problem.startswith(f"{var.name} needs a") and to.no_flag in problem for problem in problems)
        return
    assert result is not None, problems
    argv = command_line(result)
    assert to.flag in argv, argv
    if var.parse is start.parse_bool:
        return
    values = [argv[index + 1] for index, arg in enumerate(argv) if arg == to.flag]
    assert expected_value(var, server, app_dir) in values


@pytest.mark.parametrize(("var", "server"), MAPPED, ids=[f"{var.name}-{server}" for var, server in MAPPED])
def test_each_entry_reaches_the_server_through_its_config_file(dirs, var, server):
    app_dir, with_config, _ = dirs
    to = var.to[server]
    env = {"SERVER": server, var.name: sample(var), **COMPANIONS.get(var.name, {})}
    result, problems = plan(env, app_dir, with_config)
    assert result is not None, problems
    if to.key is None:  # a server without config files: on the command line, as above
        assert server in FLAGS_ONLY and result.config_file is None
        return
    options = json.loads(result.files[result.env[start.OPTIONS_VARIABLE]])
    value = options[to.key]
    if var.parse is start.parse_bool:
        assert value is True
        return
    assert str(value[0] if isinstance(value, list) else value) == expected_value(var, server, app_dir)


@pytest.mark.parametrize(("var", "server"), MAPPED, ids=[f"{var.name}-{server}" for var, server in MAPPED])
def test_each_entry_has_what_its_server_needs(var, server):
    to = var.to[server]
    assert server in var.servers, f"{var.name} maps to {server} but is not allowed there"
    if server in FLAGS_ONLY:  # no config file: a flag, nothing else
        assert to.flag and to.key is None
    else:  # a config key for the config file; a flag, or the reason there is none
        assert to.key
        assert to.flag or to.no_flag


@pytest.mark.parametrize("server", start.SERVERS)
def test_the_server_table_in_the_readme_covers_every_mapped_variable(server):
    table = start.server_table()
    for var in start.VARIABLES:
        assert (f"| `{var.name}` |" in table) == bool(var.to)


@pytest.mark.parametrize(
    ("var", "server"),
    [(var, server) for var in start.VARIABLES for server in start.SERVERS if server not in var.servers],
    ids=lambda item: getattr(item, "name", item),
)
def test_a_variable_set_under_a_server_it_does_not_support_is_an_error(dirs, var, server):
    app_dir, with_config, _ = dirs
    value = SAMPLE_BY_PARSER.get(var.parse, "127.0.0.1:8443")
    _, problems = plan({"SERVER": server, var.name: value, **COMPANIONS.get(var.name, {})}, app_dir, with_config)
    assert any(problem.startswith(var.name) and f"SERVER={var.servers[0]}" in problem for problem in problems)


def test_problems_of_every_stage_come_together(dirs):
    app_dir, with_config, _ = dirs
    env = {
        "PORT": "http",  # parsing
        "INSECURE_BIND": "0.0.0.0:81",  # the table's server restriction (Hypercorn only)
        "CERTFILE": "missing.pem",  # a file
        "KEYFILE": "given.pem",
        "GUNICORN_CONF": "nowhere.py",  # the planner
        "PRE_START_PATH": "nope.sh",
    }
    _, problems = plan(env, app_dir, with_config)
    assert [problem.split("=")[0].split(" ")[0] for problem in problems] == [
        "PORT",
        "INSECURE_BIND",
        "CERTFILE",
        "PRE_START_PATH",
        "GUNICORN_CONF",
    ]


def test_runtime_module_is_the_server_side_section_and_stands_alone(tmp_path):
    source = start.runtime_module_source()
    assert source.startswith(start.RUNTIME_MODULE_HEADER)
    namespace: dict[str, object] = {"__name__": "asgi_start"}
    exec(compile(source, "asgi_start.py", "exec"), namespace)  # noqa: S102 -- our own section, standing alone
    for name in (
        "json_formatter",
        "text_formatter",
        "access_path_filter",
        "granian_request_line_filter",
        "hand_over",
        "proxied_app",
        "granian_app",
    ):
        assert callable(namespace[name])
    # nothing of the launcher rides along
    assert len(source.splitlines()) < 600  # read from its bytecode; the bound keeps launcher code out
    assert "def parse_settings" not in source and "VARIABLES" not in source
    # every name it uses is its own (ruff's undefined-name check on the written module)
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter (the Python 3.9 image run)")
    written = tmp_path / "asgi_start.py"
    written.write_text(source)
    check = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "F821,F401,F811", str(written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


def test_runtime_bytecode_is_written_and_valid(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(start.os, "environ", {**start.os.environ, "TMPDIR": str(tmp_path)})
    directory = str(tmp_path / "runtime")
    start.prepare_runtime(directory, {})
    source = Path(directory, "asgi_start.py")
    cache = Path(importlib.util.cache_from_source(str(source)))
    assert cache.is_file()
    data = cache.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    stat = source.stat()
    assert int.from_bytes(data[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
    assert int.from_bytes(data[12:16], "little") == stat.st_size
    # a second start changes nothing (same mtime, so a running server's workers keep their cache)
    before = (source.stat().st_mtime_ns, cache.stat().st_mtime_ns)
    start.prepare_runtime(directory, {})
    assert (source.stat().st_mtime_ns, cache.stat().st_mtime_ns) == before


def test_the_layered_config_file_stands_alone(tmp_path):
    """The config file written for a user's own config file: its own names only, and nothing but settings
    left in its namespace (Hypercorn pickles every name of it for its spawned workers)."""
    source = start.layered_config_source()
    assert source.startswith(start.LAYERED_CONFIG_HEADER) and source.endswith(start.LAYERED_CONFIG_FOOTER)
    assert "def parse_settings" not in source and "def json_formatter" not in source
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter (the Python 3.9 image run)")
    written = tmp_path / "layered_config.py"
    written.write_text(source)
    check = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "F821,F401,F811", str(written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
