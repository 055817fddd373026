from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.app.settings import ConfigError, load_settings, parse_listen, parse_size


def test_defaults_need_no_configuration() -> None:
    s = load_settings(environ={})
    assert s.data_dir == Path("flywheel-data")
    assert s.listen == "127.0.0.1:8080"
    assert s.base_url == "http://127.0.0.1:8080"
    assert s.resolved_database_url.endswith("flywheel-data/flywheel.db")


def test_precedence_toml_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "flywheel.toml"
    cfg.write_text('data-dir = "/srv/from-toml"\nlisten = "0.0.0.0:9000"\nworkers = 3\n')
    s = load_settings(cfg, environ={"FLYWHEEL_LISTEN": "127.0.0.1:9001"})
    assert (s.data_dir, s.listen, s.workers) == (Path("/srv/from-toml"), "127.0.0.1:9001", 3)
    s = load_settings(cfg, {"listen": "127.0.0.1:9002"},
                      environ={"FLYWHEEL_LISTEN": "127.0.0.1:9001"})
    assert s.listen == "127.0.0.1:9002"
    s = load_settings(environ={"FLYWHEEL_CONFIG": str(cfg), "FLYWHEEL_DATA_DIR": "/x"})
    assert s.data_dir == Path("/x")


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('listen = "nonsense"', {}, "listen: not HOST:PORT"),
    ('listen = "127.0.0.1:70000"', {}, "port out of range"),
    ("workers = 0", {}, "workers must be between 1 and 64"),
    ('max-nar-size = "lots"', {}, "not a size"),
    ('public-url = "ftp://x"', {}, "public_url must be an http(s) URL"),
    ("colour = 1", {}, "colour: unknown setting"),
    ("", {"FLYWHEEL_LISTN": "x"}, "unknown environment variable FLYWHEEL_LISTN"),
    ("", {"FLYWHEEL_WORKERS": "many"}, "workers: Input should be a valid integer"),
    ("listen = [", {}, "is not valid TOML"),
])
def test_bad_values_get_clear_messages(tmp_path: Path, toml: str, env: dict[str, str],
                                       message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ=env)
    assert message in str(e.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_sizes_and_listen() -> None:
    assert parse_size("50GiB") == 50 << 30
    assert parse_size("512MB") == 512_000_000
    assert parse_size("1048576") == 1 << 20
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        parse_size("-1")
