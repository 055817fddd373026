"""The README is a contract: what it shows must exist and behave."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import httpx
from typer.testing import CliRunner

from flywheel import __version__
from flywheel.app.settings import CLIENT_VARIABLES, env_names, load_settings
from flywheel.cli.main import app
from tests.support.server import FLYWHEEL, FlywheelServer, run_cli

README = (Path(__file__).parents[2] / "README.md").read_text()


@functools.cache
def _help(*command: str) -> str:
    # The command's own Typer app, in this process: the same help the executable prints
    # (the executable itself is run by the tests below), without a start-up per command.
    result = CliRunner().invoke(app, [*command, "--help"],
                                env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_and_flag_in_the_readme_exists() -> None:
    rows = re.findall(r"^\| `(flywheel [^`]+)`(?: / `([^`]+)`)?", README, re.M)
    assert len(rows) >= 12
    for row, alternative in rows:
        words = row.split()
        command = [w for w in words[1:3] if re.fullmatch(r"[a-z-]+", w)]
        if len(command) == 2 and command[1] not in _help(command[0]):
            command = command[:1]
        text = _help(*command)
        for flag in re.findall(r"--[a-z-]+", row + " " + (alternative or "")):
            for part in flag.split("/"):
                assert part in text, f"{' '.join(command)} lacks {part}"
    for flag in ("--data-dir", "--config"):
        assert flag in _help("cache", "info")


def test_the_settings_table_is_the_settings_object(tmp_path: Path) -> None:
    rows = re.findall(r"^\| `(?:\[(\w+)\] )?([a-z-]+)` \| `(FLYWHEEL_[A-Z_]+)`", README, re.M)
    assert len(rows) >= 10
    names = env_names()
    assert {env for *_, env in rows} == set(names), "a setting is missing from the README"
    for section, key, env in rows:
        assert names[env] == ((section, key.replace("-", "_")) if section
                              else (key.replace("-", "_"),)), env
    # Every FLYWHEEL_ variable the README names anywhere is a setting, the config file's
    # variable, or one of the runner side's.
    mentioned = set(re.findall(r"FLYWHEEL_[A-Z_]+[A-Z]", README))
    assert mentioned <= set(names) | CLIENT_VARIABLES | {"FLYWHEEL_CONFIG"}, \
        mentioned - set(names) - CLIENT_VARIABLES
    # The README's example file loads, and says what it seems to.
    example = re.search(r"```toml\n(.*?)```", README, re.S)
    assert example
    cfg = tmp_path / "flywheel.toml"
    cfg.write_text(example.group(1))
    s = load_settings(cfg, environ={})
    assert (s.listen, s.cache.max_nar_size, s.bazel.max_size) == \
        ("0.0.0.0:8080", 16 << 30, 200 << 30)


def test_the_two_commands_are_the_dev_script() -> None:
    assert "./dev serve" in README
    assert "./dev test" in README
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert "./dev test" in ci


def test_serve_flags_from_the_readme(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "meta.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    srv = FlywheelServer(tmp_path / "data", workers=1,
                         extra_args=["--public-url", "https://cache.example.org/",
                                     "--database-url", url, "--log-level", "warning"])
    srv.start()
    try:
        assert db.exists()
        assert not (srv.data_dir / "flywheel.db").exists()
        assert "serving on" not in srv.log()  # info lines are below warning
        info = run_cli(srv.data_dir, "cache", "info", "main", "--json",
                       env={"FLYWHEEL_DATABASE_URL": url,
                            "FLYWHEEL_PUBLIC_URL": "https://cache.example.org"}).stdout
        assert '"substituter_endpoint": "https://cache.example.org/main"' in info
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(srv.url + path).status_code == 200
    finally:
        srv.stop()


def test_version() -> None:
    out = subprocess.run([FLYWHEEL, "version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == __version__
