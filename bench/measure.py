"""Running the cases of RESULTS.md: 1 launch overhead, 2 time to first 200, 3-5 throughput, p99,
memory and the CPU quota, 6 the measured figures; and the machine they ran on. Each returns the raw
results that bench.py writes to RESULTS.json and report.py turns into tables.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess

import cases
from cases import CASES, CASES_BY_NAME, FIGURES, FORBIDDEN_IMPORTS, PRELOAD_CASES, SERVERS, interleaved
from launch import Runner
from procs import (
    APP_DIR,
    assert_loopback_only,
    cpu_snapshot,
    foreign_cpu_share,
    free_port,
    hyperfine,
    import_times,
    log,
    measure_memory,
    read_text,
    settle,
    sha256_of,
    wait_first_200,
    wrk,
)


def case1_launch(runner: Runner, args) -> dict:
    env = runner.env(args.servers_venv, {})
    # diagnostic: the same file imported as a module (`python -m start`), whose bytecode is cached in
    # __pycache__, unlike a script run by path, which the interpreter compiles on every start
    module_dir = os.path.join(runner.work, "module")
    os.makedirs(module_dir, exist_ok=True)
    for name in ("start.py", "gunicorn_conf.py", "hypercorn_conf.py"):
        shutil.copy(os.path.join(os.path.dirname(cases.START_PY), name), module_dir)
    commands = {
        "bare": [runner.py, "-c", "pass"],
        "start": [runner.py, cases.START_PY, "--dry-run"],
        "module": [runner.py, "-m", "start", "--dry-run"],
    }
    result: dict = {"servers": {}}
    for server in SERVERS:
        env_s = dict(env, SERVER=server, PYTHONPATH=module_dir)
        result["servers"][server] = launch_overhead(runner, args, commands, env_s)
    result["imports"], result["imports_base_count"] = dry_run_imports(runner, env)
    return result


def launch_overhead(runner: Runner, args, commands: dict[str, list[str]], env: dict) -> dict:
    """hyperfine rounds of the commands (order rotated: each leads once); wall and CPU medians."""
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {}
    extra_per_round = []
    for r in range(args.launch_rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: each command leads once
        measured = hyperfine(
            [commands[n] for n in order], env, args.launch_runs, 3, os.path.join(runner.work, "hf.json")
        )
        per = {name: run["times"] for name, run in zip(order, measured)}
        for name, run in zip(order, measured):
            times[name] += run["times"]
            cpu.setdefault(name, []).append(run["user"] + run["system"])
        extra_per_round.append((statistics.median(per["start"]) - statistics.median(per["bare"])) * 1000)
    bare = statistics.median(times["bare"])
    return {
        "start_ms": statistics.median(times["start"]) * 1000,
        "bare_ms": bare * 1000,
        "module_ms": statistics.median(times["module"]) * 1000,
        "extra_ms": (statistics.median(times["start"]) - bare) * 1000,
        "module_extra_ms": (statistics.median(times["module"]) - bare) * 1000,
        "extra_round_ms": extra_per_round,
        "runs": len(times["start"]),
        "cpu_extra_ms": (statistics.median(cpu["start"]) - statistics.median(cpu["bare"])) * 1000,
        "module_cpu_extra_ms": (statistics.median(cpu["module"]) - statistics.median(cpu["bare"])) * 1000,
    }


def dry_run_imports(runner: Runner, env: dict) -> tuple[dict, int]:
    """What start.py --dry-run imports beyond the bare interpreter (-X importtime), per SERVER (median
    of 5 totals), and how many modules the bare interpreter imports."""

    def imports(argv, extra):
        done = subprocess.run(
            [runner.py, "-X", "importtime", *argv],
            env=dict(env, **extra),
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return import_times(done.stderr)

    base = set(imports(["-c", "pass"], {}))
    result = {}
    for server in SERVERS:
        totals, mods = [], {}
        for _ in range(5):
            mods = {
                m: t for m, t in imports([cases.START_PY, "--dry-run"], {"SERVER": server}).items() if m not in base
            }
            totals.append(sum(t[0] for t in mods.values()))
        result[server] = {
            "modules": sorted(mods),
            "total_us": statistics.median(totals),
            "forbidden": sorted(m for m in mods if m.split(".")[0] in FORBIDDEN_IMPORTS),
        }
    return result, len(base)


def case2_ttfr(runner: Runner, args) -> dict:
    out: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for case in CASES:
        if case.ttfr:
            groups.setdefault(case.group, []).append(case.name)
    for _group, names in groups.items():
        for r, name in interleaved(names, args.ttfr_rounds):
            case = CASES_BY_NAME[name]
            port = free_port()
            server, _, argv = runner.launch(case, port)
            rec = out.setdefault(name, {"ms": [], "argv": argv, "stop_s": []})
            try:
                rec["ms"].append(wait_first_200(server, port) * 1000)
                assert_loopback_only(port)
            finally:
                rec["stop_s"].append(server.stop(grace=0.5))
            log(f"  ttfr {name:<28} round {r + 1}: {rec['ms'][-1]:.0f} ms")
    # the modules a real start (not --dry-run) imports before exec: -X importtime applies to start.py
    # only, since the exec'd server is a fresh interpreter without -X
    out["_real_start_imports"] = {}
    base = set(
        import_times(
            subprocess.run(
                [runner.py, "-X", "importtime", "-c", "pass"],
                capture_output=True,
                text=True,
                env=runner.env(args.servers_venv, {}),
            ).stderr
        )
    )
    for server in SERVERS:
        case = CASES_BY_NAME[f"{server} start.py"]
        port = free_port()
        srv, _, _ = runner.launch(case, port, argv_prefix=("-X", "importtime"))
        try:
            wait_first_200(srv, port)
        finally:
            srv.stop()
        mods = {m: t for m, t in import_times(srv.output_head()).items() if m not in base}
        out["_real_start_imports"][server] = {
            "modules": sorted(mods),
            "total_us": sum(t[0] for t in mods.values()),
            "forbidden": sorted(m for m in mods if m.split(".")[0] in FORBIDDEN_IMPORTS),
        }
    return out


def case3_load(runner: Runner, args, cgroup: str | None) -> dict:
    out: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for case in CASES:
        if case.load and (not case.cgroup or cgroup):
            groups.setdefault(case.group, []).append(case.name)
    for _group, names in groups.items():
        for r, name in interleaved(names, args.rounds):
            case = CASES_BY_NAME[name]
            port = free_port()
            server, expected, argv = runner.launch(case, port, cgroup=cgroup if case.cgroup else None)
            rec = out.setdefault(name, {"runs": [], "mem": [], "argv": argv, "expected_workers": expected})
            try:
                wait_first_200(server, port, case.path)
                assert_loopback_only(port)
                settle(server)
                mem = measure_memory(server.proc.pid)
                rec["mem"].append(mem)
                warm = wrk(port, case.path, args.warmup, args)
                before = cpu_snapshot(server.proc.pid)
                run = wrk(port, case.path, args.duration, args)
                after = cpu_snapshot(server.proc.pid)
                run["foreign_cpu"] = foreign_cpu_share(before, after)
                # the server tree's own CPU per request: far less sensitive to other work than req/s
                run["cpu_us_per_request"] = (after[2] - before[2]) / max(1, run["requests"]) * 1e6
                run["log_bytes_per_request"] = server.bytes / max(1, warm["requests"] + run["requests"])
                rec["runs"].append(run)
                summary = re.search(r"^.*asgi-start.*\bworkers? = .*$", server.output_head(), re.M)
                rec["summary"] = summary.group(0) if summary else None
            finally:
                server.stop()
            log(
                f"  load {name:<32} round {r + 1}: {run['rps']:>8.0f} req/s  p99 {run['p99_ms']:.2f} ms  "
                f"workers {mem['workers']}/{expected}  PSS {mem['pss_kib'] / 1024:.0f} MiB  "
                f"other CPU {run['foreign_cpu']:.0%}  server CPU {run['cpu_us_per_request']:.0f} µs/req"
                + (f"  non-2xx {run['non2xx']}" if run["non2xx"] else "")
                + (f"  socket errors {run['socket_errors']}" if run["socket_errors"] else "")
            )
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def case6_figures(runner: Runner, args) -> dict:
    """Each selected figure's launch, `args.rounds` times, interleaved; one value per launch."""
    out: dict[str, dict] = {}
    figures = {figure.name: figure for figure in FIGURES if re.search(args.cases or "", figure.name)}
    for r, name in interleaved(list(figures), args.rounds):
        figure = figures[name]
        port = free_port()
        server, _, argv = runner.launch(figure.case, port)
        rec = out.setdefault(name, {"values": [], "argv": argv})
        try:
            rec["values"].append(figure.measure(server, port, figure.case))
            assert_loopback_only(port)
        finally:
            server.stop(grace=0.5)
        log(f"  figure {name:<30} round {r + 1}: {rec['values'][-1] * 1000:.1f} ms")
    return out


def case7_preload(runner: Runner, args) -> dict:
    """PSS of the whole tree (server and every descendant, smaps_rollup) per launch of cases.PRELOAD_CASES,
    interleaved over `args.rounds`: once settled after start-up, and again after a short wrk load, which
    is when the workers' garbage collections write to (and so copy) the pages they share with the master.
    Also this run's own facts, since it may be merged into an earlier run's RESULTS.json."""
    out: dict = {"rounds": args.rounds, "load_s": args.preload_load, "runs": {}}
    by_name = {case.name: case for case in PRELOAD_CASES if re.search(args.cases or "", case.name)}
    for r, name in interleaved(list(by_name), args.rounds):
        case = by_name[name]
        port = free_port()
        server, expected, argv = runner.launch(case, port)
        rec = out["runs"].setdefault(name, {"idle": [], "loaded": [], "argv": argv, "expected_workers": expected})
        try:
            wait_first_200(server, port, case.path)
            assert_loopback_only(port)
            settle(server)
            idle = measure_memory(server.proc.pid)
            wrk(port, case.path, args.preload_load, args)
            settle(server)
            loaded = measure_memory(server.proc.pid)
        finally:
            server.stop()
        for key, mem in (("idle", idle), ("loaded", loaded)):
            rec[key].append({k: mem[k] for k in ("processes", "workers", "pss_kib", "rss_kib", "worker_pss_kib")})
        log(
            f"  preload {name:<36} round {r + 1}: workers {idle['workers']}/{expected}  "
            f"PSS idle {idle['pss_kib'] / 1024:.1f} MiB, after load {loaded['pss_kib'] / 1024:.1f} MiB"
        )
    out["machine"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_end": " ".join(read_text("/proc/loadavg").split()[:3]),
        "git": subprocess.run(
            ["git", "-C", cases.REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "start_sha256": sha256_of(cases.START_PY),
    }
    return out


def machine(args) -> dict:
    cpu = re.search(r"^model name\s*:\s*(.*)$", read_text("/proc/cpuinfo"), re.M)

    def versions(venv, names):
        code = (
            "import importlib.metadata as m, sys, json; out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))"
        )
        done = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c", code, *names], capture_output=True, text=True, timeout=30
        )
        return json.loads(done.stdout or "{}")

    python = subprocess.run(
        [os.path.join(args.servers_venv, "bin", "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout
    git = subprocess.run(
        ["git", "-C", cases.REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout
    dirty = subprocess.run(
        ["git", "-C", cases.REPO, "status", "--porcelain", "--", "start.py", "gunicorn_conf.py", "hypercorn_conf.py"],
        capture_output=True,
        text=True,
    ).stdout
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": python.strip(),
        "servers": versions(
            args.servers_venv,
            ["gunicorn", "uvicorn", "uvicorn-worker", "hypercorn", "granian", "uvloop", "httptools", "h11"],
        ),
        "inboard": versions(args.inboard_venv, ["inboard", "gunicorn", "uvicorn", "uvloop", "httptools"])
        if args.inboard_venv
        else {},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" [")[0],
        "hyperfine": subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.strip()
        if shutil.which("hyperfine")
        else "",
        "repo": cases.REPO,
        "loadavg_start": " ".join(read_text("/proc/loadavg").split()[:3]),
        "cpu_pressure_start": read_text("/proc/pressure/cpu").split("\n")[0].replace("some ", ""),
        "git": git.strip() + (" + uncommitted changes to start.py or a config file" if dirty.strip() else ""),
        "start_sha256": sha256_of(cases.START_PY),
    }
