#!/usr/bin/env python3
"""Render saved results with this report.py and with an older bench.py, and say whether they differ.

    python bench/check_report.py [--rev 519aa6b] bench/RESULTS.json bench/RESULTS-granian.json /tmp/t/TARGETS.json

For a results file (RESULTS*.json) it renders RESULTS.md; for a targets file (the `--targets` run's JSON)
TARGETS.md, with the image layout recomputed from this checkout's Dockerfile. The old code is
`bench/bench.py` at `--rev` (git show), loaded as a module; both get the same arguments (the defaults of
the run, or those given), the same elapsed time and the same launcher path (the snapshot's, read from the
JSON's argv, so that the Launches tables' path rewriting is exercised). Exit status 1 on any difference,
with a unified diff. No process is started, apart from `git show` and the Dockerfile's compileall step
on a temporary snapshot.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases
import report
import targets

BENCH = os.path.dirname(os.path.abspath(__file__))
OLD_REV = "519aa6b"  # the last commit with the one-file bench.py


def run_args(targets_run: bool, **changes) -> argparse.Namespace:
    """The arguments the report reads, with bench.py's defaults (a full run; --targets: 8 rounds)."""
    args = argparse.Namespace(
        threads=1,
        connections=64,
        warmup=1,
        duration=4 if targets_run else 3,
        rounds=8 if targets_run else 4,
        launch_rounds=4,
        quota=1.0,
        quick=False,
    )
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def load_old(rev: str = OLD_REV):
    """bench/bench.py at `rev`, as a module (its paths point into this checkout's bench/)."""
    source = subprocess.run(
        ["git", "-C", BENCH, "show", f"{rev}:bench/bench.py"], capture_output=True, text=True, check=True
    ).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="old-bench-"), "bench.py")
    with open(path, "w") as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location("old_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.BENCH, module.REPO, module.APP_DIR = BENCH, os.path.dirname(BENCH), os.path.join(BENCH, "app")
    shutil.rmtree(os.path.dirname(path))
    return module


def snapshot_start_py(data: dict) -> str:
    """The launcher path the run used (its snapshot), from the first argv that names it."""
    match = re.search(r'"(/[^"]*/launcher/)start\.pyc?"', json.dumps(data))  # --targets may run start.pyc
    return match.group(1) + "start.py" if match else cases.START_PY


def layout_for(python: str):
    snapshot = tempfile.mkdtemp(prefix="layout-")
    try:
        return targets.image_layout(cases.REPO, snapshot, python)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def render(module, data: dict, args, elapsed: float, layout=None) -> str:
    """RESULTS.md or TARGETS.md from `data` (a RESULTS or TARGETS JSON) with `module`'s report code."""
    start_py = snapshot_start_py(data)
    module.START_PY = cases.START_PY = start_py
    if "targets" in data["results"]:
        return module.targets_report(data["machine"], data["results"]["targets"], args, elapsed, layout)
    return module.report(data["machine"], data["results"], args, elapsed)


def variants(data: dict) -> dict[str, dict]:
    """The saved results, and for a RESULTS file the shapes a partial run leaves: case 5 skipped (no
    cgroup), and case 2 alone (no load, no launch overhead)."""
    out = {"as saved": data}
    results = data["results"]
    if "load" in results:
        load = {name: rec for name, rec in results["load"].items() if not name.startswith("quota")}
        skipped = dict(results, load=load, quota_skipped="needs root and a writable cgroup v1 cpu hierarchy")
        out["case 5 skipped"] = dict(data, results=skipped)
    if "ttfr" in results and len(results) > 1:
        out["case 2 alone"] = dict(data, results={"ttfr": results["ttfr"]})
    return out


# Results the old code has no section for: the new code renders them, the comparison leaves them out.
NEWER_THAN_OLD = ("preload",)


def compare(old, data: dict, args, elapsed: float, layout=None) -> list[str]:
    results = {key: value for key, value in data["results"].items() if key not in NEWER_THAN_OLD}
    data = dict(data, results=results)
    before, after = render(old, data, args, elapsed, layout), render(report, data, args, elapsed, layout)
    return list(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "old", "new"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+")
    parser.add_argument("--rev", default=OLD_REV)
    parser.add_argument("--python", default=sys.executable, help="runs the Dockerfile's compileall (targets)")
    options = parser.parse_args()
    old = load_old(options.rev)
    status = 0
    for path in options.json:
        with open(path) as file:
            data = json.load(file)
        is_targets = "targets" in data["results"]
        layout = layout_for(options.python) if is_targets else None
        for label, variant in variants(data).items():
            for args in (run_args(is_targets), run_args(is_targets, rounds=2, duration=2, quick=True, threads=2)):
                diff = compare(old, variant, args, 634.0, layout)
                text = render(report, variant, args, 634.0, layout)
                print(
                    f"{path}, {label}, rounds={args.rounds}: {'TARGETS' if is_targets else 'RESULTS'}.md "
                    f"{len(text.splitlines())} lines, "
                    + ("identical to the old code's" if not diff else f"{len(diff)} diff lines")
                )
                if diff:
                    sys.stdout.writelines(diff[:80])
                    status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
