"""A real cgroup v1 CPU quota on this machine: the launcher sizes the pool to it, not to the host's cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import (
    Server,
    clean_env,
    copy_app,
    dry_run,
    free_port,
    join_cgroup,
    wait_for_workers,
    wait_until_workers_serve,
)

CPU_HIERARCHY = Path("/sys/fs/cgroup/cpu")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.cgroup,
    pytest.mark.skipif(
        not (sys.platform == "linux" and os.geteuid() == 0 and os.access(CPU_HIERARCHY, os.W_OK)),
        reason="needs root and a writable cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu",
    ),
]


@pytest.fixture
def quota_cgroup(request):
    """A cgroup limited to `quota` CPUs; removed after the test (its processes must be gone)."""
    created = []

    def make(quota: float) -> Path:
        path = CPU_HIERARCHY / f"asgi-start-test-{os.getpid()}-{len(created)}"
        path.mkdir()
        created.append(path)
        (path / "cpu.cfs_period_us").write_text("100000")
        (path / "cpu.cfs_quota_us").write_text(str(int(quota * 100000)))
        return path

    yield make
    for path in created:
        path.rmdir()


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
    env = clean_env(HOST="127.0.0.1", PORT=str(free_port()), WORKERS_PER_CORE="3")
    server = Server(app_dir, env, preexec_fn=join_cgroup(cgroup))
    servers.append(server)
    assert server.wait_ready()[0] == 200
    assert len(wait_for_workers(server.pid, 3)) == 3  # 1 CPU × 3, not 2 CPUs × 3
    assert len(wait_until_workers_serve(server.url("/pid"), 3)) == 3
    assert "3 workers = 1 CPU (cgroup quota 1) × WORKERS_PER_CORE 3" in server.output()
    assert server.terminate() == 0
