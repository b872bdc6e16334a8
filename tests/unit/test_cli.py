"""start.py as users run it: exit statuses, one-line errors, --help, --dry-run, and the README in sync."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, START, clean_env, copy_app, run_start

import start


@pytest.fixture
def app_dir(tmp_path):
    return copy_app(tmp_path)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WITH_RELOAD": "maybe"}, "WITH_RELOAD"),
        ({"WORKERS_PER_CORE": "abc"}, "WORKERS_PER_CORE"),
        ({"WORKERS_PER_CORE": "0"}, "WORKERS_PER_CORE"),
        ({"WORKERS_PER_CORE": "-1"}, "WORKERS_PER_CORE"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
        ({"PORT": "99999"}, "PORT"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"SERVER": "nginx"}, "SERVER"),
        ({"APP_MODULE": "no-colon-or-bad name"}, "APP_MODULE"),
        ({"APP_MODULE": "not_here:app"}, "APP_MODULE"),
        ({"GUNICORN_CONF": "missing_conf.py"}, "GUNICORN_CONF"),
        ({"USE_SSL": "true"}, "USE_SSL"),
        ({"PRE_START_PATH": "missing.sh"}, "PRE_START_PATH"),
    ],
)
@pytest.mark.parametrize("mode", ["--dry-run", None])
def test_bad_input_is_one_line_exit_2_and_nothing_starts(app_dir, env, variable, mode):
    result = run_start(
        [mode] if mode else [], clean_env(PORT="1", **env) if "PORT" not in env else clean_env(**env), app_dir
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asgi-start: error: ") and variable in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_every_problem_at_once(app_dir):
    result = run_start(["--dry-run"], clean_env(WITH_RELOAD="maybe", PORT="99999", SERVER="nginx"), app_dir)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 3


def test_no_app_lists_where_it_looked(tmp_path):
    result = run_start(["--dry-run"], clean_env(), tmp_path)
    assert result.returncode == 2
    assert f"looked for {tmp_path}/app/main.py and {tmp_path}/main.py" in result.stderr


def test_missing_server_names_the_package(app_dir, tmp_path):
    # An interpreter with no servers installed: a bare virtual environment.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    result = run_start(["--dry-run"], clean_env(SERVER="hypercorn"), app_dir, python=str(tmp_path / "bare/bin/python"))
    assert result.returncode == 2
    assert "pip install hypercorn" in result.stderr and len(result.stderr.splitlines()) == 1


def test_unknown_arguments(app_dir):
    result = run_start(["--dryrun"], clean_env(), app_dir)
    assert result.returncode == 2 and "--dryrun" in result.stderr


def test_dry_run_prints_one_json_object(app_dir):
    result = run_start(["--dry-run", "--", "--preload"], clean_env(WEB_CONCURRENCY="3", PORT="8080"), app_dir)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["argv"][:4] == [sys.executable, f"{plan['runtime_dir']}/hand_over.py", "--fork-guard", "gunicorn"]
    assert plan["argv"][-2:] == ["--preload", "main:app"]
    assert (plan["workers"], plan["bind"], plan["app_module"], plan["reload"]) == (
        3,
        ["0.0.0.0:8080"],
        "main:app",
        False,
    )
    assert plan["config_file"] == str(REPO / "gunicorn_conf.py")
    assert result.stderr == ""


def test_dry_run_does_not_run_the_prestart_script(app_dir):
    (app_dir / "prestart.sh").write_text("touch ran\n")
    result = run_start(["--dry-run"], clean_env(), app_dir)
    assert json.loads(result.stdout)["prestart"] == str(app_dir / "prestart.sh")
    assert not (app_dir / "ran").exists()


def test_help_lists_every_variable_with_its_default():
    result = run_start(["--help"], clean_env(), REPO)
    assert result.returncode == 0
    for var in start.VARIABLES:
        assert var.name in result.stdout
    assert "WORKERS_PER_CORE  [default: 1]" in result.stdout


def readme_table(marker: str = "env-table") -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert match, f"README.md lacks the {marker} markers"
    return match.group(1)


def test_readme_table_is_generated_from_the_code_table():
    assert readme_table() == start.markdown_table(), "regenerate: python scripts/sync_readme_table.py"
    assert readme_table("server-table") == start.server_table(), "regenerate: python scripts/sync_readme_table.py"


@pytest.mark.parametrize("name", ["contract.md", "contract-next.md"])
def test_contract_variables_are_all_implemented(name):
    contract = REPO.parent / "shared" / name
    if not contract.exists():
        pytest.skip(f"{contract} is not beside this checkout")
    names = set()
    for line in contract.read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z_]+)`", line.split("|")[1]))
    ours = {name for var in start.VARIABLES for name in (var.name, *var.aliases)}
    assert names and names <= ours, names - ours


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in 3.10")
def test_start_py_imports_only_the_standard_library():
    tree = ast.parse(START.read_text())
    modules = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    modules.discard("__future__")
    assert modules, "no imports found: the check is broken"
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def imported_modules(*args: str, cwd: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_dry_run_imports_nothing_beyond_the_bare_interpreter(app_dir):
    bare = imported_modules("-c", "pass", cwd=app_dir)
    assert "os" in bare  # the check sees imports at all
    extra = imported_modules(str(START), "--dry-run", cwd=app_dir) - bare
    # no server, no app, not even json, re, typing, importlib or subprocess: start-up time is the product
    assert extra <= {"__future__"}, extra


def test_vermin_says_python_3_9():
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "--no-tips",
            "--violations",
            "-t=3.9-",
            str(START),
            str(REPO / "prestart.py"),
            str(REPO / "gunicorn_conf.py"),
            str(REPO / "hypercorn_conf.py"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compiled_start_runs_and_gives_way_to_a_changed_source(tmp_path):
    """The image runs /start.pyc (compiled at build); a start.py changed since then runs instead."""
    import py_compile

    copy = tmp_path / "start.py"
    copy.write_text(START.read_text())
    py_compile.compile(
        str(copy),
        cfile=str(tmp_path / "start.pyc"),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    run = [sys.executable, str(tmp_path / "start.pyc"), "--version"]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == f"asgi-start {start.__version__}\n"
    copy.write_text(START.read_text().replace(f'__version__ = "{start.__version__}"', '__version__ = "9.9.9"'))
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "asgi-start 9.9.9\n"


def test_help_names_every_server_from_the_list_of_servers():
    text = start.help_text()
    for server in start.SERVERS:
        assert start.PROFILES[server].title in text.split("Environment variables")[0]
    assert tuple(start.PROFILES) == start.SERVERS
    # the runtime's access loggers (it cannot see the profiles) are the profiles' own
    assert tuple(profile.access_logger for profile in start.PROFILES.values()) == start.ACCESS_LOGGERS


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in 3.11")
def test_the_version_is_written_once_in_start_py():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "start.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", start.__version__)
