"""The README is a contract: what it shows must exist and behave."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from flywheel import __version__
from flywheel.app.settings import load_settings
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env, run_cli

README = (Path(__file__).parents[2] / "README.md").read_text()


def _help(*command: str) -> str:
    proc = subprocess.run([FLYWHEEL, *command, "--help"], capture_output=True, text=True,
                          env={**clean_env(), "COLUMNS": "200", "TERMINAL_WIDTH": "200"},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


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


def test_every_environment_variable_in_the_readme_is_a_setting(tmp_path: Path) -> None:
    names = set(re.findall(r"FLYWHEEL_[A-Z_]+", README))
    assert "FLYWHEEL_DATA_DIR" in names
    values = {"FLYWHEEL_DATA_DIR": str(tmp_path), "FLYWHEEL_LISTEN": "127.0.0.1:1",
              "FLYWHEEL_WORKERS": "2", "FLYWHEEL_DATABASE_URL": "sqlite:///x.db",
              "FLYWHEEL_PUBLIC_URL": "https://cache.example", "FLYWHEEL_MAX_NAR_SIZE": "1GiB",
              "FLYWHEEL_LOG_LEVEL": "debug", "FLYWHEEL_GRPC_LISTEN": "127.0.0.1:2",
              "FLYWHEEL_BAZEL_MAX_SIZE": "50GiB", "FLYWHEEL_CONFIG": ""}
    assert names <= set(values), names - set(values)
    s = load_settings(environ={k: v for k, v in values.items() if k != "FLYWHEEL_CONFIG"})
    assert (s.workers, s.public_url, s.max_nar_size, s.log_level) == \
        (2, "https://cache.example", 1 << 30, "debug")
    assert (s.grpc_listen, s.bazel_max_size) == ("127.0.0.1:2", 50 << 30)


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
