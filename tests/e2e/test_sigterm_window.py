"""SIGTERM at any moment of the start-up, through `python start.py` on 127.0.0.1: the server stops within seconds.

A container runtime sends SIGTERM once (`docker stop`, a pod deleted or a rollout
cancelled while the pod is still starting) and SIGKILLs after its grace period. From
the moment start.py execs the server, that one SIGTERM must be acted on, whatever the
server is doing: importing itself, spawning or forking workers, loading the app.

Each case first measures how long the server takes, from the exec, until every worker
has answered; then starts it again and again, each time sending one SIGTERM to the
server a given delay after the exec (the moment start.py's command line becomes the
server's). The delays run from 0 to a quarter past that moment, STEP_MS apart. For
every delay the server must exit within EXIT_BOUND_S, with status 0 or killed by that
SIGTERM (a server still importing, before it has a handler), and leave no process of
its session behind. GRACEFUL_TIMEOUT is 120 (the default), so a lost signal shows as a
hang: the test waits EXIT_BOUND_S, kills the process group, goes on, and fails at the
end with the table of every delay.

EXIT_BOUND_S: a server that is not serving yet has nothing to finish. The slowest
legitimate path measured (2 cores, busy) is Hypercorn with a SIGTERM that arrived while
its master was still importing: the master spawns its workers, and each stops only
once it has loaded the app and polls the shutdown event, up to 1.4 s; Uvicorn's
supervisor polls its signal queue every 0.5 s and may first wait for a booting worker's
health answer (up to 1 s measured). 5 s is over three times that, half of `docker
stop`'s 10 s, and far below the 120 s a lost signal costs.

Two cases widen a moment that is otherwise microseconds to milliseconds wide and seldom
hit, with a config file that extends the default one. `gunicorn-2-slow-post-fork` adds a
post_fork hook taking 0.3 s (as hooks that reconnect or warm up do): a forked worker runs
with its master's signal handlers until it installs its own. `hypercorn-2-slow-spawn`
makes each worker spawn return 0.15 s late (as on a loaded machine): a SIGTERM then meets
Hypercorn's master between "worker launched" and "worker registered" in multiprocessing,
where a handler that stops the master with multiprocessing's list of children misses it
(the worker, orphaned, goes on serving).

The `pid1-` cases run start.py as PID 1 of a new PID namespace (`unshare`), as in a
container without an init, and signal it from outside, as the runtime does: the kernel
drops a signal that PID 1 has no handler for, so a server that is still importing
must have it held, not left at its default action. They need root (or user
namespaces) and are skipped without.

Granian (`granian-*`): its forked workers run with the main's Python SIGTERM handler until they
install their own, after the app is imported; a SIGTERM the main relays in that window was lost and
the main waited for the worker forever (GRACEFUL_TIMEOUT's --workers-kill-timeout, here 120 s).
start.py resets SIGTERM and SIGINT to their defaults in a worker forked by Granian's main.
`granian-2-slow-app-import` makes importing the app take 0.3 s, so that window is wide and often hit.

Knobs (environment): SIGTERM_WINDOW_STEP_MS (default 40; 10 for a finer hunt), SIGTERM_WINDOW_ROUNDS (default 1,
each round runs every delay again).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    PID1,
    REPO,
    all_gone,
    copy_app,
    descendants,
    local_env,
    pid_namespaces_work,
    session_processes,
    start_server,
    wait_until_workers_serve,
)

pytestmark = pytest.mark.e2e

EXIT_BOUND_S = 5.0
STEP_MS = int(os.environ.get("SIGTERM_WINDOW_STEP_MS", "40"))  # CI: about a minute for all cases
ROUNDS = int(os.environ.get("SIGTERM_WINDOW_ROUNDS", "1"))
MAX_DELAYS = 70  # per round: a slow machine gets wider steps, not a longer test
LEFT_GRACE_S = 2.0  # after the server exits, for the last of its processes to go
POST_FORK_DELAY_S = 0.3
SPAWN_DELAY_S = 0.15
APP_IMPORT_DELAY_S = 0.3

SLOW_POST_FORK_CONF = """\
import runpy
import time

globals().update(runpy.run_path({default!r}))
_default_post_fork = globals().get("post_fork")


def post_fork(server, worker):
    if _default_post_fork is not None:
        _default_post_fork(server, worker)
    time.sleep({delay})
"""

SLOW_SPAWN_CONF = """\
import runpy

globals().update(runpy.run_path({default!r}))


def _slow_spawn():
    import time
    from multiprocessing import popen_spawn_posix

    launch = popen_spawn_posix.Popen._launch

    def _launch(self, process_obj):
        launch(self, process_obj)
        time.sleep({delay})

    popen_spawn_posix.Popen._launch = _launch


_slow_spawn()
del _slow_spawn  # Hypercorn copies every name here into its Config, and pickles that
"""

CASES = [
    pytest.param("gunicorn", 2, "", False, id="gunicorn-2"),
    pytest.param("gunicorn", 2, "slow-post-fork", False, id="gunicorn-2-slow-post-fork"),
    pytest.param("uvicorn", 2, "", False, id="uvicorn-2"),
    pytest.param("uvicorn", 1, "", False, id="uvicorn-1"),
    pytest.param("hypercorn", 2, "", False, id="hypercorn-2"),
    pytest.param("hypercorn", 2, "slow-spawn", False, id="hypercorn-2-slow-spawn"),
    pytest.param("granian", 2, "", False, id="granian-2"),
    pytest.param("granian", 1, "", False, id="granian-1"),
    pytest.param("granian", 2, "slow-app-import", False, id="granian-2-slow-app-import"),
    pytest.param("gunicorn", 2, "", True, id="pid1-gunicorn-2"),
    pytest.param("uvicorn", 2, "", True, id="pid1-uvicorn-2"),
    pytest.param("uvicorn", 1, "", True, id="pid1-uvicorn-1"),
    pytest.param("hypercorn", 2, "", True, id="pid1-hypercorn-2"),
    pytest.param("granian", 2, "", True, id="pid1-granian-2"),
    pytest.param("granian", 1, "", True, id="pid1-granian-1"),
]
# A config file that extends the default one: its variable, template, default file and delay.
WIDENING = {
    "slow-post-fork": ("GUNICORN_CONF", SLOW_POST_FORK_CONF, "gunicorn_conf.py", POST_FORK_DELAY_S),
    "slow-spawn": ("HYPERCORN_CONF", SLOW_SPAWN_CONF, "hypercorn_conf.py", SPAWN_DELAY_S),
}
# Lines put at the top of the app's module: it then takes that long to import, in every worker.
SLOW_APP_IMPORT = {"slow-app-import": f"import time\n\ntime.sleep({APP_IMPORT_DELAY_S})\n"}


def server_env(server_name: str, workers: int, extra: dict[str, str]) -> dict[str, str]:
    return local_env(
        SERVER=server_name,
        WEB_CONCURRENCY=str(workers),
        GRACEFUL_TIMEOUT="120",
        ACCESS_LOG="",
        **extra,
    )


def launch(
    servers: list, run_dir: Path, server_name: str, workers: int, extra: dict[str, str], pid1: bool, widened: str
):
    """Start `python start.py`; the server, the PID to signal, and the moment start.py exec'd the server."""
    app_dir = copy_app(run_dir)
    if widened in SLOW_APP_IMPORT:
        main = app_dir / "main.py"
        main.write_text(SLOW_APP_IMPORT[widened] + main.read_text())
    env = server_env(server_name, workers, extra)
    server = start_server(servers, app_dir, env, command=PID1 if pid1 else None)
    deadline = time.monotonic() + 15
    target = server.pid
    while pid1 and target == server.pid and time.monotonic() < deadline:
        target = next(iter(descendants(server.pid)), server.pid)  # unshare's child, PID 1 inside
        time.sleep(0.0005)
    # exec'd: the command line is the hand-over's (`python RUNTIME/hand_over.py ... SERVER ...`), no longer
    # start.py's (before the hand-over existed, `python -m SERVER ...`)
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if b"/hand_over.py\0" in Path(f"/proc/{target}/cmdline").read_bytes():
                break
        except OSError:
            break
        time.sleep(0.0005)
    return server, target, time.monotonic()


def measure_start_up(
    servers: list, run_dir: Path, server_name: str, workers: int, extra: dict[str, str], pid1: bool, widened: str
):
    """Seconds from the exec until every worker has answered; the server then stops cleanly."""
    server, target, execed = launch(servers, run_dir, server_name, workers, extra, pid1, widened)
    seen = wait_until_workers_serve(server.url("/pid"), workers, deadline_s=30)
    serving = time.monotonic() - execed
    assert len(seen) == workers, server.output()[-3000:]
    tree = descendants(server.pid)
    os.kill(target, signal.SIGTERM)
    try:
        status: int | None = server.process.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        status = None
    if status is None:
        output = server.output()[-3000:]
        server.kill_all()
        pytest.fail(f"a SIGTERM sent once every worker served was not acted on within {EXIT_BOUND_S:g}s:\n{output}")
    assert status in (0, -signal.SIGTERM), server.output()[-3000:]
    left = all_gone([server.pid, *tree])
    assert left == [], f"processes left behind by a SIGTERM once every worker served: {left}\n{server.output()[-3000:]}"
    server.kill_all()
    return serving


def sigterm_after(
    servers: list,
    run_dir: Path,
    server_name: str,
    workers: int,
    extra: dict[str, str],
    pid1: bool,
    widened: str,
    delay: float,
) -> dict:
    """Start the server, SIGTERM it `delay` s after the exec; what happened."""
    server, target, execed = launch(servers, run_dir, server_name, workers, extra, pid1, widened)
    time.sleep(max(0.0, execed + delay - time.monotonic()))
    tree = descendants(server.pid)
    signalled = time.monotonic()
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass  # already gone: what follows tells how
    try:
        status = server.process.wait(EXIT_BOUND_S)
        exit_s: float | None = time.monotonic() - signalled
    except subprocess.TimeoutExpired:
        status, exit_s = None, None
    deadline = time.monotonic() + LEFT_GRACE_S
    left = sorted(set(all_gone(tree, deadline_s=0)) | set(session_processes(server.pid)))
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = sorted(set(all_gone(left, deadline_s=0)) | set(session_processes(server.pid)))
    output = server.output()
    server.kill_all()  # the whole process group, whatever is left of it
    return {
        "delay_ms": round(delay * 1000),
        "exit_s": None if exit_s is None else round(exit_s, 3),
        "status": status,
        "left": left,
        "traceback": "Traceback" in output,
        "output": output[-1500:],
    }


def spread(window_s: float) -> list[float]:
    """Delays from 0 to a quarter past the measured start-up, STEP_MS apart (wider on a slow machine)."""
    end_ms = int(window_s * 1250) + 100
    step = max(STEP_MS, -(-end_ms // MAX_DELAYS))
    return [ms / 1000 for ms in range(0, end_ms + 1, step)]


def line(result: dict) -> str:
    exit_text = f"{result['exit_s']:.2f}s" if result["exit_s"] is not None else f">{EXIT_BOUND_S:g}s (killed)"
    extras = []
    if result["left"]:
        extras.append(f"left {result['left']}")
    if result["traceback"]:
        extras.append("traceback")
    return f"{result['delay_ms']:>5} ms: exit {exit_text} status {result['status']} {' '.join(extras)}".rstrip()


@pytest.mark.parametrize(("server_name", "workers", "widened", "pid1"), CASES)
def test_sigterm_at_any_moment_of_the_start_up_stops_the_server(
    servers, tmp_path, server_name, workers, widened, pid1, record_property
):
    if pid1 and not pid_namespaces_work():
        pytest.skip("cannot create a PID namespace here (unshare --pid needs root or user namespaces)")
    extra: dict[str, str] = {}
    if widened in WIDENING:
        variable, template, default, delay = WIDENING[widened]
        conf = tmp_path / f"{widened.replace('-', '_')}_conf.py"
        conf.write_text(template.format(default=str(REPO / default), delay=delay))
        extra[variable] = str(conf)
    window = measure_start_up(servers, tmp_path / "calibration", server_name, workers, extra, pid1, widened)
    delays = spread(window)
    results = []
    for round_number in range(ROUNDS):
        for number, delay in enumerate(delays):
            run_dir = tmp_path / f"round{round_number}-{number:03d}"
            results.append(sigterm_after(servers, run_dir, server_name, workers, extra, pid1, widened, delay))

    lost = [r for r in results if r["exit_s"] is None]
    left_behind = [r for r in results if r["left"]]
    bad_status = [r for r in results if r["status"] is not None and r["status"] not in (0, -signal.SIGTERM)]
    exits = sorted(r["exit_s"] for r in results if r["exit_s"] is not None)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    summary = {
        "start_up_s": round(window, 3),
        "delays": f"{len(delays)} from 0 to {delays[-1] * 1000:.0f} ms after the exec, x{ROUNDS}",
        "runs": len(results),
        "not_stopped_within_bound": len(lost),
        "left_behind": len(left_behind),
        "exit_s_min": exits[0] if exits else None,
        "exit_s_median": exits[len(exits) // 2] if exits else None,
        "exit_s_max": exits[-1] if exits else None,
        "statuses": statuses,
        "runs_with_traceback": sum(r["traceback"] for r in results),
    }
    title = f"{'PID 1: ' if pid1 else ''}{server_name} x{workers}{' ' + widened if widened else ''}"
    table = "\n".join(line(r) for r in results)
    print(f"\n{title}: {summary}\n{table}")
    for key, value in summary.items():
        record_property(key, value)

    failures = lost + [r for r in left_behind if r not in lost] + [r for r in bad_status if r not in lost]
    detail = "\n\n".join(f"{line(r)}\n{r['output']}" for r in failures[:2])
    assert not lost, f"SIGTERM not acted on within {EXIT_BOUND_S:g}s at {len(lost)} delays:\n{table}\n\n{detail}"
    assert not left_behind, f"processes left behind:\n{table}\n\n{detail}"
    assert not bad_status, f"exit statuses other than 0 or SIGTERM:\n{table}\n\n{detail}"
