"""The worker keeper's rule, in process: which deaths are replaced, which end the server, and what is logged.
The keeper at work, under real servers, is in tests/e2e/test_reliability.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import start


def deaths() -> tuple[start.WorkerDeaths, list[str]]:
    logged: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(f"{record.levelname} {record.getMessage()}")

    logger = logging.getLogger("test_worker_keeper")
    logger.handlers = [Collect()]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return start.WorkerDeaths(logger), logged


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [
        (1, "exited with status 1"),
        (0, "exited with status 0"),
        (-9, "was killed by SIGKILL (out of memory?)"),
        (-11, "was killed by SIGSEGV"),
        (-200, "was killed by signal 200"),
        (None, "vanished"),
    ],
)
def test_how_a_worker_ended_in_words(exitcode, words):
    assert start.how_it_ended(exitcode) == words


def test_five_young_deaths_in_a_row_end_the_server_and_say_why():
    keeper, logged = deaths()
    young = start.YOUNG_DEATH_SECONDS / 2
    assert [keeper.ends_the_server(100 + n, 1, young) for n in range(start.YOUNG_DEATHS_TO_STOP)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert logged == [
        "ERROR worker 104 exited with status 1 5.0 s after it started, the 5. worker in a row to end within "
        "10 s of its start: stopping the server, exit status 3"
    ]


def test_a_worker_that_lived_long_enough_resets_the_count():
    keeper, _ = deaths()
    young, old = start.YOUNG_DEATH_SECONDS / 2, start.YOUNG_DEATH_SECONDS + 1
    for _ in range(start.YOUNG_DEATHS_TO_STOP - 1):
        assert not keeper.ends_the_server(1, -9, young)
    assert not keeper.ends_the_server(2, -9, old)  # an OOM kill after serving: replaced
    for _ in range(start.YOUNG_DEATHS_TO_STOP - 1):
        assert not keeper.ends_the_server(3, 1, young)
    assert keeper.ends_the_server(4, 1, young)


def test_a_worker_that_exits_0_is_recycled_not_dead():
    """MAX_REQUESTS: Hypercorn's and Uvicorn's workers exit 0 when they have served their share."""
    keeper, logged = deaths()
    assert not any(keeper.ends_the_server(n, 0, 0.1) for n in range(3 * start.YOUNG_DEATHS_TO_STOP))
    keeper.replaced(7, 0, 3.25, 8)
    keeper.replaced(9, -9, 12.0, 10)
    assert logged == [
        "INFO worker 7 exited with status 0 after 3.2 s; worker 8 replaces it",
        "ERROR worker 9 was killed by SIGKILL (out of memory?) after 12.0 s; worker 10 replaces it",
    ]


def test_the_keeper_module_stands_alone(tmp_path):
    source = start.keeper_source()
    assert source.startswith(start.KEEPER_HEADER)
    namespace: dict[str, object] = {"__name__": start.KEEPER_MODULE}
    exec(compile(source, "asgi_start_workers.py", "exec"), namespace)  # noqa: S102 -- our own section
    assert callable(namespace["keep_workers"])
    assert "def parse_settings" not in source and "def hand_over" not in source
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter (the Python 3.9 image run)")
    written = tmp_path / "asgi_start_workers.py"
    written.write_text(source)
    check = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "F821,F401,F811", str(written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
