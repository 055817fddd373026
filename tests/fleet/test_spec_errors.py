"""Wrong specs: each names the file, the line and the field, and `fleet validate` exits 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flywheel.fleet.loader import SpecError, load
from tests.support.server import FLYWHEEL, clean_env

BASE = """\
name: acme
github:
  app:
    id: 1
cacheServer:
  url: http://flywheel:8080
pools:
  - name: nix
    kind: nix
    scope: https://github.com/acme
    maxRunners: 5
  - name: big
    kind: nix
    scope: https://github.com/acme
    minRunners: 4
    maxRunners: 2
"""

APPEND = ""   # as "replace this": add to the end of the spec

# (replace this, with this) in BASE (with pools[1].minRunners only where a case wants it)
# -> the one error expected, or None for a valid spec
CASES = [
    ("    minRunners: 4\n    maxRunners: 2\n", "    minRunners: 4\n    maxRunners: 2\n",
     "fleet.yaml:16: pools[1].maxRunners: must be ≥ minRunners (4)"),
    ("    maxRunners: 2\n", "    maxRunners: 2\n    maxRunnerz: 3\n",
     "fleet.yaml:16: pools[1].maxRunnerz: unknown field"),
    ("  - name: big\n", "  - name: Big_Pool\n",
     "fleet.yaml:12: pools[1].name: must be lower-case letters, digits and '-', starting and "
     "ending with a letter or digit, at most 63 characters"),
    ("    scope: https://github.com/acme\n    maxRunners: 5\n",
     "    scope: https://gitlab.com/acme\n    maxRunners: 5\n",
     "fleet.yaml:10: pools[0].scope: must be https://github.com/ORG or "
     "https://github.com/OWNER/REPO"),
    ("    kind: nix\n    scope: https://github.com/acme\n    maxRunners: 5\n",
     "    kind: nix\n    scope: https://github.com/acme\n",
     "fleet.yaml:8: pools[0].maxRunners: required"),
    ("    id: 1\n", "    id: one\n",
     "fleet.yaml:4: github.app.id: Input should be a valid integer, unable to parse string as "
     "an integer"),
    ("  app:\n    id: 1\n", "  app:\n    id: 1\n  pat:\n    secret: p\n",
     "fleet.yaml:2: github: give exactly one of app (a GitHub App) or pat"),
    ("  - name: big\n", "  - name: nix\n",
     "fleet.yaml:12: pools[1].name: duplicate pool name 'nix'"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    containerMode:\n      type: dind\n",
     "fleet.yaml:13: pools[0].containerMode.type: a nix pool needs no container mode"),
    ("    kind: nix\n    scope: https://github.com/acme\n    maxRunners: 5\n",
     "    kind: docker\n    scope: https://github.com/acme\n    maxRunners: 5\n"
     "    containerMode:\n      type: kubernetes\n",
     "fleet.yaml:12: pools[0].containerMode.workVolumeClaim: required for kubernetes mode "
     "(the job containers' work volume)"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    cache:\n      nix: Main\n",
     "fleet.yaml:13: pools[0].cache.nix: 'Main' is not a cache name ([a-z0-9][a-z0-9._-]{0,49})"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    cache: {}\n",
     "fleet.yaml:12: pools[0].cache: name a nix cache, a bazel cache, or both"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    schedules:\n      - name: day\n"
     "        start: '0 8 * * 1-5'\n        end: '0 18 * * 1-5'\n        minRunners: 9\n",
     "fleet.yaml:16: pools[0].schedules[0].minRunners: must be ≤ the pool's maxRunners (5)"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    schedules:\n      - name: day\n"
     "        start: '0 25 * * *'\n        end: '0 18 * * 1-5'\n        minRunners: 1\n",
     "fleet.yaml:14: pools[0].schedules[0].start: '0 25 * * *' is not a cron expression: "
     "Bad hour"),
    ("    maxRunners: 5\n", "    maxRunners: 5\n    schedules:\n      - name: day\n"
     "        start: '0 8 * * *'\n        end: '0 18 * * *'\n        timeZone: Mars/Olympus\n"
     "        minRunners: 1\n",
     "fleet.yaml:16: pools[0].schedules[0].timeZone: unknown time zone 'Mars/Olympus' (an IANA "
     "name such as Europe/Berlin)"),
    ("cacheServer:\n  url: http://flywheel:8080\n", "",
     None),  # no cache named, no cache server needed: valid
    (APPEND, "enrollments:\n  - org: other\n    pool: nixx\n",
     "fleet.yaml:18: enrollments[0].pool: no pool named 'nixx' (pools: nix, big)"),
    (APPEND, "enrollments:\n  - org: other\n    repo: other/x\n    pool: nix\n",
     "fleet.yaml:17: enrollments[0]: give exactly one of org or repo"),
    (APPEND, "enrollments:\n  - org: acme\n    pool: nix\n",
     "fleet.yaml:17: enrollments[0]: https://github.com/acme already has a scale set 'nix' in "
     "runner group 'default' (from pools[0])"),
    (APPEND, "enrollments:\n  - org: b\n    pool: nix-a\n  - org: a-b\n    pool: nix\n",
     "fleet.yaml:19: enrollments[1].name: scale set 'nix-a-b' in namespace 'arc-runners' is "
     "already made by enrollments[0]; give this one another name"),
    ("name: acme\n", "name: acme\n  bad: indent\n",
     "fleet.yaml:2: YAML syntax error: mapping values are not allowed here"),
    ("name: acme\n", "name: acme\nname: again\n",
     "fleet.yaml:2: YAML syntax error: found duplicate key \"name\" with value \"again\" "
     "(original value: \"acme\")"),
]


def _spec(tmp_path: Path, old: str, new: str) -> Path:
    text = BASE.replace("    minRunners: 4\n    maxRunners: 2\n", "    maxRunners: 2\n")
    if old == "    minRunners: 4\n    maxRunners: 2\n":
        text = BASE
    if "nix-a" in new:
        text = text.replace("  - name: big\n", "  - name: nix-a\n")
    assert old in text, old
    path = tmp_path / "fleet.yaml"
    path.write_text(text + new if old == APPEND else text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_wrong_spec_names_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              old: str, new: str, expected: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    path = _spec(tmp_path, old, new)
    if expected is None:
        load(Path("fleet.yaml"))
        return
    with pytest.raises(SpecError) as caught:
        load(Path("fleet.yaml"))
    assert caught.value.lines == [expected], path.read_text()


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    bad = _spec(tmp_path, CASES[0][0], CASES[0][1])
    proc = subprocess.run([FLYWHEEL, "fleet", "validate", "fleet.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == CASES[0][2]
    bad.write_text(BASE.replace("    minRunners: 4\n", ""))
    proc = subprocess.run([FLYWHEEL, "fleet", "validate", str(bad)], capture_output=True,
                          text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "valid (2 pools, 0 enrollments)" in proc.stdout


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(BASE.replace("    maxRunners: 5\n", "    maxRunners: -1\n")
                    .replace("    id: 1\n", "    id: 0\n"))
    with pytest.raises(SpecError) as caught:
        load(path)
    assert caught.value.lines == [
        f"{path}:4: github.app.id: Input should be greater than 0",
        f"{path}:11: pools[0].maxRunners: Input should be greater than or equal to 0",
    ]
