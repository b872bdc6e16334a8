#!/usr/bin/env python3
"""What a start costs, for each documented way of running start.py, over a bare interpreter.

    .venv/bin/python bench/start_cost.py [--rounds 8] [--pairs 10] [--output bench/START-COST.md]

"A start" is everything start.py does before it execs the server: `--dry-run` reads the environment,
probes the machine and plans exactly as a start does, then prints the plan instead of exec'ing (the
same definition as target 3 of `--targets`). `--version` is shown beside it: loading the launcher
only. Each figure is the wall time of the way's command minus `python -c pass` of the same
interpreter, in alternating pairs, each run with a fresh empty TMPDIR; per round the difference of
the medians; the table gives the median over rounds with the range. The ways, in an order that
rotates every round:

    copied start.py      python start.py            (a copy, run by path: compiled on every start)
    image's start.pyc    the Dockerfile's compile step on a copy and its CMD (python /start.pyc):
                         also the README's copy recipe, which uses the same command
    python -m asgi_start the wheel, installed with pip into a fresh venv (compiled at install)
    asgi-start           the same wheel's console script, as pip writes it
    asgi-start (uv)      the console script as uv writes it (`uv pip install --compile-bytecode`),
                         when `--uv` names a uv binary

Every command runs with the same interpreter (a fresh venv that sees the servers venv's packages
through a .pth file, so that the plan finds the server), the image's environment (PYTHONPATH=bench/app,
PYTHONDONTWRITEBYTECODE=1, PYTHONUNBUFFERED=1) and bench/app as its working directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets
from procs import psi_some_total, read_text, timed_spawn

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
MODES = ("--dry-run", "--version")
GOAL_MS = 15.0


def run(argv: list[str], **kwargs) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300, **kwargs).stdout


def build_wheel(python: str, out: str) -> str:
    """The wheel of this checkout, built as .ci/run and the release workflow build it."""
    try:
        run([python, "-c", "import hatchling"])
        isolation = ["--no-build-isolation"]
    except subprocess.CalledProcessError:
        isolation = []  # the pinned backend from the index
    run([python, "-m", "pip", "wheel", "-q", *isolation, "--no-deps", "-w", out, REPO])
    (name,) = [n for n in os.listdir(out) if n.endswith(".whl")]
    return os.path.join(out, name)


def fresh_venv(python: str, directory: str) -> str:
    """A venv without pip whose interpreter also sees the servers venv's packages (a .pth file)."""
    run([python, "-m", "venv", "--without-pip", directory])
    venv_python = os.path.join(directory, "bin", "python")
    servers = run([python, "-c", "import site; print('\\n'.join(site.getsitepackages()))"])
    purelib = run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    with open(os.path.join(purelib, "servers.pth"), "w") as file:
        file.write(servers)
    return venv_python


def set_up(work: str, python: str, uv: str | None) -> tuple[str, dict[str, list[str]], dict[str, str], list[str]]:
    """The interpreter, the command of each way, the environment, and notes."""
    notes: list[str] = []
    wheel = build_wheel(python, os.path.join(work, "dist"))
    venv_python = fresh_venv(python, os.path.join(work, "venv"))
    run([python, "-m", "pip", "--python", venv_python, "install", "-q", "--no-index", "--no-deps", wheel])
    venv_bin = os.path.dirname(venv_python)

    copy_dir = os.path.join(work, "copy")
    os.makedirs(copy_dir)
    shutil.copy2(os.path.join(REPO, "start.py"), copy_dir)

    snapshot = os.path.join(work, "image")
    os.makedirs(snapshot)
    layout = targets.image_layout(REPO, snapshot, venv_python)
    notes += layout.notes
    notes.append(f"image: build steps `{'`, `'.join(layout.compiled)}`; CMD `{layout.cmd_image}`")

    ways = {
        "copied start.py": [venv_python, os.path.join(copy_dir, "start.py")],
        "image's start.pyc": layout.cmd,
        "python -m asgi_start": [venv_python, "-m", "asgi_start"],
        "asgi-start": [os.path.join(venv_bin, "asgi-start")],
    }
    if uv:
        uv_python = fresh_venv(python, os.path.join(work, "venv-uv"))
        run([uv, "pip", "install", "-q", "--python", uv_python, "--no-index", "--no-deps", "--compile-bytecode", wheel])
        ways["asgi-start (uv)"] = [os.path.join(os.path.dirname(uv_python), "asgi-start")]
        notes.append(f"uv: {run([uv, '--version']).strip()}; its venv is made like pip's, with the same interpreter")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(layout.env)
    env.update({"SERVER": "gunicorn", "HOST": "127.0.0.1", "PORT": "8000"})
    return venv_python, ways, env, notes


def one_round(python: str, ways: dict[str, list[str]], env: dict[str, str], pairs: int, r: int, work: str) -> dict:
    names = list(ways)
    shift = r % len(names)
    order = names[shift:] + names[:shift]
    results: dict = {}
    counter = [0]

    def fresh_env() -> dict[str, str]:
        counter[0] += 1
        tmp = os.path.join(work, "tmp", f"{r}-{counter[0]}")
        os.makedirs(tmp)
        return dict(env, TMPDIR=tmp)

    bare = [python, "-c", "pass"]
    for name in order:
        for mode in MODES:
            command = [*ways[name], mode]
            timed_spawn(bare, fresh_env())  # warm-up, discarded
            timed_spawn(command, fresh_env())
            wall: dict[str, list[float]] = {"bare": [], "way": []}
            cpu: dict[str, list[float]] = {"bare": [], "way": []}
            for k in range(pairs):
                for side in ("bare", "way") if (k + r) % 2 == 0 else ("way", "bare"):
                    w, c = timed_spawn(bare if side == "bare" else command, fresh_env())
                    wall[side].append(w)
                    cpu[side].append(c)
            results[f"{name} {mode}"] = {
                "extra_ms": statistics.median(wall["way"]) - statistics.median(wall["bare"]),
                "extra_cpu_ms": statistics.median(cpu["way"]) - statistics.median(cpu["bare"]),
                "bare_ms": statistics.median(wall["bare"]),
                "way_ms": statistics.median(wall["way"]),
            }
    return results


def spread(values: list[float]) -> str:
    return f"**{statistics.median(values):.1f}** ({min(values):.1f} … {max(values):.1f}, n={len(values)})"


def report(data: dict) -> str:
    lines = [
        "# What a start costs, per way of running start.py",
        "",
        f"Generated by `python bench/start_cost.py --rounds {data['rounds']} --pairs {data['pairs']}` on "
        f"{data['date']} in {data['seconds'] / 60:.1f} min (see the module's docstring for the method). "
        "Figures: milliseconds over `python -c pass` of the same interpreter, median of the per-round "
        "differences of medians, with their range and count.",
        "",
        "| machine | |",
        "|---|---|",
        f"| Python | {data['python']} |",
        f"| start.py | sha256 {data['sha256'][:16]}… |",
        f"| load average at start / end | {data['loadavg_start']} / {data['loadavg_end']} |",
        f"| CPU pressure (PSI some) during the run | {data['psi_ms'] / 1000:.1f} s stalled in {data['seconds']:.0f} s |",
        f"| bare interpreter (`python -c pass`) | {spread(data['bare_ms'])} ms |",
        "",
        f"| way | command | a start (`--dry-run`) over bare, ms | goal ≤ {GOAL_MS:.0f} ms | CPU (user+sys) over bare, ms | loading only (`--version`) over bare, ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, command in data["ways"].items():
        start = [r[f"{name} --dry-run"]["extra_ms"] for r in data["results"]]
        cpu = [r[f"{name} --dry-run"]["extra_cpu_ms"] for r in data["results"]]
        load = [r[f"{name} --version"]["extra_ms"] for r in data["results"]]
        verdict = "met" if max(start) <= GOAL_MS else "missed" if min(start) > GOAL_MS else "range straddles the goal"
        shown = " ".join(os.path.basename(part) if i == 0 else part for i, part in enumerate(command))
        lines.append(f"| {name} | `{shown}` | {spread(start)} | {verdict} | {spread(cpu)} | {spread(load)} |")
    lines += ["", *(f"- {note}" for note in data["notes"]), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=10, help="pairs (bare, way) per way and mode in a round")
    parser.add_argument("--python", default=sys.executable, help="the servers venv's interpreter (default: this)")
    parser.add_argument("--uv", help="a uv binary: also measure the console script uv writes")
    parser.add_argument("--output", default=os.path.join(BENCH, "START-COST.md"))
    args = parser.parse_args()

    started = time.monotonic()
    psi_start = psi_some_total()
    loadavg_start = read_text("/proc/loadavg").split()[:3]
    work = tempfile.mkdtemp(prefix="asgi-start-cost-")
    try:
        python, ways, env, notes = set_up(work, args.python, args.uv)
        results = []
        for r in range(args.rounds):
            results.append(one_round(python, ways, env, args.pairs, r, work))
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import hashlib

    with open(os.path.join(REPO, "start.py"), "rb") as file:
        sha256 = hashlib.sha256(file.read()).hexdigest()
    data = {
        "rounds": args.rounds,
        "pairs": args.pairs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.monotonic() - started,
        "python": sys.version.split()[0],
        "sha256": sha256,
        "loadavg_start": " ".join(loadavg_start),
        "loadavg_end": " ".join(read_text("/proc/loadavg").split()[:3]),
        "psi_ms": (psi_some_total() - psi_start) / 1000,
        "bare_ms": [statistics.median([v["bare_ms"] for v in r.values()]) for r in results],
        "ways": {
            name: [os.path.relpath(p, work) if p.startswith(work) else p for p in cmd] for name, cmd in ways.items()
        },
        "notes": [note.replace(work, "<work>") for note in notes],
        "results": results,
    }
    text = report(data)
    with open(args.output, "w") as file:
        file.write(text)
    with open(os.path.splitext(args.output)[0] + ".json", "w") as file:
        json.dump(data, file, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
