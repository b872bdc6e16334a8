"""bench/report.py renders the committed results exactly as the one-file bench.py did.

bench/RESULTS.md was written by the old report() from bench/RESULTS.json: the new report() must give it
back byte for byte. Where git history is at hand, the old code (bench/bench.py at 519aa6b) also renders
both committed JSON files, in the shapes partial runs leave, and the outputs must be identical.
No server is started; this takes well under a second.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import check_report  # noqa: E402
import report  # noqa: E402


def load(name: str) -> dict:
    return json.loads((BENCH / name).read_text())


def test_results_md_is_rendered_again_byte_for_byte():
    committed = (BENCH / "RESULTS.md").read_text()
    elapsed = float(re.search(r"in ([\d.]+) min", committed).group(1)) * 60
    text = check_report.render(report, load("RESULTS.json"), check_report.run_args(False), elapsed)
    assert text == committed


def old_code():
    try:
        return check_report.load_old()
    except (subprocess.CalledProcessError, OSError):
        pytest.skip(f"bench/bench.py at {check_report.OLD_REV} is not in this checkout's history")


@pytest.mark.parametrize("name", ["RESULTS.json", "RESULTS-granian.json"])
def test_old_and_new_report_agree(name):
    old = old_code()
    for label, data in check_report.variants(load(name)).items():
        for args in (check_report.run_args(False), check_report.run_args(False, rounds=2, threads=2)):
            assert check_report.compare(old, data, args, 634.0) == [], (name, label)
