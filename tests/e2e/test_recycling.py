"""WORKER_MAX_MEMORY and WORKER_LIFETIME under every server, through start.py, under a steady load.

The four servers run at once, each in tests/e2e/recycling_scenario.py (a script, so that each can have a
network namespace of its own: there net.ipv4.tcp_migrate_req is on, as the README advises for Granian,
whose workers each have their own SO_REUSEPORT listener). Each run takes WORKER_LIFETIME's least, 60 s,
plus its jitter: one worker is made to hold 150 MiB, above WORKER_MAX_MEMORY=120M, and is replaced after
3 checks 10 s apart; the other is replaced when its lifetime ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SERVERS, clean_env, copy_app, granian_usable

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).with_name("recycling_scenario.py")


def own_network_works() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_workers_are_recycled_by_memory_and_age_without_a_failed_request(tmp_path, record_property):
    own = own_network_works()
    runs = {}
    for server_name in SERVERS:
        if server_name == "granian" and not (own and granian_usable()):
            continue  # without tcp_migrate_req, a respawn resets connections queued on the old listener
        run_dir = tmp_path / server_name
        app_dir = copy_app(run_dir)
        where = (
            ["unshare", "-n", sys.executable, str(SCENARIO), "--own-network"]
            if own
            else [sys.executable, str(SCENARIO)]
        )
        runs[server_name] = subprocess.Popen(
            [*where, server_name, str(app_dir), str(run_dir)],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    results = {}
    for server_name, process in runs.items():
        stdout, stderr = process.communicate(timeout=200)
        assert process.returncode == 0, f"{server_name}:\n{stderr[-3000:]}"
        results[server_name] = json.loads(stdout.strip().splitlines()[-1])
    for server_name, result in results.items():
        print(f"\nrecycling {json.dumps(result)}")
        record_property(server_name, json.dumps(result))
    for server_name, result in results.items():
        log = (tmp_path / server_name / "server.log").read_text()[-3000:]
        assert result["failures"] == [], (server_name, result, log)
        assert result["answered"] > 1000, (server_name, result)
        assert len(result["replacement_lines"]) >= 2, (server_name, result, log)
        assert result["fewest_live_workers"] >= 1 and result["live_workers_at_end"] == 2, (server_name, result)
        assert result["bloated_worker_gone"] and result["first_workers_gone"], (server_name, result, log)
        assert result["exit_status"] == 0 and result["left_behind"] == [], (server_name, result, log)
