"""Hostile paths: spaces, shell metacharacters, `..`, symlinks and missing files never reach a shell.

Every hostile name below would create a `pwned-*` file if a shell ever interpreted it;
after each test no such file may exist. The outcome is either a correct start (or a
correct `--dry-run` plan, naming the exact file) or one clear error line, exit status 2.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import (
    APPS,
    REPO,
    START,
    Server,
    all_gone,
    clean_env,
    descendants,
    http_get,
    reserve_port,
)

import start

pytestmark = pytest.mark.e2e

PREFIX = "asgi-start: error: "
# Each of these, run by a shell in the working directory, would leave a pwned-* file behind.
HOSTILE = [
    "with space",
    "semi; touch pwned-semi",
    "$(touch pwned-subst)",
    "`touch pwned-tick`",
    "and && touch pwned-and",
    "or || touch pwned-or",
    "pipe | touch pwned-pipe",
    "quote ' \" q",
    "star *",
    "redir > pwned-redir",
    "-dash",
    "$HOME ~ !x",
]
LAUNCHER_FILES = ("start.py", "gunicorn_conf.py", "hypercorn_conf.py")


@pytest.fixture(autouse=True)
def no_shell_ran(tmp_path):
    yield
    found = [str(path) for path in tmp_path.rglob("pwned*")] + [str(path) for path in REPO.glob("pwned*")]
    assert found == [], f"a shell interpreted a path: {found}"


# --------------------------------------------------------------------------
# Static: no way to reach a shell at all
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_no_shell_anywhere_in_the_launcher(name):
    source = (REPO / name).read_text()
    # "subprocess." and not the bare word: the worker keeper patches Uvicorn's keep_subprocess_alive
    for forbidden in ("shell=True", "os.system", "os.popen", "subprocess.", "import subprocess"):
        assert forbidden not in source, f"{name} contains {forbidden!r}"
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"subprocess", "pty", "commands", "popen2"}
    # The only ways start.py runs anything: exec the server, spawn the pre-start script (argv lists).
    process_calls = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr.startswith(("exec", "spawn", "posix_spawn", "system", "popen", "fork"))
    }
    assert process_calls <= {"execve", "posix_spawnp"}, process_calls
    # ... and no string handed to a shell: no "-c" argument anywhere.
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value == "-c"]


# --------------------------------------------------------------------------
# --dry-run over a matrix of hostile values: a plan naming the exact file, or one error line
# --------------------------------------------------------------------------


def make_tree(tmp_path: Path) -> Path:
    """An app directory, and beside it directories and files with every hostile name."""
    app_dir = tmp_path / "srv"
    app_dir.mkdir()
    shutil.copy(APPS / "basic" / "main.py", app_dir / "main.py")
    outside = tmp_path / "outside dir; touch pwned-outside"
    outside.mkdir()
    for index, name in enumerate(HOSTILE):
        (app_dir / f"{name}.sh").write_text("echo pre-start ran\n")
        (app_dir / f"{name}.py").write_text("print('pre-start ran')\n")
        executable = app_dir / f"{name}.exe"  # neither .py nor .sh: run directly
        executable.write_text("#!/bin/sh\necho pre-start ran\n")
        executable.chmod(0o755)
        (app_dir / f"{name} logs").mkdir()
        (outside / f"{index} {name}.py").write_text("workers = 1\n")
    (outside / "pre.sh").write_text("echo pre-start ran\n")
    (app_dir / "link to pre.sh").symlink_to(f"../{outside.name}/pre.sh")
    (app_dir / "conf link `touch pwned-conflink`.py").symlink_to(f"../{outside.name}/0 {HOSTILE[0]}.py")
    (app_dir / "dangling $(touch pwned-dangling).sh").symlink_to("nowhere $(touch pwned-nowhere).sh")
    (app_dir / "loop a").symlink_to("loop b")
    (app_dir / "loop b").symlink_to("loop a")
    (app_dir / "not executable; touch pwned-noexec").write_text("echo hi\n")
    return app_dir


class Outcome:
    def __init__(self, returncode: object, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def dry_run_case(app_dir: Path, **env: str) -> Outcome:
    """`start.py --dry-run` in the app directory, in-process (the same plan, much faster)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(app_dir)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status: object = start.main(["--dry-run"], clean_env(**env))
            except SystemExit as exit_:
                status = exit_.code
    finally:
        os.chdir(previous)
    outcome = Outcome(status, stdout.getvalue(), stderr.getvalue())
    assert "Traceback" not in outcome.stderr, outcome.stderr
    return outcome


def assert_one_line_error(result, variable: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr)
    lines = result.stderr.rstrip("\n").split("\n")
    assert all(line.startswith(PREFIX) for line in lines), result.stderr
    assert any(variable in line for line in lines), result.stderr


def test_pre_start_paths_are_run_as_argv_never_through_a_shell(tmp_path):
    app_dir = make_tree(tmp_path)
    outside = next(tmp_path.glob("outside dir*"))
    for name in HOSTILE:
        for suffix, runner in ((".sh", ["sh"]), (".py", [None]), (".exe", [])):
            result = dry_run_case(app_dir, PRE_START_PATH=f"{name}{suffix}")
            assert result.returncode == 0, result.stderr
            command = json.loads(result.stdout)["prestart_command"]
            expected = str(app_dir / f"{name}{suffix}")
            assert command[-1] == expected and len(command) == len(runner) + 1, command
        # absent: one line naming the variable
        assert_one_line_error(dry_run_case(app_dir, PRE_START_PATH=f"missing {name}.sh"), "PRE_START_PATH")
    # `..`, a symlink, a symlink through `..`: found, named as given (normalised), not resolved
    result = dry_run_case(app_dir, PRE_START_PATH=f"../{outside.name}/../{outside.name}/pre.sh")
    assert json.loads(result.stdout)["prestart_command"] == ["sh", str(outside / "pre.sh")]
    result = dry_run_case(app_dir, PRE_START_PATH="link to pre.sh")
    assert json.loads(result.stdout)["prestart_command"] == ["sh", str(app_dir / "link to pre.sh")]
    for broken in ("dangling $(touch pwned-dangling).sh", "loop a", "with space logs", "."):
        assert_one_line_error(dry_run_case(app_dir, PRE_START_PATH=broken), "PRE_START_PATH")
    assert_one_line_error(dry_run_case(app_dir, PRE_START_PATH="not executable; touch pwned-noexec"), "PRE_START_PATH")


@pytest.mark.parametrize(("variable", "server_name"), [("GUNICORN_CONF", "gunicorn"), ("HYPERCORN_CONF", "hypercorn")])
def test_config_file_paths_are_named_exactly_or_refused(tmp_path, variable, server_name):
    app_dir = make_tree(tmp_path)
    outside = next(tmp_path.glob("outside dir*"))
    for index, name in enumerate(HOSTILE):
        given = f"../{outside.name}/{index} {name}.py"
        result = dry_run_case(app_dir, SERVER=server_name, **{variable: given})
        assert result.returncode == 0, result.stderr
        plan = json.loads(result.stdout)
        assert plan["config_file"].removeprefix("file:") == str(outside / f"{index} {name}.py")
        assert_one_line_error(dry_run_case(app_dir, SERVER=server_name, **{variable: f"missing {name}.py"}), variable)
    # a symlink is named as given, not resolved
    result = dry_run_case(app_dir, SERVER=server_name, **{variable: "conf link `touch pwned-conflink`.py"})
    assert json.loads(result.stdout)["config_file"].removeprefix("file:") == str(
        app_dir / "conf link `touch pwned-conflink`.py"
    )
    for broken in (
        "python:os; touch pwned-module",
        "python:$(touch pwned-module)",
        "file:missing `touch pwned-file`.py",
        "dangling $(touch pwned-dangling).sh",
        "loop a",
        "srv",
    ):
        assert_one_line_error(dry_run_case(app_dir, SERVER=server_name, **{variable: broken}), variable)


@pytest.mark.parametrize("variable", ["ACCESS_LOG", "ERROR_LOG"])
def test_log_paths_are_named_exactly_or_refused(tmp_path, variable):
    app_dir = make_tree(tmp_path)
    for index, name in enumerate(HOSTILE):
        server_name = ("gunicorn", "uvicorn", "hypercorn")[index % 3]
        given = f"{name} logs/{name}.log"
        result = dry_run_case(app_dir, SERVER=server_name, WEB_CONCURRENCY="2", **{variable: given})
        assert result.returncode == 0, result.stderr
        assert_one_line_error(dry_run_case(app_dir, **{variable: f"no {name}/x.log"}), variable)
    assert_one_line_error(dry_run_case(app_dir, **{variable: "dangling $(touch pwned-dangling).sh/x.log"}), variable)


@pytest.mark.parametrize(
    "value",
    [
        "main:app; touch pwned-app",
        "$(touch pwned-app):app",
        "`touch pwned-app`:app",
        "main:app && touch pwned-app",
        "../main:app",
        "..main:app",
        "main.py:app",
        "/etc/passwd:app",
        "main:app app",
        "main:*",
        "missing module:app",
    ],
)
def test_app_module_with_metacharacters_is_one_error_line(tmp_path, value):
    app_dir = make_tree(tmp_path)
    assert_one_line_error(dry_run_case(app_dir, APP_MODULE=value), "APP_MODULE")


# --------------------------------------------------------------------------
# Real starts from a hostile directory with hostile file names
# --------------------------------------------------------------------------

HOSTILE_DIR = "app dir; touch pwned-dir && $(touch pwned-dir2) `touch pwned-dir3` 'q\" *"
PRESTART_MARKER = "prestart ran.txt"
GUNICORN_USER_CONF = "import runpy\nglobals().update(runpy.run_path({default!r}))\nworkers = 1\n"


def hostile_app(tmp_path: Path, start_alone: bool = False) -> tuple[Path, Path]:
    """The test app in a hostile directory, with a hostile pre-start script reached through `..` and a symlink."""
    app_dir = tmp_path / HOSTILE_DIR / "srv $(touch pwned-srv)"
    app_dir.mkdir(parents=True)
    shutil.copy(APPS / "basic" / "main.py", app_dir / "main.py")
    scripts = tmp_path / HOSTILE_DIR / "scripts; touch pwned-scripts"
    scripts.mkdir()
    (scripts / "pre `touch pwned-pre`.sh").write_text(f'echo "pre-start ran in $PWD" > "{PRESTART_MARKER}"\n')
    (app_dir / "pre link && touch pwned-link.sh").symlink_to(f"../{scripts.name}/pre `touch pwned-pre`.sh")
    (app_dir / "logs $(touch pwned-logs)").mkdir()
    start = START
    if start_alone:  # no config file beside start.py: settings go on the command line / GUNICORN_CMD_ARGS
        image_root = tmp_path / HOSTILE_DIR / "image root; touch pwned-root"
        image_root.mkdir()
        start = image_root / "start.py"
        shutil.copy(START, start)
    return app_dir, start


@pytest.mark.parametrize(
    ("server_name", "start_alone"),
    [
        ("gunicorn", False),
        ("gunicorn", True),
        ("uvicorn", True),
        ("hypercorn", False),
        ("hypercorn", True),
        ("granian", True),  # no config file: everything on its command line
    ],
)
def test_real_start_from_a_hostile_directory(servers, tmp_path, server_name, start_alone):
    app_dir, start = hostile_app(tmp_path, start_alone)
    access_log = "logs $(touch pwned-logs)/access `touch pwned-log`; && 'x\" *.log"
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(reserve_port()),
        "SERVER": server_name,
        "WEB_CONCURRENCY": "2",
        "PRE_START_PATH": f"../{app_dir.name}/pre link && touch pwned-link.sh",
        "ACCESS_LOG": access_log,
    }
    if server_name == "gunicorn" and not start_alone:
        conf = app_dir / "conf $(touch pwned-conf).py"
        conf.write_text(GUNICORN_USER_CONF.format(default=str(REPO / "gunicorn_conf.py")))
        env["GUNICORN_CONF"] = conf.name
    if server_name == "hypercorn" and not start_alone:
        conf = app_dir / "conf `touch pwned-conf`.py"
        conf.write_text(GUNICORN_USER_CONF.format(default=str(REPO / "hypercorn_conf.py")))
        env["HYPERCORN_CONF"] = f"file:{conf.name}"
    server = Server(app_dir, clean_env(**env), start=start)
    servers.append(server)
    assert server.wait_ready()[0] == 200, server.output()[-3000:]
    assert http_get(server.url("/probe-hostile"))[0] == 200
    marker = app_dir / PRESTART_MARKER
    assert marker.read_text().strip() == f"pre-start ran in {app_dir}"
    tree = descendants(server.pid)
    assert server.terminate() == 0, server.output()[-3000:]
    assert all_gone([server.pid, *tree]) == []
    log = app_dir / access_log
    assert "/probe-hostile" in log.read_text(), (os.listdir(log.parent), server.output()[-2000:])
