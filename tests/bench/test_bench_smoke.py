"""The benchmark suite runs end to end (tiny sizes): servers, clients, ratios, JSON, and the
push-memory bound. Figures come from full runs, never from tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("wrk") is None,
    reason="nginx and wrk are installed by ./dev test and ./dev bench")


def test_bench_runs_and_reports_ratios(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--paths", "12", "--size-mib", "4",
         "--runs", "1", "--only", "narinfo,nar,push-memory", "--push-size-mib", "16",
         "--no-buildgrid", "--duration", "1", "--results-dir", str(tmp_path / "results"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {row["key"]: row for row in result["rows"]}
    assert {"narinfo_1", "narinfo_16", "nar_1", "nar_16"} <= set(rows)
    for row in rows.values():
        assert row["ratio_median"] > 0
        assert row["a_median_s"] > 0 and row["b_median_s"] > 0
    assert not result["failed"]
    assert "ratio (median)" in proc.stdout


def test_bench_help_names_the_documented_options() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    for option in ("--small", "--runs", "--json", "--only", "--profile"):
        assert option in proc.stdout
