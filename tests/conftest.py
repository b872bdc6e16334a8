from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import CGROUP_V1, Server, granian_usable, release_ports


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


@pytest.fixture(autouse=True)
def reserved_ports():
    """The ports reserve_port() held during a test are let go after it (after its servers are stopped)."""
    yield
    release_ports()


@pytest.fixture
def cgroup(servers):
    """make(controller, {file: value}): a cgroup v1 directory under /sys/fs/cgroup/<controller> (cpu, memory)
    with those limits written; removed after the test, once its servers are killed (so it is empty)."""
    created: list[Path] = []

    def make(controller: str, limits: dict[str, str]) -> Path:
        path = CGROUP_V1 / controller / f"asgi-start-test-{os.getpid()}-{len(created)}"
        path.mkdir()
        created.append(path)
        for name, value in limits.items():
            (path / name).write_text(value)
        return path

    yield make
    for server in servers:  # before the cgroup goes, whatever the test left in it
        server.kill_all()
    for path in created:
        deadline = time.monotonic() + 10
        while True:
            try:
                path.rmdir()
                break
            except OSError:  # EBUSY while the last killed processes are still leaving it
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
