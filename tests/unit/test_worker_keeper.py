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


def test_with_max_requests_a_worker_that_exits_0_is_recycled_not_dead():
    """MAX_REQUESTS: Hypercorn's and Uvicorn's workers exit 0 when they have served their share."""
    keeper, logged = deaths()
    keeper.recycles_by_count = True
    assert not any(keeper.ends_the_server(n, 0, 0.1) for n in range(3 * start.YOUNG_DEATHS_TO_STOP))
    keeper.replaced(7, 0, 3.25, 8)
    keeper.replaced(9, -9, 12.0, 10)
    assert logged == [
        "INFO worker 7 exited with status 0 after 3.2 s; worker 8 replaces it",
        "ERROR worker 9 was killed by SIGKILL (out of memory?) after 12.0 s; worker 10 replaces it",
    ]


def test_without_max_requests_an_exit_0_is_a_death():
    """Uvicorn before 0.40 exits 0 when its app's startup fails: that loop ends too."""
    keeper, _ = deaths()
    assert [keeper.ends_the_server(n, 0, 0.5) for n in range(start.YOUNG_DEATHS_TO_STOP)][-1] is True


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


# --- WORKER_MAX_MEMORY and WORKER_LIFETIME -----------------------------------


def test_each_worker_lives_its_lifetime_plus_its_own_jitter():
    recycler = start.Recycler(None, 100)
    workers = {1: 0.0, 2: 0.0, 3: 0.0}
    assert recycler.due(workers, 99.9) is None
    deadlines = dict(recycler.deadlines)
    assert all(100 <= deadline <= 100 * (1 + start.LIFETIME_JITTER) for deadline in deadlines.values())
    assert len(set(deadlines.values())) == 3  # apart, so that workers started together leave apart
    first = min(deadlines, key=deadlines.__getitem__)
    pid, why = recycler.due(workers, deadlines[first])
    assert pid == first and why.startswith(f"{deadlines[first]:.0f} s old, past WORKER_LIFETIME 100 s (+")
    assert recycler.deadlines == deadlines  # drawn once per worker


def test_memory_counts_consecutive_checks_ten_seconds_apart(tmp_path):
    """This process stands in for a worker: its real RSS is above 1 MiB and below 1 TiB."""
    me = start.os.getpid()
    recycler = start.Recycler(1 << 20, None)
    start_at = recycler.next_check - start.MEMORY_CHECK_SECONDS
    workers = {me: start_at - 60}
    times = [start_at + start.MEMORY_CHECK_SECONDS * n for n in (1, 1.5, 2, 3)]
    assert [recycler.due(workers, now) for now in times[:3]] == [None, None, None]  # 1.5: not a check
    pid, why = recycler.due(workers, times[3])
    assert pid == me and why.endswith(
        f"above WORKER_MAX_MEMORY 1 MiB for 3 checks {start.MEMORY_CHECK_SECONDS} s apart"
    )
    roomy = start.Recycler(1 << 40, None)
    assert all(roomy.due(workers, roomy.next_check + n * start.MEMORY_CHECK_SECONDS) is None for n in range(5))


def test_a_check_below_the_size_starts_the_count_again():
    me = start.os.getpid()
    recycler = start.Recycler(1 << 20, None)
    now = recycler.next_check
    workers = {me: now - 60}
    recycler.due(workers, now)
    recycler.due(workers, now + 10)
    recycler.max_memory = 1 << 40  # one check below it
    assert recycler.due(workers, now + 20) is None and recycler.above[me] == 0
    recycler.max_memory = 1 << 20
    assert recycler.due(workers, now + 30) is None and recycler.above[me] == 1


def test_no_replacement_while_a_worker_settles_in_and_gone_workers_are_forgotten():
    recycler = start.Recycler(None, 60)
    assert recycler.due({1: 0.0, 2: 100.0}, 102.0) is None  # worker 2 started 2 s ago
    assert recycler.due({1: 0.0, 2: 100.0}, 100.0 + start.SETTLE_SECONDS)[0] == 1
    assert recycler.due({2: 100.0}, 106.0) is None and 1 not in recycler.deadlines
