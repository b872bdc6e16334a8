"""Reading the CPU quota from cgroup v1 and v2 fixture trees, like the JVM's container support."""

from __future__ import annotations

from pathlib import Path

import pytest

import start

V1_MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
33 25 0:28 {root} /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
34 25 0:29 {root} /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory
"""
V2_MOUNTINFO = """\
30 24 0:26 {root} /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""


def make_tree(tmp_path: Path, proc_cgroup: str, mountinfo: str, files: dict[str, str]) -> str:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(proc_cgroup)
    (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    for relative, content in files.items():
        path = tmp_path / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return str(tmp_path)


def v1_limits(path: str, quota: str, period: str = "100000") -> dict[str, str]:
    base = "/sys/fs/cgroup/cpu,cpuacct" + path.rstrip("/")
    return {f"{base}/cpu.cfs_quota_us": quota + "\n", f"{base}/cpu.cfs_period_us": period + "\n"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (v1_limits("/", "-1"), None),  # unlimited
        (v1_limits("/", "150000"), 1.5),
        (v1_limits("/", "50000", "100000"), 0.5),
        (v1_limits("/", "200000", "50000"), 4.0),
        (v1_limits("/", "abc"), None),  # odd values are ignored
        (v1_limits("/", "100000", "0"), None),
        ({}, None),  # no files at all
    ],
)
def test_v1_quota_at_the_mount_root(tmp_path, files, expected):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n3:memory:/\n0::/\n", V1_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_cpu_limit(root) == expected


def test_v1_lowest_limit_up_the_hierarchy(tmp_path):
    files = {**v1_limits("/", "-1"), **v1_limits("/kubepods", "100000"), **v1_limits("/kubepods/pod1", "300000")}
    root = make_tree(tmp_path, "4:cpu,cpuacct:/kubepods/pod1\n", V1_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_cpu_limit(root) == 1.0


def test_v1_container_view_where_the_mount_root_is_the_own_cgroup(tmp_path):
    # Docker without a cgroup namespace: /proc/self/cgroup names the host path, and the
    # mount's root is that same path, mounted at the usual place.
    files = v1_limits("/", "250000")
    root = make_tree(tmp_path, "4:cpu,cpuacct:/docker/abc\n", V1_MOUNTINFO.format(root="/docker/abc"), files)
    assert start.cgroup_cpu_limit(root) == 2.5


def test_v1_missing_directory_falls_back_to_the_mount_point(tmp_path):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/gone/away\n", V1_MOUNTINFO.format(root="/"), v1_limits("/", "100000"))
    assert start.cgroup_cpu_limit(root) == 1.0


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000\n", 0.5), ("garbage\n", None), ("", None)],
)
def test_v2_cpu_max(tmp_path, cpu_max, expected):
    files = {"/sys/fs/cgroup/cpu.max": cpu_max}
    root = make_tree(tmp_path, "0::/\n", V2_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_cpu_limit(root) == expected


def test_v2_nested_takes_the_lowest(tmp_path):
    files = {
        "/sys/fs/cgroup/cpu.max": "max 100000\n",
        "/sys/fs/cgroup/system.slice/cpu.max": "200000 100000\n",
        "/sys/fs/cgroup/system.slice/app.service/cpu.max": "max 100000\n",
    }
    root = make_tree(tmp_path, "0::/system.slice/app.service\n", V2_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_cpu_limit(root) == 2.0


def test_hybrid_takes_the_lower_of_v1_and_v2(tmp_path):
    mountinfo = V1_MOUNTINFO.format(root="/") + "40 25 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    files = {**v1_limits("/", "300000"), "/sys/fs/cgroup/unified/cpu.max": "100000 100000\n"}
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n0::/\n", mountinfo, files)
    assert start.cgroup_cpu_limit(root) == 1.0


def test_unreadable_proc_is_quietly_no_limit(tmp_path):
    assert start.cgroup_cpu_limit(str(tmp_path)) is None


def test_mount_points_with_escaped_spaces(tmp_path):
    mountinfo = "33 25 0:28 / /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\n"
    files = {"/sys/fs/cgroup/my cpu/cpu.cfs_quota_us": "100000", "/sys/fs/cgroup/my cpu/cpu.cfs_period_us": "100000"}
    root = make_tree(tmp_path, "4:cpu:/\n", mountinfo, files)
    assert start.cgroup_cpu_limit(root) == 1.0


@pytest.mark.parametrize(
    ("quota", "affinity", "expected"),
    [
        ("150000", 8, (2, "cgroup quota 1.5")),  # ceil(1.5)
        ("50000", 8, (1, "cgroup quota 0.5")),  # at least 1
        ("400000", 2, (2, "CPU affinity")),  # the quota is not the limit here
        ("-1", 3, (3, "CPU affinity")),
    ],
)
def test_effective_cpu_count_is_min_of_affinity_and_ceil_quota(tmp_path, quota, affinity, expected):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n", V1_MOUNTINFO.format(root="/"), v1_limits("/", quota))
    cpus = start.effective_cpu_count(start.parse_settings({}), root=root, affinity=affinity)
    assert (cpus.count, cpus.source) == expected


# --- CPU_REQUEST: counted like a quota when there is none ------------------------------


@pytest.mark.parametrize(
    ("request_", "quota", "affinity", "expected"),
    [
        ("500m", "-1", 8, (1, "CPU request 500m")),  # rounded up
        ("1500m", "-1", 8, (2, "CPU request 1500m")),
        ("1.5", "-1", 8, (2, "CPU request 1500m")),
        ("2", "-1", 8, (2, "CPU request 2")),
        ("16", "-1", 4, (4, "CPU affinity")),  # never above the affinity mask
        ("500", "-1", 2, (2, "CPU affinity")),  # a divisor of 1m: millicores read as CPUs, capped
        ("1500m", "100000", 8, (1, "cgroup quota 1; CPU request 1500m not counted")),  # a quota wins
        ("500m", "300000", 8, (3, "cgroup quota 3; CPU request 500m not counted")),  # also when larger
        ("500m", "800000", 2, (2, "CPU affinity; CPU request 500m not counted")),
    ],
)
def test_cpu_request_counts_when_no_quota_is_set(tmp_path, request_, quota, affinity, expected):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n", V1_MOUNTINFO.format(root="/"), v1_limits("/", quota))
    settings = start.parse_settings({"CPU_REQUEST": request_})
    cpus = start.effective_cpu_count(settings, root=root, affinity=affinity)
    assert (cpus.count, cpus.source) == expected


def test_cpu_request_under_cgroup_v2_without_a_limit(tmp_path):
    root = make_tree(tmp_path, "0::/\n", V2_MOUNTINFO.format(root="/"), {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    cpus = start.effective_cpu_count(start.parse_settings({"CPU_REQUEST": "1"}), root=root, affinity=4)
    assert (cpus.count, cpus.source) == (1, "CPU request 1")


def test_python_cpu_count_wins_over_cpu_request(tmp_path):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n", V1_MOUNTINFO.format(root="/"), v1_limits("/", "100000"))
    settings = start.parse_settings({"CPU_REQUEST": "3", "PYTHON_CPU_COUNT": "5"})
    cpus = start.effective_cpu_count(settings, root=root, affinity=8)
    assert (cpus.count, cpus.source) == (5, "PYTHON_CPU_COUNT")


def test_cpu_request_reaches_the_worker_count_and_the_dry_run_fields(tmp_path):
    root = make_tree(tmp_path, "0::/\n", V2_MOUNTINFO.format(root="/"), {})
    (tmp_path / "main.py").write_text("app = None\n")
    problems: list[str] = []
    settings = start.parse_settings({"CPU_REQUEST": "500m", "WORKERS_PER_CORE": "3"}, problems)
    facts = start.probe_facts(settings, problems, str(tmp_path), root)
    if start.affinity_cpu_count() < 2:
        pytest.skip("needs 2 CPUs in the affinity mask, so that the request is the lower count")
    shown = start.plan_launch(settings, facts, (), problems).as_dict()
    assert problems == []
    assert (shown["cpus"], shown["cpus_source"], shown["workers"]) == (1, "CPU request 500m", 3)
    assert shown["workers_reason"] == "3 workers = 1 CPU (CPU request 500m) × WORKERS_PER_CORE 3"


# --- net.ipv4.tcp_migrate_req (Granian's per-worker SO_REUSEPORT sockets) -------------


@pytest.mark.parametrize(("content", "expected"), [("0\n", False), ("1\n", True), ("", None), ("on\n", None)])
def test_tcp_migrate_req_is_read_from_the_root(tmp_path, content, expected):
    path = tmp_path / "proc/sys/net/ipv4/tcp_migrate_req"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert start.tcp_migrate_req(str(tmp_path)) is expected


def test_tcp_migrate_req_missing_is_unknown(tmp_path):
    assert start.tcp_migrate_req(str(tmp_path)) is None


def test_tcp_migrate_req_is_probed_for_granian_only(tmp_path):
    path = tmp_path / "proc/sys/net/ipv4/tcp_migrate_req"
    path.parent.mkdir(parents=True)
    path.write_text("0\n")
    (tmp_path / "main.py").write_text("app = None\n")
    for server, expected in (("granian", False), ("gunicorn", None)):
        settings = start.parse_settings({"SERVER": server})
        assert start.probe_facts(settings, [], str(tmp_path), str(tmp_path)).migrate_req is expected


# --- the memory limit (WORKER_MEMORY) ------------------------------------------------

MiB = 1 << 20
V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def v1_memory(path: str, limit: str) -> dict[str, str]:
    return {"/sys/fs/cgroup/memory" + path.rstrip("/") + "/memory.limit_in_bytes": limit + "\n"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (v1_memory("/", V1_UNLIMITED), None),
        (v1_memory("/", str(512 * MiB)), 512 * MiB),
        (v1_memory("/", "garbage"), None),
        (v1_memory("/", "0"), None),
        ({}, None),
    ],
)
def test_v1_memory_limit(tmp_path, files, expected):
    root = make_tree(tmp_path, "4:cpu,cpuacct:/\n3:memory:/\n", V1_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_memory_limit(root) == expected


def test_v1_memory_lowest_limit_up_the_hierarchy(tmp_path):
    files = {
        **v1_memory("/", V1_UNLIMITED),
        **v1_memory("/kubepods", str(1024 * MiB)),
        **v1_memory("/kubepods/pod1", str(768 * MiB)),
        **v1_memory("/kubepods/pod1/c1", V1_UNLIMITED),
    }
    root = make_tree(tmp_path, "3:memory:/kubepods/pod1/c1\n", V1_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_memory_limit(root) == 768 * MiB


@pytest.mark.parametrize(
    ("memory_max", "expected"), [("max\n", None), (f"{256 * MiB}\n", 256 * MiB), ("junk\n", None), ("", None)]
)
def test_v2_memory_max(tmp_path, memory_max, expected):
    root = make_tree(tmp_path, "0::/\n", V2_MOUNTINFO.format(root="/"), {"/sys/fs/cgroup/memory.max": memory_max})
    assert start.cgroup_memory_limit(root) == expected


def test_v2_memory_nested_takes_the_lowest(tmp_path):
    files = {
        "/sys/fs/cgroup/memory.max": "max\n",
        "/sys/fs/cgroup/kubepods.slice/memory.max": f"{2048 * MiB}\n",
        "/sys/fs/cgroup/kubepods.slice/pod.slice/memory.max": f"{512 * MiB}\n",
        "/sys/fs/cgroup/kubepods.slice/pod.slice/ctr.scope/memory.max": "max\n",
    }
    root = make_tree(tmp_path, "0::/kubepods.slice/pod.slice/ctr.scope\n", V2_MOUNTINFO.format(root="/"), files)
    assert start.cgroup_memory_limit(root) == 512 * MiB


def test_memory_limit_is_read_only_when_worker_memory_is_set(tmp_path):
    root = make_tree(tmp_path, "0::/\n", V2_MOUNTINFO.format(root="/"), {"/sys/fs/cgroup/memory.max": f"{MiB}\n"})
    problems: list[str] = []
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    without = start.probe_facts(start.parse_settings({}), problems, str(app_dir), root)
    with_budget = start.probe_facts(start.parse_settings({"WORKER_MEMORY": "1M"}), problems, str(app_dir), root)
    assert (without.memory_limit, with_budget.memory_limit, problems) == (None, MiB, [])
