"""The one settings object: defaults < TOML file < FLYWHEEL_* environment < command-line flags.

It is loaded once by the command line and handed down; server workers receive it
serialized in their environment rather than re-reading the sources, so every worker
runs with exactly what the parent validated.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

WORKER_SETTINGS_ENV = "_FLYWHEEL_WORKER_SETTINGS"
ENV_PREFIX = "FLYWHEEL_"

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1000, "KIB": 1 << 10, "M": 1 << 20, "MB": 10**6,
               "MIB": 1 << 20, "G": 1 << 30, "GB": 10**9, "GIB": 1 << 30, "T": 1 << 40,
               "TB": 10**12, "TIB": 1 << 40}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


def parse_size(value: str | int) -> int:
    """Parse a byte size such as ``50GiB``, ``512MB`` or ``1048576``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must not be negative")
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 1048576, 512MiB, 50GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::1]:8080``) and check the port."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"not HOST:PORT: {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {value!r}")
    return host, port


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("flywheel-data")
    listen: str = "127.0.0.1:8080"
    database_url: str | None = None
    public_url: str | None = None
    workers: int = max(1, min(os.cpu_count() or 1, 8))
    max_nar_size: int = 64 << 30
    max_compression_ratio: int = 1000
    bazel_max_action_refs: int = 50_000
    blocking_threads: int = 8
    grpc_listen: str = "127.0.0.1:9092"
    bazel_max_size: int | None = None
    log_level: str = "info"

    @field_validator("listen", "grpc_listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, v: int) -> int:
        if not 1 <= v <= 64:
            raise ValueError("workers must be between 1 and 64")
        return v

    @field_validator("max_nar_size", "bazel_max_size", mode="before")
    @classmethod
    def _check_size(cls, v: Any) -> int | None:
        return None if v is None else parse_size(v)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, v: str) -> str:
        if v.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be one of debug, info, warning, error")
        return v.lower()

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", v):
            raise ValueError(f"public_url must be an http(s) URL, got {v!r}")
        return v.rstrip("/") if v else v

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def grpc_host_port(self) -> tuple[str, int]:
        return parse_listen(self.grpc_listen)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.absolute() / 'flywheel.db'}"

    @property
    def base_url(self) -> str:
        """Where clients reach this server, for substituter URLs shown to users."""
        if self.public_url:
            return self.public_url
        host, port = self.host_port
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _env_values(environ: dict[str, str]) -> dict[str, str]:
    fields = set(Settings.model_fields)
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in fields:
            out[name] = value
        elif name not in {"config"}:
            raise ConfigError(f"unknown environment variable {key} (known: "
                              + ", ".join(ENV_PREFIX + f.upper() for f in sorted(fields)) + ")")
    return out


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Merge the sources and validate, turning pydantic's errors into one readable message."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = config_file or (Path(environ["FLYWHEEL_CONFIG"]) if environ.get("FLYWHEEL_CONFIG")
                                  else None)
    if config_file is not None:
        try:
            values.update(tomllib.loads(config_file.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {config_file} is not valid TOML: {e}") from None
        values = {k.replace("-", "_"): v for k, v in values.items()}
    values.update(_env_values(environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting"
            problems.append(f"{where}: {msg}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def settings_for_worker(settings: Settings) -> dict[str, str]:
    return {WORKER_SETTINGS_ENV: settings.model_dump_json()}


def settings_from_worker_env() -> Settings:
    return Settings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
