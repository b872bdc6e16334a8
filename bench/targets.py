"""`--targets`: the four performance targets of issue 8, in one interleaved run, under the image's
conditions (the Dockerfile's CMD, files and compileall mirrored into a snapshot; PYTHONDONTWRITEBYTECODE=1;
a fresh empty TMPDIR per start). report.targets_report() turns the results into TARGETS.md.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time

import cases
from cases import NO_LOG, SERVERS, Case
from launch import Runner
from procs import (
    APP_DIR,
    HOST,
    assert_loopback_only,
    cpu_snapshot,
    foreign_cpu_share,
    free_port,
    log,
    process_tree,
    psi_some_total,
    read_text,
    settle_tree,
    timed_spawn,
    wait_first_200,
    wrk,
)

# --------------------------------------------------------------------------
# --targets: the performance targets of issue 8, in one interleaved run, under the image's conditions
# --------------------------------------------------------------------------

TARGET_SERVERS = SERVERS
TTFR_GOAL, IMPORT_GOAL_MS, DRYRUN_GOAL_MS, TPUT_GOAL = 1.05, 2.0, 15.0, 0.97


class ImageLayout:
    """What the Dockerfile does with the launcher, mirrored into the snapshot directory.

    files:    the repository files the image copies to `/` (start.py, the config files, ...), by name
    compiled: the Dockerfile's python build steps on those files (compileall, py_compile), run on the
              snapshot ("/x" -> snapshot/x, also inside strings and as a prefix: "/start.pyc")
    cmd:      the image's CMD, "python" -> the servers venv, "/x" -> snapshot/x
    env:      the image's PYTHON* variables (PYTHONPATH's WORKDIR -> bench/app), PYTHONDONTWRITEBYTECODE=1
    """

    def __init__(self) -> None:
        self.files: list[str] = []
        self.compiled: list[str] = []
        self.cmd: list[str] = []
        self.cmd_image = ""
        self.env: dict[str, str] = {}
        self.notes: list[str] = []

    @staticmethod
    def is_config(name: str) -> bool:
        return name.endswith("_conf.py")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    return [(line.split(None, 1)[0].upper(), [*line.split(None, 1), ""][1].strip()) for line in joined]


def read_dockerfile(repo: str) -> dict:
    """The Dockerfile's facts about the launcher: the files it copies to / (image path -> repository
    path), its PYTHON* variables, its RUN commands, its CMD and its last WORKDIR."""
    facts: dict = {"copied": {}, "env": {}, "runs": [], "cmd": "", "workdir": "/"}
    for keyword, rest in dockerfile_instructions(read_text(os.path.join(repo, "Dockerfile"))):
        if keyword == "WORKDIR":
            facts["workdir"] = rest
        elif keyword == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep and key.startswith("PYTHON"):
                    facts["env"][key] = value
        elif keyword == "COPY":
            facts["copied"].update(copied_files(repo, shlex.split(rest)))
        elif keyword == "RUN":
            facts["runs"].append(rest)
        elif keyword == "CMD":
            facts["cmd"] = rest
    return facts


def copied_files(repo: str, tokens: list[str]) -> dict[str, str]:
    """A COPY's repository files that land directly in / (image path -> repository path)."""
    if any(t.startswith("--from") for t in tokens):
        return {}
    tokens = [t for t in tokens if not t.startswith("--")]
    if len(tokens) < 2:
        return {}
    copied = {}
    *sources, dest = tokens
    for source in sources:
        if not os.path.isfile(os.path.join(repo, source)):
            continue
        if dest == "/":
            copied["/" + os.path.basename(source)] = source
        elif dest.startswith("/") and dest.count("/") == 1 and len(sources) == 1:
            copied[dest] = source
    return copied


def shell_commands(run: str) -> list[list[str]]:
    """A RUN's commands, split at &&, ; and ||."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", ";", "||"):
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def image_layout(repo: str, snapshot: str, python: str) -> ImageLayout:
    layout = ImageLayout()
    dockerfile = os.path.join(repo, "Dockerfile")
    facts = read_dockerfile(repo)
    copied = facts["copied"]
    if not copied:
        layout.notes.append(f"no launcher COPY to / found in {dockerfile}: using {', '.join(cases.LAUNCHER_FILES)}")
        copied = {"/" + name: name for name in cases.LAUNCHER_FILES}
    for image_path, source in copied.items():
        shutil.copy2(os.path.join(repo, source), os.path.join(snapshot, image_path[1:]))
        layout.files.append(image_path[1:])

    # "/start.py" -> "<snapshot>/start.py", also as a prefix ("/start.pyc") and inside a string
    image_paths = re.compile(
        r"(?<![\w./-])(" + "|".join(re.escape(p) for p in sorted(copied, key=len, reverse=True)) + r")"
    )

    def to_snapshot(text: str) -> str:
        return image_paths.sub(lambda m: os.path.join(snapshot, m.group(1)[1:]), text)

    run_build_steps(layout, facts["runs"], image_paths, to_snapshot, python, snapshot)
    set_cmd(layout, facts["cmd"], to_snapshot, python, snapshot, dockerfile)
    layout.env = image_env(facts["env"], facts["workdir"], snapshot, layout.notes)
    return layout


def run_build_steps(layout: ImageLayout, runs: list[str], image_paths, to_snapshot, python: str, snapshot: str):
    """The build steps on the launcher files: each `python ...` command of a RUN that names one of them
    (compileall, py_compile, ...), run with the servers' interpreter on the snapshot. Other commands
    (useradd, venv, pip) are not the launcher's and are not run."""
    for run in runs:
        for tokens in shell_commands(run):
            if not tokens or not any(image_paths.search(t) for t in tokens):
                continue
            if not os.path.basename(tokens[0]).startswith("python"):
                layout.notes.append(f"build step not run (not python): `{shlex.join(tokens)}`")
                continue
            subprocess.run(
                [python, *(to_snapshot(t) for t in tokens[1:])],
                check=True,
                capture_output=True,
                timeout=60,
                cwd=snapshot,
            )
            layout.compiled.append(" ".join(["python", *tokens[1:]]))


def set_cmd(layout: ImageLayout, cmd: str, to_snapshot, python: str, snapshot: str, dockerfile: str) -> None:
    """The image's CMD as the start command: "python" -> the servers' interpreter, "/x" -> snapshot/x."""
    if cmd:
        argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
        layout.cmd_image = shlex.join(argv)
        layout.cmd = [
            python if i == 0 and os.path.basename(a).startswith("python") else to_snapshot(a)
            for i, a in enumerate(argv)
        ]
    if not layout.cmd or not os.path.isabs(layout.cmd[0]) or not any(a.startswith(snapshot) for a in layout.cmd):
        layout.notes.append(f"no usable exec-form CMD in {dockerfile}: using python /start.py")
        layout.cmd_image = "python /start.py"
        layout.cmd = [python, os.path.join(snapshot, "start.py")]


def image_env(raw_env: dict[str, str], workdir: str, snapshot: str, notes: list[str]) -> dict[str, str]:
    """The image's PYTHON* variables here (PYTHONPATH: WORKDIR -> bench/app, / -> the snapshot), and
    PYTHONDONTWRITEBYTECODE=1."""
    env = {}
    for key, value in raw_env.items():
        if key == "PYTHONPATH":
            parts = []
            for entry in value.split(":"):
                if entry.rstrip("/") == workdir.rstrip("/"):
                    parts.append(APP_DIR)
                elif entry == "/":
                    parts.append(snapshot)
                elif entry:
                    notes.append(f"PYTHONPATH entry {entry} of the image has no counterpart here: dropped")
            if parts:
                env[key] = ":".join(parts)
        else:
            env[key] = value
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# Installed as sitecustomize.py (its directory first on PYTHONPATH) in the import-time launches only.
# In every Python process of the launch (start.py before its exec, the server, its workers, spawned
# or forked) it: sends this process's stderr, where -X importtime writes, to a file of its own; and
# times every module load that goes through a file loader (imports, and config files that the
# servers load by path with spec_from_file_location, which -X importtime does not see), writing one
# record per load of a file in the launcher's directories (start.py's snapshot, this start's TMPDIR).
PROBE_SOURCE = r"""
import os, sys
_out = os.environ.get("ASGI_START_BENCH_PROBE")
if _out:
    import _frozen_importlib_external as _ext
    from time import perf_counter_ns as _now

    _dirs = tuple(d.rstrip("/") + "/" for d in os.environ.get("ASGI_START_BENCH_LAUNCHER", "").split(os.pathsep) if d)
    _me = {}
    _stack = []  # per load in progress: [start ns, nested loads ns, probe overhead at start, launcher name or None]
    _overhead = [0]

    def _begin(forked):
        _me["token"] = f"{os.getpid()}-{_now()}"
        fd = os.open(os.path.join(_out, f"stderr-{_me['token']}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        with open(os.path.join(_out, f"meta-{_me['token']}.txt"), "w") as file:
            file.write(repr({"pid": os.getpid(), "ppid": os.getppid(), "forked": forked, "argv": list(sys.orig_argv)}))

    _begin(False)
    os.register_at_fork(after_in_child=lambda: _begin(True))
    _exec_module = _ext._LoaderBasics.exec_module

    def _timed_exec_module(self, module):
        via_import = sys._getframe(1).f_code.co_name == "_load_unlocked"
        origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(module, "__file__", None) or ""
        launcher = origin.startswith(_dirs) if _dirs else False
        entry = [_now(), 0, _overhead[0], module.__name__ if launcher else None]
        outer = [e[3] for e in _stack if e[3]]
        _stack.append(entry)
        try:
            return _exec_module(self, module)
        finally:
            end = _now()
            _stack.pop()
            cumulative = end - entry[0] - (_overhead[0] - entry[2])
            if _stack:
                _stack[-1][1] += cumulative
            if launcher:
                record = {"name": module.__name__, "file": origin, "cum_ns": cumulative, "self_ns": cumulative - entry[1],
                          "via_import": via_import, "outer": outer, "pid": os.getpid()}
                with open(os.path.join(_out, f"events-{_me['token']}.txt"), "a") as file:
                    file.write(repr(record) + "\n")
            _overhead[0] += _now() - end

    _ext._LoaderBasics.exec_module = _timed_exec_module
"""


def setup_probe(work: str, python: str) -> str:
    directory = os.path.join(work, "probe")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "sitecustomize.py")
    with open(path, "w") as file:
        file.write(PROBE_SOURCE)
    subprocess.run([python, "-m", "compileall", "-q", path], check=True, timeout=60)  # cached, like a site module
    return directory


def importtime_lines(text: str) -> list[tuple[int, int, int, str]]:
    """-X importtime lines in order: (self µs, cumulative µs, depth, module)."""
    out = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if match:
            out.append((int(match.group(1)), int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    return out


def outermost(lines: list[tuple[int, int, int, str]], names: set[str]) -> list[tuple[int, int, int, str]]:
    """The lines of `names` modules not nested in another such line (importtime prints children first)."""
    out = []
    for i, (_s, _c, depth, name) in enumerate(lines):
        if name.split(".")[0] not in names:
            continue
        nested, level = False, depth
        for _s2, _c2, depth2, name2 in lines[i + 1 :]:  # walk up: each parent is the next line one level up
            if depth2 < level:
                if name2.split(".")[0] in names:
                    nested = True
                    break
                level = depth2
                if level == 0:
                    break
        if not nested:
            out.append(lines[i])
    return out


def module_names_under(directory: str) -> set[str]:
    names = set()
    for root, dirs, files in os.walk(directory):
        for name in files:
            if name.endswith((".py", ".pyc", ".so")) and name != "__init__.py":
                names.add(name.split(".")[0])
        names.update(d for d in dirs if os.path.exists(os.path.join(root, d, "__init__.py")))
    return names


def target_cases(server: str) -> dict[str, Case]:
    return {
        "start": Case(f"{server} start.py", server, "start", server),
        "direct": Case(f"{server} direct", server, "direct", server),
        "start_nolog": Case(f"{server} start.py ACCESS_LOG=''", server, "start", server, NO_LOG),
        "direct_nolog": Case(f"{server} direct ACCESS_LOG=''", server, "direct", server, NO_LOG),
    }


def ttfr_once(runner: Runner, case: Case) -> tuple[float, list[str]]:
    port = free_port()
    server, _, argv = runner.launch(case, port)
    try:
        ms = wait_first_200(server, port) * 1000
        assert_loopback_only(port)
    finally:
        server.stop(grace=0.5)
    return ms, argv


def import_probe(runner: Runner, case: Case, probe_dir: str) -> dict:
    """One start through start.py with -X importtime and the probe in every process: per process, the
    time spent loading launcher code, and the config file's load in the server's master."""
    out = tempfile.mkdtemp(prefix="probe-", dir=runner.work)
    snapshot = os.path.dirname(cases.START_PY)
    tmpdir = {}

    def update(env: dict) -> dict:
        env = dict(env)
        tmpdir["path"] = env["TMPDIR"]
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        env["PYTHONPATH"] = probe_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["ASGI_START_BENCH_PROBE"] = out
        env["ASGI_START_BENCH_LAUNCHER"] = os.pathsep.join([snapshot, env["TMPDIR"]])
        return env

    port = free_port()
    server, workers, argv = runner.launch(case, port, env_update=update)
    root = server.proc.pid
    try:
        wait_first_200(server, port)
        assert_loopback_only(port)
        settle_tree(server, probe_out=out)
        alive = set(process_tree(root))
    finally:
        server.stop(grace=2.0)
    names = module_names_under(tmpdir["path"]) | module_names_under(snapshot)
    configs = {name for name in os.listdir(snapshot) if ImageLayout.is_config(name)}
    procs = read_probe(out)
    for _token, _meta, events in procs:
        names |= {e["name"].split(".")[0] for e in events if e["via_import"]}
    result = {"argv": argv, "expected_workers": workers, "processes": [], "launcher_names": sorted(names)}
    for token, meta, events in procs:
        stderr = read_text(os.path.join(out, f"stderr-{token}.txt"))
        process = probe_process(meta, events, stderr, names, configs)
        process.update(role=probe_role(meta, root, argv), alive_at_end=meta["pid"] in alive)
        result["processes"].append(process)
    shutil.rmtree(out, ignore_errors=True)
    return result


def read_probe(out: str) -> list[tuple[str, dict, list[dict]]]:
    """(token, meta, load events) per process the probe saw, in the order of their files' names."""
    procs = []
    for entry in sorted(os.listdir(out)):
        if not entry.startswith("meta-"):
            continue
        token = entry[5:-4]
        meta = ast.literal_eval(read_text(os.path.join(out, entry)))  # a repr() the probe wrote
        events = [ast.literal_eval(line) for line in read_text(os.path.join(out, f"events-{token}.txt")).splitlines()]
        procs.append((token, meta, events))
    return procs


def probe_role(meta: dict, root: int, argv: list[str]) -> str:
    argv_text = " ".join(meta["argv"])
    if meta["pid"] == root and meta["argv"] == list(argv):
        return "launcher"  # start.py itself before its exec: measured by the --dry-run target
    if "resource_tracker" in argv_text or "forkserver" in argv_text:
        return "helper"
    return "master" if meta["pid"] == root else "worker"


def probe_process(meta: dict, events: list[dict], stderr: str, names: set[str], configs: set[str]) -> dict:
    """One process's launcher code: the -X importtime cumulative time of its outermost launcher modules,
    the probe's time for the launcher loads that are not a config file, and each config file's load."""
    top = outermost(importtime_lines(stderr), names)
    importtime_us = sum(line[1] for line in top)
    plain = [e for e in events if os.path.basename(e["file"]) not in configs]
    plain_names = {e["name"] for e in plain}
    probe_us = sum(e["cum_ns"] for e in plain if not plain_names.intersection(e["outer"])) / 1000
    config = [
        {
            "file": os.path.basename(e["file"]),
            "cum_us": e["cum_ns"] / 1000,
            "self_us": e["self_ns"] / 1000,
            "nested_launcher_us": sum(p["cum_ns"] for p in plain if p["outer"][-1:] == [e["name"]]) / 1000,
        }
        for e in events
        if os.path.basename(e["file"]) in configs
    ]
    return {
        "pid": meta["pid"],
        "role": None,
        "forked": meta["forked"],
        "alive_at_end": None,
        "argv": " ".join(meta["argv"])[:160],
        "importtime_modules": [(name, cum, own) for own, cum, _d, name in top],
        "importtime_us": importtime_us,
        "probe_modules": [(e["name"], os.path.basename(e["file"]), e["cum_ns"] / 1000, e["via_import"]) for e in plain],
        "probe_us": probe_us,
        "launcher_us": max(importtime_us, probe_us),
        "config": config,
    }


def dryrun_round(runner: Runner, server: str, pairs: int, r: int) -> dict:
    """`--dry-run` the way the image starts it vs `python -c pass`, in alternating pairs, each with a
    fresh empty TMPDIR; the per-round figure is the difference of the medians."""
    base = runner.env(runner.args.servers_venv, {"SERVER": server, "HOST": HOST, "PORT": "8000"})
    commands = {"bare": [runner.py, "-c", "pass"], "start": [*runner.start_argv, "--dry-run"]}
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "start": []}
    for name in ("bare", "start"):  # warm-up, discarded
        timed_spawn(commands[name], dict(base, TMPDIR=runner.fresh_tmpdir()))
    for k in range(pairs):
        for name in ("bare", "start") if (k + r) % 2 == 0 else ("start", "bare"):
            times[name].append(timed_spawn(commands[name], dict(base, TMPDIR=runner.fresh_tmpdir())))
    wall = {n: [t[0] for t in v] for n, v in times.items()}
    cpu = {n: [t[1] for t in v] for n, v in times.items()}
    return {
        "bare_ms": wall["bare"],
        "start_ms": wall["start"],
        "extra_ms": statistics.median(wall["start"]) - statistics.median(wall["bare"]),
        "extra_cpu_ms": statistics.median(cpu["start"]) - statistics.median(cpu["bare"]),
        "extra_min_ms": min(wall["start"]) - min(wall["bare"]),
    }


def load_pair(runner: Runner, launches: dict[str, Case], sides: tuple[str, str], args) -> dict:
    """Both launches up at once (started in `sides` order), each warmed up, then 1 s wrk bursts in
    A B B A order until each had `args.duration` seconds: drift on a shared machine hits both alike."""
    servers, ports, out = {}, {}, {}
    try:
        for side in sides:
            ports[side] = free_port()
            servers[side], workers, argv = runner.launch(launches[side], ports[side])
            out[side] = {"argv": argv, "expected_workers": workers, "bursts": []}
            wait_first_200(servers[side], ports[side])
            assert_loopback_only(ports[side])
        for side in sides:
            settle_tree(servers[side], quiet=0.5)
            out[side]["processes"] = len(process_tree(servers[side].proc.pid))
        warm = {side: wrk(ports[side], "/", args.warmup, args)["requests"] for side in sides}
        a, b = sides
        for k in range(args.duration):
            for side in (a, b) if k % 2 == 0 else (b, a):
                before = cpu_snapshot(servers[side].proc.pid)
                run = wrk(ports[side], "/", 1, args)
                after = cpu_snapshot(servers[side].proc.pid)
                run["foreign_cpu"] = foreign_cpu_share(before, after)
                run["cpu_s"] = after[2] - before[2]
                out[side]["bursts"].append(run)
    finally:
        for server in servers.values():
            server.stop()
    for side in sides:
        bursts = out[side]["bursts"]
        requests = sum(b["requests"] for b in bursts)
        out[side].update(
            rps=statistics.mean(b["rps"] for b in bursts),
            p99_ms=statistics.median(b["p99_ms"] for b in bursts),
            requests=requests,
            non2xx=sum(b["non2xx"] for b in bursts),
            socket_errors=sum(b["socket_errors"] for b in bursts),
            foreign_cpu=statistics.mean(b["foreign_cpu"] for b in bursts),
            cpu_us_per_request=sum(b["cpu_s"] for b in bursts) / max(1, requests) * 1e6,
            log_bytes_per_request=servers[side].bytes / max(1, warm[side] + requests),
        )
    return out


def targets_run(runner: Runner, args) -> dict:
    servers = [s for s in TARGET_SERVERS if re.search(args.cases or "", s)]
    probe_dir = setup_probe(runner.work, runner.py)
    res: dict = {"servers": servers, "rounds": [], "argv": {}}
    for s in servers:
        res[s] = {"ttfr": [], "imports": [], "dryrun": [], "tput": []}
    for r in range(args.rounds):
        t0, psi0, load0 = time.monotonic(), psi_some_total(), read_text("/proc/loadavg").split()[0]
        order_servers = servers[r % len(servers) :] + servers[: r % len(servers)]
        for server in order_servers:
            block = time.monotonic()
            launches = target_cases(server)
            rec = res[server]
            # 1. time to first 200: start.py / direct, in pairs whose order alternates
            for k in range(args.ttfr_pairs):
                pair = {}
                for side in ("start", "direct") if (r + k) % 2 == 0 else ("direct", "start"):
                    pair[side], argv = ttfr_once(runner, launches[side])
                    res["argv"].setdefault(launches[side].name, argv)
                rec["ttfr"].append(pair)
            runner.clean_tmpdirs()
            # 2. launcher code loaded per server process (start.py only)
            probe = import_probe(runner, launches["start"], probe_dir)
            rec["imports"].append(probe)
            runner.clean_tmpdirs()
            # 3. --dry-run over a bare interpreter
            rec["dryrun"].append(dryrun_round(runner, server, args.dryrun_pairs, r))
            runner.clean_tmpdirs()
            # 4. throughput with the access log off, start.py / direct, bursts in A B B A order
            sides = ("start_nolog", "direct_nolog") if r % 2 == 0 else ("direct_nolog", "start_nolog")
            pair = load_pair(runner, launches, sides, args)
            for side in sides:
                res["argv"].setdefault(launches[side].name, pair[side].pop("argv"))
            rec["tput"].append(pair)
            runner.clean_tmpdirs()
            ttfr = rec["ttfr"][-args.ttfr_pairs :]
            servers_procs = [p for p in probe["processes"] if p["role"] in ("master", "worker")]
            log(
                f"  round {r + 1} {server:<9} ttfr "
                + " ".join(f"{p['start']:.0f}/{p['direct']:.0f}" for p in ttfr)
                + " ms  launcher import "
                + "/".join(f"{p['launcher_us'] / 1000:.1f}" for p in servers_procs)
                + f" ms  dry-run +{rec['dryrun'][-1]['extra_ms']:.1f} ms  req/s "
                f"{pair['start_nolog']['rps']:.0f}/{pair['direct_nolog']['rps']:.0f}  "
                f"({time.monotonic() - block:.0f} s)"
            )
        wall = time.monotonic() - t0
        res["rounds"].append(
            {
                "seconds": wall,
                "cpu_pressure": (psi_some_total() - psi0) / 1e6 / wall,
                "loadavg_start": load0,
                "loadavg_end": read_text("/proc/loadavg").split()[0],
            }
        )
    return res
