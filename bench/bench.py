#!/usr/bin/env python3
"""asgi-start benchmark: launch overhead, time to first 200, throughput/p99, memory, CPU quota.

Run it through `bash bench/run.sh` (which makes the pinned venvs). Standard library only.

Rules kept throughout:
- every number that is compared is a ratio between runs of the same run of this script, with
  interleaved repetitions (round r runs A B C ..., round r+1 runs ... C B A) and medians;
- load goes to 127.0.0.1 only (procs.HOST), from wrk, bounded in time; every poll loop has a deadline;
- every server is started in its own session (process group) and stopped by that group's id;
  groups still alive at exit, on error or on Ctrl-C are killed; the cgroup made for case 5 is removed.

`--targets` (bash bench/run.sh --targets [--quick]) measures only the four performance targets of
issue 8 in one interleaved run under the image's conditions (the Dockerfile's CMD, files and
compileall mirrored into a snapshot; PYTHONDONTWRITEBYTECODE=1; a fresh empty TMPDIR per start) and
writes bench/TARGETS.md: time to first 200 start.py/direct, launcher code loaded per server process
(-X importtime plus a sitecustomize probe), --dry-run over `python -c pass`, and req/s start.py/direct
with the access log off. See "The targets of issue 8" in bench/README.md.

This file is the command line; the rest lives beside it:
    cases.py    what is launched and measured, as data: CASES (cases 1-5) and FIGURES (case 6, the measured
                figures that tests no longer bound); to add a variant or a figure, add one line there
    launch.py   the command lines of a case: start.py, its --dry-run plan, the derived `direct`, inboard
    procs.py    process helpers: servers in their own sessions, waiting, wrk, hyperfine, /proc sampling
    measure.py  running cases 1-6, and the machine table's facts
    targets.py  --targets: the image's layout, the import probe, the interleaved rounds
    report.py   RESULTS.md and TARGETS.md, one function per table or section
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

import cases
from cases import CASES, FIGURES
from launch import Runner
from measure import case1_launch, case2_ttfr, case3_load, case6_figures, case7_preload, machine
from procs import BENCH, CGROUP_CPU, cgroup_create, cgroup_remove, kill_all_groups, log, read_text, sha256_of
from report import report, targets_report
from targets import image_layout, targets_run


def parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers-venv", required=True)
    parser.add_argument("--inboard-venv", help="the anchor's venv (not needed with --targets)")
    parser.add_argument(
        "--targets",
        action="store_true",
        help="measure only the four performance targets of issue 8, in one interleaved run under the image's "
        "conditions (writes bench/TARGETS.md)",
    )
    parser.add_argument("--quick", action="store_true", help="with --targets: few, short rounds (development)")
    parser.add_argument(
        "--repo", default=cases.REPO, help="the checkout whose launcher is measured (default: this one)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 4; --targets 8, --quick 2)")
    parser.add_argument(
        "--duration", type=int, help="measured wrk seconds per launch (3; --targets: 1 s bursts per side, 4; --quick 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up seconds per launch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ttfr-rounds", type=int, default=9)
    parser.add_argument(
        "--ttfr-pairs", type=int, help="--targets: time-to-first-200 pairs per round and server (2; --quick 1)"
    )
    parser.add_argument(
        "--dryrun-pairs", type=int, help="--targets: --dry-run/bare pairs per round and server (8; --quick 4)"
    )
    parser.add_argument("--launch-rounds", type=int, default=4)
    parser.add_argument("--launch-runs", type=int, default=15, help="hyperfine runs per command per round")
    parser.add_argument("--quota", type=float, default=1.0, help="CPUs of the cgroup quota (case 5)")
    parser.add_argument(
        "--only",
        default="1,2,3,5,6",
        help="cases to run (4 comes with 3; 6: the measured figures, cases.FIGURES; 7, not by default: PSS with "
        "and without PRELOAD_APP, cases.PRELOAD_CASES)",
    )
    parser.add_argument("--preload-load", type=int, default=2, help="case 7: wrk seconds between the two readings")
    parser.add_argument(
        "--merge-into",
        help="case 7: add its results to this RESULTS.json (keeping the rest) and render the Markdown from it",
    )
    parser.add_argument(
        "--cases", default="", help="only the launches whose name matches this regex (--targets: the servers)"
    )
    parser.add_argument("--output", help="default bench/RESULTS.md, with --targets bench/TARGETS.md")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    quick = args.targets and args.quick
    if args.rounds is None:
        args.rounds = (2 if quick else 8) if args.targets else 4
    if args.duration is None:
        args.duration = (2 if quick else 4) if args.targets else 3
    if args.ttfr_pairs is None:
        args.ttfr_pairs = 1 if quick else 2
    if args.dryrun_pairs is None:
        args.dryrun_pairs = 4 if quick else 8
    if args.output is None:
        args.output = os.path.join(BENCH, "TARGETS.md" if args.targets else "RESULTS.md")
    args.output = os.path.abspath(args.output)
    return parser, args


def select_cases(parser: argparse.ArgumentParser, args) -> None:
    """--cases: switch off the launches whose name does not match; no anchor venv: no inboard launch."""
    if args.cases and not args.targets:
        for case in CASES:
            if not re.search(args.cases, case.name):
                case.ttfr = case.load = False
    inboard = [c.name for c in CASES if c.launcher == "inboard" and (c.ttfr or c.load) and not c.cgroup]
    if not args.targets and not args.inboard_venv and inboard:
        parser.error(f"--inboard-venv is needed for {', '.join(inboard)} (or pick other --cases)")
    if not args.inboard_venv:
        for case in CASES:  # the quota group's inboard launch, when there is no anchor venv
            if case.launcher == "inboard":
                case.ttfr = case.load = False


def snapshot_launcher(args, work: str):
    """Measure one version of the launcher throughout: a snapshot of start.py and the config files
    (which load start.py from beside themselves), even if the work tree changes during the run.
    With --targets, the snapshot is what the Dockerfile puts in / (and compiles), run by its CMD.
    Points cases.START_PY at it; returns the image layout (--targets) or None."""
    snapshot = os.path.join(work, "launcher")
    os.makedirs(snapshot)
    layout = None
    if args.targets:
        layout = image_layout(cases.REPO, snapshot, os.path.join(args.servers_venv, "bin", "python"))
        cases.START_PY = os.path.join(snapshot, "start.py")
        if not os.path.exists(cases.START_PY):
            cases.START_PY = next(a for a in layout.cmd[1:] if a.startswith(snapshot))
    else:
        for name in cases.LAUNCHER_FILES:
            shutil.copy2(os.path.join(cases.REPO, name), snapshot)
        cases.START_PY = os.path.join(snapshot, "start.py")
    return layout


def run_cases(runner: Runner, args, res: dict, cgroups: list[str]) -> None:
    """The selected cases (--only) or the targets, into `res`; a cgroup made for case 5 is added to
    `cgroups` as soon as it exists, so that main() removes it whatever happens."""
    only = set(args.only.split(","))
    if args.targets:
        log(f"targets of issue 8: {args.rounds} interleaved rounds" + (" (quick)" if args.quick else ""))
        res["targets"] = targets_run(runner, args)
        only = set()
    if "1" in only:
        log("case 1: launch overhead (hyperfine, -X importtime)")
        res["launch"] = case1_launch(runner, args)
    if "2" in only:
        log("case 2: time to first 200")
        res["ttfr"] = case2_ttfr(runner, args)
    if "3" in only or "5" in only:
        cgroup = None
        if "5" in only:
            try:
                cgroup = cgroup_create(args)
            except OSError as error:
                res["quota_skipped"] = f"cannot create a cgroup: {error}"
            if cgroup:
                cgroups.append(cgroup)
            if cgroup is None and "quota_skipped" not in res:
                res["quota_skipped"] = "needs root and a writable cgroup v1 cpu hierarchy at " + CGROUP_CPU
        if "3" not in only:
            for case in CASES:
                case.load = case.load and case.group == "quota"
        if cgroup is None:
            for case in CASES:
                case.load = case.load and case.group != "quota"
        log("cases 3-5: throughput, latency, memory" + (f", CPU quota in {cgroup}" if cgroup else ""))
        res["load"] = case3_load(runner, args, cgroup)
    if "6" in only and FIGURES:
        log("case 6: measured figures")
        res["figures"] = case6_figures(runner, args)
    if "7" in only:
        log("case 7: PSS of the process tree with and without PRELOAD_APP")
        res["preload"] = case7_preload(runner, args)


def finish_machine(info: dict) -> None:
    info["loadavg_end"] = " ".join(read_text("/proc/loadavg").split()[:3])
    if sha256_of(os.path.join(cases.REPO, "start.py")) != info["start_sha256"][:16]:
        info["start_sha256"] += " (start.py in the work tree changed during the run; the run used this snapshot)"
    info["cpu_pressure_end"] = read_text("/proc/pressure/cpu").split("\n")[0].replace("some ", "")


def write_outputs(args, info: dict | None, res: dict, status: int, work: str, elapsed: float, layout) -> None:
    """The raw JSON (beside the output, or partial.json in the work directory after an error), then the
    Markdown: written on success, printed in any case."""
    raw = os.path.splitext(args.output)[0] + ".json" if status == 0 else os.path.join(work, "partial.json")
    if args.merge_into and status == 0 and "preload" in res:
        # case 7 alone, added to an earlier full run: the report keeps that run's tables and elapsed time
        with open(args.merge_into) as file:
            merged = json.load(file)
        merged["results"]["preload"] = res["preload"]
        info, res = merged["machine"], merged["results"]
        raw = args.merge_into
        with open(args.output) as file:
            elapsed = float(re.search(r"in ([\d.]+) min", file.read()).group(1)) * 60
    with open(raw, "w") as file:
        json.dump({"machine": info, "results": res}, file, indent=1, default=str)
    if args.merge_into and status == 0 and "preload" in res:
        import check_report
        import report as report_module

        # as the earlier run rendered it (its defaults, its launcher snapshot's path), as the test re-renders it
        text = check_report.render(
            report_module, {"machine": info, "results": res}, check_report.run_args(False), elapsed
        )
    elif args.targets:
        text = targets_report(info, res["targets"], args, elapsed, layout) if info and "targets" in res else ""
    else:
        text = report(info, res, args, elapsed) if info else ""
    if status == 0:
        with open(args.output, "w") as file:
            file.write(text)
        log(f"bench: wrote {os.path.relpath(args.output)} in {elapsed / 60:.1f} min")
    print(text)


def main() -> int:
    parser, args = parse_args()
    cases.REPO = os.path.abspath(args.repo)
    select_cases(parser, args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="asgi-start-bench-")
    layout = snapshot_launcher(args, work)
    runner = Runner(args, work, layout)
    res: dict = {}
    info: dict | None = None
    cgroups: list[str] = []
    status = 0
    try:
        info = machine(args)
        run_cases(runner, args, res, cgroups)
    except BaseException as error:
        log(f"bench: stopped: {error!r}")
        status = 1
    finally:
        kill_all_groups()
        for cgroup in cgroups:
            try:
                cgroup_remove(cgroup)
            except (OSError, RuntimeError) as error:
                log(f"bench: {error}")
                status = 1
    elapsed = time.perf_counter() - started
    if info:
        finish_machine(info)
    write_outputs(args, info, res, status, work, elapsed, layout)
    if args.keep_work or status:
        log(f"bench: logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
