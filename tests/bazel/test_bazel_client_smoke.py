"""The real bazel client builds tests/bazel/workspace offline, with no remote cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.bazelenv import HELLO_OUTPUT, WORKSPACE_OUTPUTS, Bazel

pytestmark = pytest.mark.skipif(
    not Bazel.available(),
    reason="the real bazel client is not installed (Debian: apt-get install bazel-bootstrap)")


def test_workspace_builds_and_runs_without_remote_cache(tmp_path: Path) -> None:
    with Bazel(tmp_path / "bazel") as bazel:
        first = bazel.build()
        assert first.summary is not None, first.stderr
        assert first.summary.remote_cache_hit == 0
        assert first.summary.executed > 0
        assert first.summary.executed == first.summary.cacheable, first.summary

        for name in WORKSPACE_OUTPUTS:
            assert bazel.output(name).is_file(), name
        assert bazel.output("blob.bin").stat().st_size == 1024 * 1024
        assert bazel.output("shout.txt").read_text() == HELLO_OUTPUT + "\n"
        assert bazel.output("parts/three.txt").read_text().strip() == str(len(HELLO_OUTPUT) + 1)
        assert "blob.bin 1048576" in bazel.output("manifest.txt").read_text()
        run = subprocess.run([str(bazel.output("hello"))], capture_output=True, text=True,
                             timeout=30, check=True)
        assert run.stdout == HELLO_OUTPUT + "\n"

        # Up to date: Bazel's own action cache answers, nothing runs.
        again = bazel.build()
        assert again.summary is not None and again.summary.executed == 0, again.stderr

        # After a clean, with no remote cache, everything runs again.
        bazel.clean()
        assert not bazel.output("blob.bin").exists()
        rebuilt = bazel.build()
        assert rebuilt.summary == first.summary, rebuilt.stderr
