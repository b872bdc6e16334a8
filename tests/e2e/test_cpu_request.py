"""CPU_REQUEST through `python start.py`: the request sizes the pool when no quota is set, and a real
cgroup v1 quota wins over it."""

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
    stop,
    wait_for_workers,
    wait_until_workers_serve,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the request must be below the visible CPUs"),
]


def test_dry_run_counts_the_request(tmp_path):
    app_dir = copy_app(tmp_path)
    plan = dry_run(clean_env(CPU_REQUEST="500m", WORKERS_PER_CORE="3"), app_dir)
    assert (plan["cpus"], plan["cpus_source"], plan["workers"]) == (1, "CPU request 500m", 3)
    # PYTHON_CPU_COUNT wins over it
    forced = dry_run(clean_env(CPU_REQUEST="500m", PYTHON_CPU_COUNT="2"), app_dir)
    assert (forced["cpus"], forced["cpus_source"]) == (2, "PYTHON_CPU_COUNT")


def test_gunicorn_starts_the_requested_number_of_workers(servers, tmp_path):
    app_dir = copy_app(tmp_path)
    server = start_server(servers, app_dir, local_env(CPU_REQUEST="500m", WORKERS_PER_CORE="3"), wait=True)
    assert len(wait_for_workers(server.pid, 3)) == 3  # 1 CPU × 3, not 2 CPUs × 3
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    assert "3 workers = 1 CPU (CPU request 500m) × WORKERS_PER_CORE 3" in stop(server)


@pytest.mark.cgroup
@pytest.mark.skipif(not cgroup_v1_writable("cpu"), reason="needs root and a writable cgroup v1 cpu hierarchy")
def test_a_real_quota_wins_over_the_request(servers, tmp_path, cgroup):
    quota = cgroup("cpu", {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"})
    app_dir = copy_app(tmp_path)
    env = local_env(CPU_REQUEST="1500m", WORKERS_PER_CORE="3")
    server = start_server(servers, app_dir, env, wait=True, preexec_fn=join_cgroup(quota))
    assert len(wait_for_workers(server.pid, 3)) == 3  # the quota's 1 CPU × 3, not the request's 2 × 3
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    output = stop(server)
    assert "3 workers = 1 CPU (cgroup quota 1; CPU request 1500m not counted) × WORKERS_PER_CORE 3" in output
