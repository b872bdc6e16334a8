"""Fixtures of the image tests (tests/docker): the engine, the stand-in bases, the built images."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dockerlib
from dockerlib import REPO, REPORT, STANDINS, Containers, standin


@pytest.fixture(scope="session")
def engine() -> None:
    problem = dockerlib.engine_available()
    if problem:
        pytest.fail(f"ASGI_START_DOCKER=1 but {problem}", pytrace=False)
    yield
    dockerlib.remove_labelled_containers()


class Images:
    """The project's Dockerfile built per (suite, target), each once per session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def get(self, suite: str, target: str) -> str:
        tag = f"asgi-start-test:{suite}-{target}"
        with self._lock:
            lock = self._locks.setdefault((suite, target), threading.Lock())
        with lock:
            if tag not in REPORT["builds"]:
                base = standin(suite)
                dockerlib.build(
                    tag,
                    REPO,
                    target=target,
                    build_args={"BASE_IMAGE": base, "PYTHON_VERSION": STANDINS[suite], "VARIANT": "slim"},
                )
        return tag


@pytest.fixture(scope="session")
def images(engine: None) -> Images:
    return Images()


@pytest.fixture
def containers(engine: None):
    running = Containers()
    yield running
    running.remove_all()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if not REPORT["builds"]:
        return
    write = terminalreporter.write_line
    terminalreporter.section("asgi-start images (stand-in bases; the sizes include the base image)")
    write(f"{'image':<48} {'size':>10} {'build':>8}")
    for tag, seconds in REPORT["builds"].items():
        size = REPORT["sizes"].get(tag, 0)
        write(f"{tag:<48} {size / 1e6:>7.1f} MB {seconds:>7.1f}s")
    for tag, size in REPORT.get("bases", {}).items():
        write(f"{tag:<48} {size / 1e6:>7.1f} MB {'(base)':>8}")
