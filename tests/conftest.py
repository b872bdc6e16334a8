from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Server


@pytest.fixture
def servers():
    """Start servers through a list; whatever a test leaves running is killed afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        server.kill_all()
