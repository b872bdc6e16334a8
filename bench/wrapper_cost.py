#!/usr/bin/env python3
"""What start.py's proxy-headers wrapper costs per request under Granian, apart from the launcher.

    .venv/bin/python bench/wrapper_cost.py --servers-venv "$PWD/.venv" [--rounds 6]

Starts `granian` by hand (the `direct` command bench.py derives from start.py's plan, access log off)
once per variant of the served target, all at once, then loads them in 1 s `wrk` bursts whose order
rotates each round, and reports per variant the req/s and the server tree's CPU time per request as
ratios to the plain app of the same round:

    app           main:app, what `granian direct` serves
    passthrough   an `async def` that awaits main:app: the cost of any Python ASGI middleware layer
    ports only    ProxyHeaders(numeric_ports=True) with the peer untrusted: ports to int, no header scan
    proxy only    ProxyHeaders(numeric_ports=False), peer trusted: the X-Forwarded-* scan, no port fix
    granian_app   asgi_start:granian_app (--factory), what start.py serves: both of the above
    plain call    a plain `def` returning main:app's coroutine: a layer without a coroutine frame of its own
    plain-call wrapper  granian_app's work (ports, X-Forwarded-*) in a plain `def __call__` that returns
                  the app's coroutine (a candidate for start.py; Hypercorn's wrapper must stay `async def`)

The module `asgi_start` is written out from start.py (runtime_module_source), as bench.py's
`granian wrapper only` case does; nothing else of the launcher is on the path. 127.0.0.1 only; every
server is its own process group, stopped by its id.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases
import procs
from launch import Runner

VARIANTS_SOURCE = """
import asgi_start
from main import app as _app


async def passthrough(scope, receive, send):
    await _app(scope, receive, send)


def plain_call(scope, receive, send):
    return _app(scope, receive, send)


class PlainCall(asgi_start.ProxyHeaders):
    # the same work as granian_app's wrapper, in a plain method that returns the app's coroutine

    def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            self.number_ports(scope)
            client = scope.get("client")
            if client and self.trusts(client[0]):
                self.apply(scope)
        return self.app(scope, receive, send)


ports_only = asgi_start.ProxyHeaders(_app, "192.0.2.1", numeric_ports=True)
proxy_only = asgi_start.ProxyHeaders(_app, "127.0.0.1")
plain_wrapper = PlainCall(_app, "127.0.0.1", numeric_ports=True)
"""
VARIANTS = {
    "app": ["main:app"],
    "passthrough": ["variants:passthrough"],
    "ports only": ["variants:ports_only"],
    "proxy only": ["variants:proxy_only"],
    "granian_app": ["--factory", "asgi_start:granian_app"],
    "plain call": ["variants:plain_call"],
    "plain-call wrapper": ["variants:plain_wrapper"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers-venv", required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    args.threads, args.warmup, args.inboard_venv = 1, 1, None
    work = tempfile.mkdtemp(prefix="asgi-start-wrapper-")
    cases.START_PY = os.path.join(work, "start.py")
    with open(os.path.join(cases.REPO, "start.py")) as src, open(cases.START_PY, "w") as dst:
        dst.write(src.read())
    runner = Runner(args, work)
    directory = runner.wrapper_dir()
    with open(os.path.join(directory, "variants.py"), "w") as file:
        file.write(VARIANTS_SOURCE)
    case = cases.Case("granian direct ACCESS_LOG=''", "granian", "direct", "granian", cases.NO_LOG)
    servers, ports, data = {}, {}, {name: [] for name in VARIANTS}
    started = time.perf_counter()
    try:
        for name, target in VARIANTS.items():
            ports[name] = procs.free_port()
            argv, env, _ = runner.command(case, ports[name])
            argv = [*argv[:-1], *target]
            env = dict(env, PYTHONPATH=directory, ASGI_START_APP="main:app")
            servers[name] = procs.Server(argv, env)
            procs.wait_first_200(servers[name], ports[name])
            procs.assert_loopback_only(ports[name])
        for name in VARIANTS:
            procs.settle_tree(servers[name], quiet=0.5)
            procs.wrk(ports[name], "/", 1, args)
        names = list(VARIANTS)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order + order[::-1]:
                before = procs.cpu_snapshot(servers[name].proc.pid)
                run = procs.wrk(ports[name], "/", 1, args)
                after = procs.cpu_snapshot(servers[name].proc.pid)
                data[name].append(
                    {
                        "round": r,
                        "rps": run["rps"],
                        "cpu_us": (after[2] - before[2]) / max(1, run["requests"]) * 1e6,
                        "foreign": procs.foreign_cpu_share(before, after),
                        "errors": run["non2xx"] + run["socket_errors"],
                    }
                )
            procs.log(f"round {r + 1}: " + ", ".join(f"{n} {data[n][-1]['rps']:.0f}" for n in names))
    finally:
        for server in servers.values():
            server.stop()
        procs.kill_all_groups()

    def per_round(name, key):
        return [
            statistics.mean(x[key] for x in data[name] if x["round"] == r)
            for r in range(args.rounds)
            if any(x["round"] == r for x in data[name])
        ]

    print(
        f"granian {len(VARIANTS)} variants, {args.rounds} rounds of 2 × 1 s bursts each, {time.perf_counter() - started:.0f} s"
    )
    print(f"load average at end: {procs.read_text('/proc/loadavg').split()[:3]}")
    print(
        "| served target | req/s median | req/s / app (min … max) | CPU µs/req median | CPU/req − app µs (min … max) | CPU/req / app | other CPU | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base_rps, base_cpu = per_round("app", "rps"), per_round("app", "cpu_us")
    for name, target in VARIANTS.items():
        rps, cpu = per_round(name, "rps"), per_round(name, "cpu_us")
        ratio = [a / b for a, b in zip(rps, base_rps)]
        extra = [a - b for a, b in zip(cpu, base_cpu)]
        cratio = [a / b for a, b in zip(cpu, base_cpu)]
        print(
            f"| {name} (`{' '.join(target)}`) | {statistics.median(rps):.0f} | {statistics.median(ratio):.3f} "
            f"({min(ratio):.2f} … {max(ratio):.2f}) | {statistics.median(cpu):.1f} | {statistics.median(extra):+.1f} "
            f"({min(extra):+.1f} … {max(extra):+.1f}) | {statistics.median(cratio):.3f} | "
            f"{statistics.median(per_round(name, 'foreign')):.0%} | {sum(x['errors'] for x in data[name])} |"
        )
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
