"""The benchmark suite runs end to end (tiny sizes): servers, clients, ratios, JSON, and the
push-memory bound. Figures come from full runs, never from tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("wrk") is None,
    reason="nginx and wrk are installed by ./dev test and ./dev bench")
TINY = ["--paths", "12", "--size-mib", "4", "--no-buildgrid", "--duration", "1"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's runs, so the closure they all use is built once."""
    return tmp_path_factory.mktemp("bench-results")


def bench_run(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *TINY, "--results-dir", str(results),
         *args], capture_output=True, text=True, timeout=900, cwd=REPO)


def test_bench_runs_every_workload_and_reports_each_figure(tmp_path: Path,
                                                           results: Path) -> None:
    out = tmp_path / "out.json"
    proc = bench_run(results, "--runs", "2", "--only", "narinfo,nar,latency-upload,push-memory",
                     "--push-size-mib", "16", "--json", str(out))
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


def test_bench_runs_flywheel_on_postgres_and_s3(results: Path) -> None:
    proc = bench_run(results, "--backend", "postgres-s3", "--chunked", "--runs", "1",
                     "--only", "narinfo")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GloriousFlywheel (postgres-s3-chunked) / nginx" in proc.stdout
    # Its own results file: the embedded backend's latest.json stays as it was.
    result = json.loads((results / "latest-postgres-s3-chunked.json").read_text())
    assert not result["failed"]
    assert result["info"]["backend"]["name"] == "postgres-s3-chunked"
    assert result["info"]["backend"]["nar_chunks"].startswith("NARs from 1MiB")
    assert {row["key"] for row in result["rows"]} == {"narinfo_1", "narinfo_16"}
    for row in result["rows"]:
        assert all(run["requests"] > 0 and run["status"] == 0 for run in row["a_runs"])
    # Teardown stopped PostgreSQL and SeaweedFS (their data lived under the work dir).
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                 and str(results / "work").encode() in _cmdline(pid)]
    assert not leftovers


@pytest.mark.skipif(shutil.which("bazel") is None, reason="bazel is installed by ./dev test")
def test_bench_mixed_load_reports_latency_errors_and_every_job(tmp_path: Path,
                                                               results: Path) -> None:
    out = tmp_path / "out.json"
    proc = bench_run(results, "--runs", "1", "--only", "mixed", "--bazel-actions", "10",
                     "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["failed"]
    (mixed,) = result["latency"]
    assert mixed["key"] == "narinfo_mixed"
    for side in ("loaded", "nginx"):
        (run,) = mixed[side]
        assert run["requests"] > 0 and run["p99_us"] >= run["p50_us"] > 0
        # Uploads and the build kept going for the whole window, and each one succeeded.
        assert len(run["uploads"]) >= 2 and run["bazel"]
        assert all(job["ok"] for job in run["uploads"] + run["bazel"]), run
        assert all(job["remote_cache_hits"] == 10 for job in run["bazel"])
    assert mixed["jobs_ok"] is True and mixed["errors"] == mixed["loaded"][0]["errors"]
    assert mixed["label"] in result["markdown"]
    assert f"p99 {mixed['loaded_p99_ms']:.2f} ms" in result["markdown"]
    assert "p99 ≤ 25 ms, no errors" in result["markdown"]


def test_bench_help_names_the_documented_options() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    for option in ("--small", "--runs", "--json", "--only", "--profile", "--backend",
                   "--s3-redirect", "--chunked"):
        assert option in proc.stdout


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_grpc_models_reports_both_server_models(tmp_path: Path) -> None:
    out = tmp_path / "grpc.json"
    proc = subprocess.run([sys.executable, "-m", "bench.grpc_models", "--calls", "320",
                           "--rounds", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) == {"aio, 1", "aio, 16", "sync, 1", "sync, 16"}
    for row in figures.values():
        assert row["calls_per_second"] > 0 and row["server_cpu_us_per_call"] > 0
