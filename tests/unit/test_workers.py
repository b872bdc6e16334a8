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
        (4, {"WEB_CONCURRENCY": "9", "MAX_WORKERS": "2"}, 2),  # MAX_WORKERS caps WEB_CONCURRENCY too
        (4, {"WEB_CONCURRENCY": "2", "MAX_WORKERS": "9"}, 2),
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
        "2 workers = WEB_CONCURRENCY 9, capped by MAX_WORKERS 2"
    )
    assert workers(4, WEB_CONCURRENCY="1", MAX_WORKERS="2")[1] == "1 worker = WEB_CONCURRENCY"
    assert workers(4, WITH_RELOAD="1")[1] == "1 worker (WITH_RELOAD runs one process)"


def test_python_cpu_count_overrides_everything(tmp_path):
    settings = start.parse_settings({"PYTHON_CPU_COUNT": "7"})
    assert vars(start.effective_cpu_count(settings, root=str(tmp_path), affinity=2)) == {
        "count": 7,
        "source": "PYTHON_CPU_COUNT",
    }
    default = start.parse_settings({"PYTHON_CPU_COUNT": "default"})
    assert start.effective_cpu_count(default, root=str(tmp_path), affinity=3).count == 3


# --- WORKER_MEMORY ---------------------------------------------------------------------

MiB = 1 << 20


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("256M", 256 * MiB),
        ("256m", 256 * MiB),
        ("512Mi", 512 * MiB),
        ("1G", 1024 * MiB),
        ("1Gi", 1024 * MiB),
        ("1.5G", 1536 * MiB),
        ("64k", 64 * 1024),
        ("1048576", MiB),
        (" 200M ", 200 * MiB),
    ],
)
def test_worker_memory_sizes(raw, expected):
    assert start.parse_settings({"WORKER_MEMORY": raw}).worker_memory == expected


@pytest.mark.parametrize(
    "raw", ["lots", "0", "-1M", "1e9", "M", "12Q", "5i", "1.2.3G", "١٠M", "2P", "9" * 400 + "M", "0." + "9" * 400]
)
def test_worker_memory_bad_values_name_the_variable(raw):
    with pytest.raises(start.ConfigError) as caught:
        start.parse_settings({"WORKER_MEMORY": raw})
    [problem] = caught.value.problems
    assert problem.startswith(f"WORKER_MEMORY={raw!r} is not valid; expected a size such as 256M")


@pytest.mark.parametrize(
    ("env", "cpus", "limit", "expected"),
    [
        # the case: 8 CPUs, 512 MiB, 200 MiB a worker
        (
            {"WORKER_MEMORY": "200M"},
            8,
            512 * MiB,
            (2, "2 workers = 512 MiB limit ÷ WORKER_MEMORY 200 MiB (CPU rule: 8)"),
        ),
        (
            {"WORKER_MEMORY": "150M"},
            4,
            512 * MiB,
            (3, "3 workers = 512 MiB limit ÷ WORKER_MEMORY 150 MiB (CPU rule: 4)"),
        ),
        ({"WORKER_MEMORY": "1G"}, 4, 512 * MiB, (1, "1 worker = 512 MiB limit ÷ WORKER_MEMORY 1 GiB (CPU rule: 4)")),
        ({"WORKER_MEMORY": "100M"}, 2, 512 * MiB, (2, "2 workers = 2 CPUs (test) × WORKERS_PER_CORE 1")),  # CPU decides
        ({"WORKER_MEMORY": "100M"}, 8, None, (8, "8 workers = 8 CPUs (test) × WORKERS_PER_CORE 1")),  # no limit
        ({"WORKER_MEMORY": "200M", "MAX_WORKERS": "3"}, 8, 512 * MiB, (2, None)),  # after MAX_WORKERS
        ({"WORKER_MEMORY": "200M", "WEB_CONCURRENCY": "6"}, 8, 512 * MiB, (6, "6 workers = WEB_CONCURRENCY")),
        ({"WORKER_MEMORY": "200M", "WITH_RELOAD": "1"}, 8, 512 * MiB, (1, None)),
    ],
)
def test_worker_count_fits_the_memory_limit(env, cpus, limit, expected):
    count, reason = start.compute_workers(start.parse_settings(env), start.CpuCount(cpus, "test"), limit)
    assert count == expected[0]
    if expected[1]:
        assert reason == expected[1]


def test_web_concurrency_beyond_the_memory_budget_is_started_with_a_warning():
    settings = start.parse_settings({"WORKER_MEMORY": "200M", "WEB_CONCURRENCY": "6"})
    [warning] = start.worker_warnings(settings, 6, 512 * MiB)
    assert warning.startswith("WEB_CONCURRENCY=6 exceeds the memory budget (512 MiB limit ÷ WORKER_MEMORY 200 MiB = 2)")
    assert start.worker_warnings(settings, 6, None) == []
    assert (
        start.worker_warnings(start.parse_settings({"WEB_CONCURRENCY": "2", "WORKER_MEMORY": "200M"}), 2, 512 * MiB)
        == []
    )


def test_max_workers_lowering_web_concurrency_is_said_once():
    settings = start.parse_settings({"WEB_CONCURRENCY": "6", "MAX_WORKERS": "2"})
    count, _ = start.compute_workers(settings, start.CpuCount(4, "test"))
    assert start.worker_warnings(settings, count, None) == ["WEB_CONCURRENCY=6 is above MAX_WORKERS=2; starting 2"]
    unchanged = start.parse_settings({"WEB_CONCURRENCY": "2", "MAX_WORKERS": "2"})
    assert start.worker_warnings(unchanged, 2, None) == []
