"""A real cgroup v1 CPU quota on this machine: the launcher sizes the pool to it, not to the host's cores."""

from __future__ import annotations

import os

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

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.cgroup,
    pytest.mark.skipif(
        not cgroup_v1_writable("cpu"), reason="needs root and a writable cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu"
    ),
]


@pytest.fixture
def quota_cgroup(cgroup):
    """A cgroup limited to `quota` CPUs (conftest's cgroup fixture creates and removes it)."""
    return lambda quota: cgroup("cpu", {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(quota * 100000))})


def test_dry_run_inside_a_half_cpu_quota(tmp_path, quota_cgroup):
    cgroup = quota_cgroup(0.5)
    app_dir = copy_app(tmp_path)
    assert len(os.sched_getaffinity(0)) >= 2, "the point of the test is a quota below the visible CPUs"
    plan = dry_run(clean_env(WORKERS_PER_CORE="3"), app_dir, preexec_fn=join_cgroup(cgroup))
    assert (plan["cpus"], plan["cpus_source"], plan["workers"]) == (1, "cgroup quota 0.5", 3)
    # outside the cgroup the same settings give the host's count
    assert dry_run(clean_env(WORKERS_PER_CORE="3"), app_dir)["workers"] == 3 * len(os.sched_getaffinity(0))


def test_gunicorn_starts_the_quota_aware_number_of_workers(servers, tmp_path, quota_cgroup):
    cgroup = quota_cgroup(1.0)
    app_dir = copy_app(tmp_path)
    server = start_server(servers, app_dir, local_env(WORKERS_PER_CORE="3"), preexec_fn=join_cgroup(cgroup))
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 3)) == 3  # 1 CPU × 3, not 2 CPUs × 3
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    assert "3 workers = 1 CPU (cgroup quota 1) × WORKERS_PER_CORE 3" in server.output()
    assert server.terminate() == 0
