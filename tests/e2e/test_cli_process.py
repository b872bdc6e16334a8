"""start.py run as a process, as users run it: exit statuses, one-line errors, --help, --dry-run, its imports.

Moved from tests/unit (test_cli.py, test_table.py, test_manifests.py): each runs `python start.py`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, START, clean_env, copy_app, dry_run, run_start
from unit.test_manifests import container, env, expected_workers, quantity

import start

pytestmark = pytest.mark.e2e


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


def test_generated_files_of_two_configurations_never_share_a_name(tmp_path):
    """Java's String.hashCode gave LOG_FILTERS=/Aa and /BB the same file name; two starts must not."""
    import subprocess

    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("app = None\n")
    names = []
    for filters in ("/Aa", "/BB"):
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "SERVER": "uvicorn", "LOG_FILTERS": filters}
        result = subprocess.run(
            [sys.executable, str(start.__file__), "--dry-run"],
            env=env,
            cwd=app_dir,
            capture_output=True,
            text=True,
            check=True,
        )
        names.append(set(json.loads(result.stdout)["files"]))
    assert names[0] and names[1] and not names[0] & names[1]


def test_start_py_accepts_the_environment_and_plans_the_expected_workers(tmp_path):
    """start.py --dry-run with the manifest's environment, the CPU limit given as PYTHON_CPU_COUNT."""
    variables = env()
    cpu_limit = quantity(container()["resources"]["limits"]["cpu"])
    cores = max(math.ceil(cpu_limit), 1)
    plan = dry_run(clean_env(**variables, PYTHON_CPU_COUNT=str(cores)), copy_app(tmp_path))
    assert plan["workers"] == expected_workers(variables, cpu_limit), plan
    assert plan["bind"] == [f"0.0.0.0:{variables['PORT']}"], plan
