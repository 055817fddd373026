from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.app.settings import (
    CLIENT_VARIABLES,
    ConfigError,
    env_names,
    load_settings,
    parse_listen,
    parse_size,
    settings_for_worker,
    settings_from_worker_env,
)


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
    ("workers = 0", {}, "workers: Input should be greater than or equal to 1"),
    ('[cache]\nmax-nar-size = "lots"', {}, "cache.max_nar_size: not a size"),
    ("[cache]\nmax-compression-ratio = 1", {}, "cache.max_compression_ratio"),
    ('max-nar-size = "1GiB"', {}, "max_nar_size: unknown setting"),
    ("[bazel]\ncolour = 1", {}, "bazel.colour: unknown setting"),
    ("", {"FLYWHEEL_BAZEL_MAX_SIZE": "huge"}, "bazel.max_size: not a size"),
    ("", {"FLYWHEEL_CACHE_NOPE": "1"}, "unknown environment variable FLYWHEEL_CACHE_NOPE"),
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


def test_sections_merge_key_by_key_across_sources(tmp_path: Path) -> None:
    cfg = tmp_path / "flywheel.toml"
    cfg.write_text('[cache]\nmax-nar-size = "1GiB"\nmax_compression_ratio = 50\n'
                   '[bazel]\nmax-size = "10GiB"\n')
    s = load_settings(cfg, {"bazel.max_size": "20GiB"},
                      environ={"FLYWHEEL_CACHE_MAX_COMPRESSION_RATIO": "70"})
    assert (s.cache.max_nar_size, s.cache.max_compression_ratio) == (1 << 30, 70)
    assert s.bazel.max_size == 20 << 30
    assert s.bazel.max_action_refs == 50_000  # the default, untouched by the others


def test_client_variables_are_not_settings_but_typos_are_errors() -> None:
    client = {"FLYWHEEL_URL": "http://x", "FLYWHEEL_CACHE": "main",
              "FLYWHEEL_BAZEL_CACHE": "main", "FLYWHEEL_TOKEN": "t"}
    assert load_settings(environ=client).listen == "127.0.0.1:8080"
    with pytest.raises(ConfigError, match="FLYWHEEL_BAZEL_MAXSIZE"):
        load_settings(environ={"FLYWHEEL_BAZEL_MAXSIZE": "1GiB"})


def test_every_settings_variable_is_named_by_its_section() -> None:
    names = env_names()
    assert names["FLYWHEEL_DATA_DIR"] == ("data_dir",)
    assert names["FLYWHEEL_CACHE_MAX_NAR_SIZE"] == ("cache", "max_nar_size")
    assert names["FLYWHEEL_BAZEL_MAX_SIZE"] == ("bazel", "max_size")
    assert not CLIENT_VARIABLES & set(names)


@pytest.mark.parametrize(("text", "size"), [
    ("1K", 1 << 10), ("1KiB", 1 << 10), ("1KB", 1000), ("1kb", 1000), ("2M", 2 << 20),
    ("1.5GiB", 3 << 29), ("3TB", 3 * 10**12), (4096, 4096),
])
def test_sizes_have_binary_and_decimal_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_workers_receive_exactly_what_the_parent_validated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(None, {"bazel.max_size": "1GiB", "workers": 3}, environ={})
    monkeypatch.setenv("FLYWHEEL_WORKERS", "7")  # ignored by a worker: it reads the parent's
    for key, value in settings_for_worker(s).items():
        monkeypatch.setenv(key, value)
    assert settings_from_worker_env() == s
