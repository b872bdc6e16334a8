"""The worker count: the seed rules on the effective CPU count, and the sentence that explains it."""

from __future__ import annotations

import pytest

import start


def workers(cpus: int, source: str = "CPU affinity", **env: str) -> tuple[int, str]:
    return start.compute_workers(start.parse_settings(env), start.CpuCount(cpus, source))


@pytest.mark.parametrize(
    ("cpus", "env", "expected"),
    [
        (1, {}, 2),  # never fewer than 2 computed workers
        (2, {}, 2),
        (4, {}, 4),
        (16, {}, 16),
        (4, {"WORKERS_PER_CORE": "2"}, 8),
        (4, {"WORKERS_PER_CORE": "0.5"}, 2),
        (8, {"WORKERS_PER_CORE": "0.5"}, 4),
        (3, {"WORKERS_PER_CORE": "1.5"}, 4),  # int(4.5)
        (100, {"WORKERS_PER_CORE": "0.29"}, 29),  # no float flooring to 28
        (16, {"MAX_WORKERS": "4"}, 4),
        (1, {"MAX_WORKERS": "1"}, 1),  # the cap applies after the minimum of 2
        (4, {"WEB_CONCURRENCY": "3"}, 3),
        (4, {"WEB_CONCURRENCY": "1"}, 1),
        (4, {"WEB_CONCURRENCY": "9", "MAX_WORKERS": "2"}, 9),  # exact beats the cap
        (4, {"WEB_CONCURRENCY": "9", "WITH_RELOAD": "true"}, 1),  # reload is one process
        (4, {"WITH_RELOAD": "true"}, 1),
    ],
)
def test_worker_count(cpus, env, expected):
    assert workers(cpus, **env)[0] == expected


def test_reason_says_where_the_number_came_from():
    assert workers(2, "cgroup quota 1.5", WORKERS_PER_CORE="2")[1] == (
        "4 workers = 2 CPUs (cgroup quota 1.5) × WORKERS_PER_CORE 2"
    )
    assert workers(1)[1] == "2 workers = 1 CPU (CPU affinity) × WORKERS_PER_CORE 1, raised to the minimum of 2"
    assert workers(16, MAX_WORKERS="4")[1].endswith(", capped by MAX_WORKERS 4")
    assert workers(4, WEB_CONCURRENCY="9", MAX_WORKERS="2")[1] == (
        "9 workers = WEB_CONCURRENCY (exact; MAX_WORKERS 2 caps only the computed count)"
    )
    assert workers(4, WITH_RELOAD="1")[1] == "1 worker (WITH_RELOAD runs one process)"


def test_python_cpu_count_overrides_everything(tmp_path):
    settings = start.parse_settings({"PYTHON_CPU_COUNT": "7"})
    assert vars(start.effective_cpu_count(settings, root=str(tmp_path), affinity=2)) == {
        "count": 7,
        "source": "PYTHON_CPU_COUNT",
    }
    default = start.parse_settings({"PYTHON_CPU_COUNT": "default"})
    assert start.effective_cpu_count(default, root=str(tmp_path), affinity=3).count == 3
