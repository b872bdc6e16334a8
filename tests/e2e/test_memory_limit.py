"""A real cgroup v1 memory limit on this machine: WORKER_MEMORY sizes the pool to it."""

from __future__ import annotations

import pytest
from helpers import (
    cgroup_v1_writable,
    clean_env,
    copy_app,
    dry_run,
    join_cgroup,
    local_env,
    start_server,
    wait_for_workers,
    wait_until_workers_serve,
)

MiB = 1 << 20

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.cgroup,
    pytest.mark.skipif(
        not cgroup_v1_writable("memory"),
        reason="needs root and a writable cgroup v1 memory hierarchy at /sys/fs/cgroup/memory",
    ),
]


@pytest.fixture
def memory_cgroup(cgroup):
    """A cgroup limited to `limit` bytes (conftest's cgroup fixture creates and removes it)."""
    return lambda limit: cgroup("memory", {"memory.limit_in_bytes": str(limit)})


def test_dry_run_inside_a_memory_limit(tmp_path, memory_cgroup):
    cgroup = memory_cgroup(512 * MiB)
    app_dir = copy_app(tmp_path)
    env = clean_env(WORKER_MEMORY="200M", WORKERS_PER_CORE="4", PYTHON_CPU_COUNT="2")
    plan = dry_run(env, app_dir, preexec_fn=join_cgroup(cgroup))
    assert (plan["workers"], plan["memory_limit"]) == (2, 512 * MiB)
    assert plan["workers_reason"] == "2 workers = 512 MiB limit ÷ WORKER_MEMORY 200 MiB (CPU rule: 8)"
    # outside the cgroup nothing limits the memory: the CPU rule decides
    outside = dry_run(env, app_dir)
    assert (outside["workers"], outside["memory_limit"]) == (8, None)


def test_web_concurrency_beyond_the_budget_starts_as_asked_with_a_warning(tmp_path, memory_cgroup):
    cgroup = memory_cgroup(256 * MiB)
    app_dir = copy_app(tmp_path)
    plan = dry_run(clean_env(WORKER_MEMORY="200M", WEB_CONCURRENCY="3"), app_dir, preexec_fn=join_cgroup(cgroup))
    assert plan["workers"] == 3
    assert plan["warnings"] == [
        "WEB_CONCURRENCY=3 exceeds the memory budget (256 MiB limit ÷ WORKER_MEMORY 200 MiB = 1); starting 3 as asked"
    ]


def test_gunicorn_starts_the_memory_aware_number_of_workers(servers, tmp_path, memory_cgroup):
    cgroup = memory_cgroup(600 * MiB)
    app_dir = copy_app(tmp_path)
    env = local_env(WORKERS_PER_CORE="3", WORKER_MEMORY="200M")
    server = start_server(servers, app_dir, env, preexec_fn=join_cgroup(cgroup))
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 3)) == 3  # 600 MiB ÷ 200 MiB, not 2 CPUs × 3 = 6
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    assert "3 workers = 600 MiB limit ÷ WORKER_MEMORY 200 MiB (CPU rule: 6)" in server.output()
    assert server.terminate() == 0
