"""start.py read, not run: the README in sync with its tables, the contract implemented, its imports and Python 3.9.

What runs `python start.py` (exit statuses, one-line errors, --help, --dry-run) is in tests/e2e/test_cli_process.py.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, START

import start


def readme_table(marker: str = "env-table") -> str:
    text = (REPO / "docs" / "variables.md").read_text()
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert match, f"docs/variables.md lacks the {marker} markers"
    return match.group(1)


def test_readme_table_is_generated_from_the_code_table():
    assert readme_table() == start.markdown_table(), "regenerate: python scripts/sync_tables.py"
    assert readme_table("server-table") == start.server_table(), "regenerate: python scripts/sync_tables.py"


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
    assert project["tool"]["hatch"]["version"] == {"path": "start.py"}  # hatchling reads __version__ = "..."
    assert re.fullmatch(r"\d+\.\d+\.\d+", start.__version__)
