"""The README's three migration tables: every variable row names tests, and every test it names exists.

A row backed by a test is the point of the tables (issue "Drop-in"); this keeps a renamed or dropped
test from leaving a row that no longer has one.
"""

from __future__ import annotations

import ast
import re

from helpers import REPO

TABLES = {
    "tiangolo/uvicorn-gunicorn-docker": "test_tiangolo.py",
    "inboard": "test_inboard.py",
    "hypercorn-docker": "test_hypercorn_docker.py",
}


def migration_tables() -> dict[str, list[str]]:
    """The rows of each table of the migration page (docs/migrating.md), by the image it is for."""
    section = (REPO / "docs" / "migrating.md").read_text()
    tables: dict[str, list[str]] = {}
    for heading, body in re.findall(r"^### (.+?)\n(.*?)(?=^### |^## |\Z)", section, re.M | re.S):
        rows = [line for line in body.splitlines() if line.startswith("| `")]
        tables[heading.split(" (")[0].strip()] = rows
    return tables


def defined_tests(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_names_tests_that_exist():
    tables = migration_tables()
    assert set(tables) == set(TABLES), tables.keys()
    for image, rows in tables.items():
        own = defined_tests(REPO / "tests" / "compat" / TABLES[image])
        assert len(rows) >= 10, image
        for row in rows:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert len(cells) == 3, row
            named = re.findall(r"`((?:tests/[\w/]+\.py)|(?:test_\w+))`", cells[2])
            assert named, f"{image}: no test named in {row}"
            for name in named:
                if name.startswith("tests/"):
                    assert (REPO / name).is_file(), f"{image}: {name} does not exist"
                else:
                    assert name in own, f"{image}: {name} is not a test of {TABLES[image]}"
