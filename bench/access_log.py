"""What the access log costs, before and after a change: requests/s with the log on ÷ off, per server and format.

    python bench/access_log.py                       # this checkout against its merge base with main
    python bench/access_log.py --before e23b055 --rounds 7 --servers gunicorn,uvicorn --output /tmp/a

For each server, six launches run side by side (each on its own port, 2 workers, the raw app of
bench/app): start.py of `--before` (a git revision, written out with its config files) and of this
checkout, each with `ACCESS_LOG=''` (off), `LOG_FORMAT=text` and `LOG_FORMAT=json`. The server's
stdout and stderr go to a pipe that a thread reads, as a container runtime's log driver does (not
/dev/null). After a warm-up, each round loads every launch once with `wrk -t1 -c32` for `--seconds`,
in an order that is reversed every other round and rotated between rounds, so that drift on the machine
hits all alike; a ratio (on ÷ off) is taken within a round, and the report gives the median of the
rounds' ratios with their range. Beside it: the share of the workers' CPU time done by the busiest worker
(wrk's connections can land on one worker of two: 0.5 is an even split, 1.0 one worker did all) and the
share of the machine's CPUs other processes used during the bursts.
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

import procs

REPO = os.path.dirname(procs.BENCH)
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian")
LOGS = {"off": {"ACCESS_LOG": ""}, "text": {"LOG_FORMAT": "text"}, "json": {"LOG_FORMAT": "json"}}
LAUNCHER_FILES = ("start.py", "gunicorn_conf.py", "hypercorn_conf.py")
UNEVEN = 0.75  # a burst in which one worker of two did more than this share of the work is measured again


def snapshot(revision: str | None, into: str) -> str:
    """start.py and its config files of a git revision (None: this checkout) in a directory of their own."""
    os.makedirs(into)
    for name in LAUNCHER_FILES:
        if revision is None:
            shutil.copy(os.path.join(REPO, name), os.path.join(into, name))
        else:
            text = subprocess.run(
                ["git", "-C", REPO, "show", f"{revision}:{name}"], capture_output=True, check=True
            ).stdout
            with open(os.path.join(into, name), "wb") as file:
                file.write(text)
    return into


def workers_cpu(root: int) -> dict[int, float]:
    """CPU seconds of each worker (the server's children but multiprocessing's resource tracker)."""
    tree = procs.process_tree(root)
    seconds = {}
    for pid in tree.get(root, {}).get("children", []):
        if "resource_tracker" in tree.get(pid, {}).get("cmdline", ""):
            continue
        stat = procs.read_text(f"/proc/{pid}/stat")
        if stat:
            rest = stat.rsplit(")", 1)[1].split()
            seconds[pid] = (int(rest[11]) + int(rest[12])) / procs.CLK_TCK
    return seconds


def burst(server: procs.Server, port: int, seconds: float, wrk_args) -> dict:
    """One wrk burst; again (up to 3 times) while one worker did more than UNEVEN of the work."""
    for attempt in range(3):
        measured = one_burst(server, port, seconds, wrk_args)
        measured["attempts"] = attempt + 1
        if (measured["busiest_worker"] or 1) <= UNEVEN:
            break
    return measured


def one_burst(server: procs.Server, port: int, seconds: float, wrk_args) -> dict:
    cpu_before, workers_before, bytes_before = (
        procs.cpu_snapshot(server.proc.pid),
        workers_cpu(server.proc.pid),
        server.bytes,
    )
    result = procs.wrk(port, "/", seconds, wrk_args)
    time.sleep(0.3)  # what the workers wrote reaches the pipe (the access log's batches: every 0.1 s)
    cpu_after, workers_after = procs.cpu_snapshot(server.proc.pid), workers_cpu(server.proc.pid)
    used = [workers_after[pid] - workers_before.get(pid, 0.0) for pid in workers_after]
    total = sum(used)
    requests = result["rps"] * seconds
    return {
        "rps": result["rps"],
        "busiest_worker": max(used) / total if total > 0 else None,
        "cpu_us_per_request": total / requests * 1e6 if requests else None,
        "foreign_cpu": procs.foreign_cpu_share(cpu_before, cpu_after),
        "log_bytes_per_request": (server.bytes - bytes_before) / requests if requests else None,
    }


def measure_server(server_name: str, launchers: dict[str, str], args) -> dict:
    wrk_args = argparse.Namespace(threads=1, connections=32)
    running: dict[tuple[str, str], tuple[procs.Server, int]] = {}
    work = tempfile.mkdtemp(prefix="asgi-start-access-log-")
    try:
        for version, directory in launchers.items():
            for log, env_more in LOGS.items():
                port = procs.free_port()
                tmp = os.path.join(work, f"{version}-{log}")
                os.makedirs(tmp)
                env = {
                    "PATH": os.environ["PATH"],
                    "HOME": os.environ.get("HOME", "/root"),
                    "TMPDIR": tmp,
                    "PYTHONPATH": procs.APP_DIR,
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "SERVER": server_name,
                    "HOST": procs.HOST,
                    "PORT": str(port),
                    "WEB_CONCURRENCY": "2",
                    "MODULE_NAME": "main",
                    **env_more,
                }
                server = procs.Server([args.python, os.path.join(directory, "start.py")], env)
                procs.wait_first_200(server, port)
                running[(version, log)] = (server, port)
        for _, port in running.values():
            procs.wrk(port, "/", args.warmup, wrk_args)
        rounds = []
        order = list(running)
        for number in range(args.rounds):
            shifted = order[number % len(order) :] + order[: number % len(order)]
            if number % 2:
                shifted.reverse()
            bursts = {}
            for key in shifted:
                server, port = running[key]
                bursts[key] = burst(server, port, args.seconds, wrk_args)
                procs.log(f"  {server_name} {key[0]} {key[1]}: {bursts[key]['rps']:.0f} req/s")
            rounds.append({f"{version} {log}": value for (version, log), value in bursts.items()})
        return {"rounds": rounds}
    finally:
        for server, _ in running.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def summary(results: dict) -> list[dict]:
    rows = []
    for server_name, measured in results["servers"].items():
        for version in ("before", "after"):
            for log in ("text", "json"):
                ratios = [r[f"{version} {log}"]["rps"] / r[f"{version} off"]["rps"] for r in measured["rounds"]]
                cpu_ratios = [
                    r[f"{version} off"]["cpu_us_per_request"] / r[f"{version} {log}"]["cpu_us_per_request"]
                    for r in measured["rounds"]
                ]
                on = [r[f"{version} {log}"] for r in measured["rounds"]]
                off = [r[f"{version} off"] for r in measured["rounds"]]
                rows.append(
                    {
                        "server": server_name,
                        "version": version,
                        "format": log,
                        "ratio": statistics.median(ratios),
                        "low": min(ratios),
                        "high": max(ratios),
                        "rounds": len(ratios),
                        "cpu_ratio": statistics.median(cpu_ratios),
                        "cpu_low": min(cpu_ratios),
                        "cpu_high": max(cpu_ratios),
                        "uneven": sum((b["busiest_worker"] or 1) > UNEVEN for b in on + off),
                        "rps_off": statistics.median(b["rps"] for b in off),
                        "rps_on": statistics.median(b["rps"] for b in on),
                        "busiest_on": statistics.median(b["busiest_worker"] or 0 for b in on),
                        "busiest_off": statistics.median(b["busiest_worker"] or 0 for b in off),
                        "bytes_per_request": statistics.median(b["log_bytes_per_request"] or 0 for b in on),
                        "foreign_cpu": max(b["foreign_cpu"] for b in on + off),
                    }
                )
    return rows


def markdown(results: dict) -> str:
    lines = [
        "# The access log's cost: req/s with the log on ÷ off",
        "",
        f"Before: start.py of `{results['before']}`; after: `{results['after']}`. {results['rounds']} interleaved "
        f"rounds of `wrk -t1 -c32 -d{results['seconds']}s` per launch, 2 workers, the raw app, output to a pipe "
        f"that is read. {results['machine']}.",
        "",
        "req/s ratio: requests/s with the log on ÷ off. CPU ratio: the workers' CPU time per request with the log "
        "off ÷ on (the same cost, seen from the workers alone; it moves less when wrk's connections fall unevenly "
        f"on the workers or other work competes). A burst in which one worker did more than {UNEVEN:.0%} of the "
        "work was measured again (up to 3 times); `uneven` counts the bursts still so.",
        "",
        "| server | format | req/s ratio before | req/s ratio after | CPU ratio before | CPU ratio after "
        "| req/s off → on (after) | log B/req | uneven | others' CPU (max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {(row["server"], row["version"], row["format"]): row for row in summary(results)}
    for server_name in results["servers"]:
        for log in ("text", "json"):
            before, after = rows[(server_name, "before", log)], rows[(server_name, "after", log)]
            lines.append(
                f"| {server_name} | {log} | {before['ratio']:.2f} ({before['low']:.2f} … {before['high']:.2f}) "
                f"| **{after['ratio']:.2f}** ({after['low']:.2f} … {after['high']:.2f}) "
                f"| {before['cpu_ratio']:.2f} ({before['cpu_low']:.2f} … {before['cpu_high']:.2f}) "
                f"| **{after['cpu_ratio']:.2f}** ({after['cpu_low']:.2f} … {after['cpu_high']:.2f}) "
                f"| {after['rps_off']:.0f} → {after['rps_on']:.0f} | {after['bytes_per_request']:.0f} "
                f"| {before['uneven'] + after['uneven']} | {max(before['foreign_cpu'], after['foreign_cpu']):.0%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="git revision whose start.py is 'before' (default: where HEAD left main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=2, help="length of one wrk burst")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--python", default=sys.executable, help="the interpreter with the servers installed")
    parser.add_argument(
        "--output", default=os.path.join(procs.BENCH, "ACCESS-LOG"), help="writes OUTPUT.json, OUTPUT.md"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("access_log.py needs wrk (apt-get install wrk)")
    if args.before is None:
        merge_base = ["git", "-C", REPO, "merge-base", "HEAD", "main"]
        args.before = subprocess.run(merge_base, capture_output=True, text=True, check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="asgi-start-launchers-")
    revision = subprocess.run(
        ["git", "-C", REPO, "rev-parse", "--short", args.before], capture_output=True, text=True, check=True
    ).stdout.strip()
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "-C", REPO, "status", "--porcelain", *LAUNCHER_FILES], capture_output=True, text=True
    )
    launchers = {
        "before": snapshot(args.before, os.path.join(work, "before")),
        "after": snapshot(None, os.path.join(work, "after")),
    }
    load = os.getloadavg()
    results: dict = {
        "before": revision,
        "after": head.strip() + (" with uncommitted changes" if dirty.stdout.strip() else ""),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "machine": f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at the start",
        "servers": {},
    }
    try:
        for server_name in args.servers.split(","):
            procs.log(f"{server_name}: 6 launches")
            results["servers"][server_name] = measure_server(server_name, launchers, args)
    finally:
        procs.kill_all_groups()
        shutil.rmtree(work, ignore_errors=True)
    results["machine"] += f", {os.getloadavg()[0]:.2f} at the end"
    with open(args.output + ".json", "w") as file:
        json.dump(results, file, indent=1)
    with open(args.output + ".md", "w") as file:
        file.write(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
