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


def test_bench_runs_every_workload_and_reports_each_figure(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--paths", "12", "--size-mib", "4",
         "--runs", "2", "--only", "narinfo,nar,latency-upload,push-memory",
         "--push-size-mib", "16", "--no-buildgrid", "--duration", "1",
         "--results-dir", str(tmp_path / "results"), "--json", str(out)],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["failed"]
    rows = {row["key"]: row for row in result["rows"]}
    assert set(rows) == {"narinfo_1", "narinfo_16", "nar_1", "nar_16"}
    for row in rows.values():
        assert len(row["a_runs"]) == len(row["b_runs"]) == 2
        # A B, then B A: each side went first once.
        assert sorted(run["went_first"] for run in row["a_runs"]) == [False, True]
        assert row["ratio_median"] > 0
    # Both servers moved the same bytes: the same NARs, each fetched in full.
    for key in ("nar_1", "nar_16"):
        fw, ng = (sum(run["bytes"] for run in rows[key][side]) for side in ("a_runs", "b_runs"))
        assert abs(fw - ng) <= 0.02 * ng, (key, fw, ng)
    for key in ("narinfo_1", "narinfo_16"):
        for side in ("a_runs", "b_runs"):
            assert all(run["requests"] > 0 and run["status"] == 0 for run in rows[key][side])
    (lat,) = result["latency"]
    assert len(lat["idle"]) == len(lat["loaded"]) == 2
    assert lat["loaded_p99_ms"] > 0 and lat["idle_p99_ms"] > 0
    assert result["push_memory"]["runs"]
    # The report holds each figure it measured.
    for row in rows.values():
        assert row["label"] in result["markdown"]
        assert f"{row['ratio_median']:.2f}\N{MULTIPLICATION SIGN}" in result["markdown"]
    assert lat["label"] in result["markdown"]
    assert f"p99 {lat['loaded_p99_ms']:.2f} ms" in result["markdown"]


def test_bench_help_names_the_documented_options() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    for option in ("--small", "--runs", "--json", "--only", "--profile"):
        assert option in proc.stdout
