from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Server, granian_usable


def pytest_collection_modifyitems(config, items):
    """Cases of SERVER=granian are skipped where no usable Granian is installed (the Python 3.9 run:
    its last release for 3.9, 2.5.7, is older than start.py accepts)."""
    if granian_usable():
        return
    skip = pytest.mark.skip(reason="no granian >= 2.6 for this Python (Granian 2.6 needs Python 3.10+)")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "granian" in params.values() or "granian" in item.nodeid.lower():
            item.add_marker(skip)


@pytest.fixture
def servers():
    """Start servers through a list; whatever a test leaves running is killed afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        server.kill_all()
