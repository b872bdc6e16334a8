"""What each part of an access record costs, in one process: microseconds per `logger.info` of Uvicorn's access
record, through start.py's own logging configuration, written to a pipe that `cat` reads.

    python bench/access_log_parts.py                 # this checkout and its merge base with main
    python bench/access_log_parts.py --before REV --records 20000 --repeat 9

Variants (each in a fresh interpreter, in an interleaved order, the fastest of `--repeat` runs kept, since
other work on the machine only ever adds time):

  before                  start.py of --before: logging's StreamHandler, a write and flush per record
  before, no _srcfile     the same with `logging._srcfile = None` (no look-up of the caller's frame)
  before, no threads/mp   and `logThreads`, `logMultiprocessing` off (`logProcesses` stays: the PID is printed)
  after                   this checkout: lines batched, strftime once a second, one JSON encoder
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from access_log import REPO, snapshot

VARIANTS = {
    "before": ("before", ""),
    "before, no _srcfile": ("before", "logging._srcfile = None"),
    "before, no threads/mp": (
        "before",
        "logging._srcfile = None; logging.logThreads = False; logging.logMultiprocessing = False",
    ),
    "after": ("after", ""),
}

CHILD = r"""
import logging, logging.config, os, subprocess, sys, time
launcher, log_format, tweak, records = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, launcher)
import start
reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
os.dup2(reader.stdin.fileno(), 1)
sys.stdout = open(1, "w", closefd=False)
runtime = os.path.join(os.environ["TMPDIR"], "runtime")
start.prepare_runtime(runtime, {})
sys.path.insert(0, runtime)
settings = start.parse_settings({"LOG_FORMAT": log_format})
logging.config.dictConfig(start.logging_dict(settings, start.probe_facts(settings, [])))
access = logging.getLogger("uvicorn.access")
if tweak:
    exec(tweak)
message, args = '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:50000", "GET", "/items?id=3", "1.1", 200)
started = time.perf_counter()
for _ in range(records):
    access.info(message, *args)
for handler in access.handlers:
    handler.flush()
print((time.perf_counter() - started) / records * 1e6, file=sys.stderr)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="git revision (default: where HEAD left main)")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    if args.before is None:
        merge_base = ["git", "-C", REPO, "merge-base", "HEAD", "main"]
        args.before = subprocess.run(merge_base, capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="asgi-start-parts-") as work:
        launchers = {"before": snapshot(args.before, f"{work}/before"), "after": snapshot(None, f"{work}/after")}
        times: dict[tuple[str, str], list[float]] = {}
        runs = [(name, log_format) for name in VARIANTS for log_format in ("text", "json")]
        for number in range(args.repeat):
            for name, log_format in runs if number % 2 == 0 else reversed(runs):
                version, tweak = VARIANTS[name]
                tmp = tempfile.mkdtemp(dir=work)
                env = {"PATH": os.environ["PATH"], "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
                argv = [args.python, "-c", CHILD, launchers[version], log_format, tweak, str(args.records)]
                result = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                times.setdefault((name, log_format), []).append(float(result.stderr.strip().splitlines()[-1]))
    print(f"µs per access record (fastest of {args.repeat}; median in brackets), {args.records} records per run")
    print("| variant | text | json |\n|---|---|---|")
    for name in VARIANTS:
        cells = [f"{min(times[(name, f)]):.1f} ({statistics.median(times[(name, f)]):.1f})" for f in ("text", "json")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
