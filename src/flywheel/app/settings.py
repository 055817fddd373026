"""The one settings object: defaults < TOML file < FLYWHEEL_* environment < command-line flags.

Settings of the whole server sit at the top level; each plane has its own section
(``[cache]``, ``[bazel]``, ...). In the environment a top-level setting is
``FLYWHEEL_<NAME>`` and a section's is ``FLYWHEEL_<SECTION>_<NAME>``. The settings are
loaded once by the command line and handed down: server processes receive them serialized
in their environment rather than re-reading the sources, so every process runs with
exactly what the parent validated.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

WORKER_SETTINGS_ENV = "_FLYWHEEL_WORKER_SETTINGS"
ENV_PREFIX = "FLYWHEEL_"
CONFIG_ENV = "FLYWHEEL_CONFIG"
# Variables of the flywheel client and of runner set-up (see the README's Fleet section):
# they share the prefix but are not server settings.
CLIENT_VARIABLES = frozenset({"FLYWHEEL_URL", "FLYWHEEL_CACHE", "FLYWHEEL_BAZEL_CACHE",
                              "FLYWHEEL_TOKEN"})

# IEC units are powers of 1024, SI units powers of 1000; a bare K, M, G or T is the
# binary one, as in nginx and most tools that take sizes.
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KIB": 1 << 10, "KB": 1000, "M": 1 << 20,
               "MIB": 1 << 20, "MB": 10**6, "G": 1 << 30, "GIB": 1 << 30, "GB": 10**9,
               "T": 1 << 40, "TIB": 1 << 40, "TB": 10**12}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


def parse_size(value: str | int) -> int:
    """A byte size such as ``50GiB``, ``512MB``, ``64K`` or ``1048576``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("size must not be negative")
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 1048576, 64K, 512MiB, 50GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


Size = Annotated[int, BeforeValidator(parse_size)]


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


def _listen(value: str) -> str:
    parse_listen(value)
    return value


Listen = Annotated[str, BeforeValidator(_listen)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    """``[cache]``: the Nix side of the cache plane."""

    max_nar_size: Size = 64 << 30
    # How many times its compressed size an uploaded NAR may expand (decompression bombs).
    max_compression_ratio: int = Field(default=1000, ge=2)


class BazelSettings(_Section):
    """``[bazel]``: the Bazel remote cache."""

    max_size: Size | None = None
    # Blobs one action-cache entry may name (its outputs and the files of its trees); each
    # is checked against storage on every lookup.
    max_action_refs: int = Field(default=50_000, ge=1)


class StateSettings(_Section):
    """``[state]``: the OpenTofu/Terraform state backend."""

    # Versions kept per workspace; older ones are dropped as new ones are written.
    retention: int = Field(default=100, ge=1, le=100_000)
    # Largest state body accepted; it is held in memory while it is checked and encrypted.
    max_size: Size = Field(default=64 << 20, ge=1 << 10, le=1 << 30)


def _names(value: Any) -> Any:
    """A list from TOML, or comma-separated in the environment."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _seconds(value: Any) -> Any:
    """A duration: seconds, or ``90s``, ``30m``, ``12h``, ``7d``."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
        if not m:
            raise ValueError(f"not a duration: {value!r} (use e.g. 600, 90s, 30m, 12h, 7d)")
        return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return value


Names = Annotated[list[str], BeforeValidator(_names)]
Seconds = Annotated[int, BeforeValidator(_seconds), Field(ge=1)]


class AuthSettings(_Section):
    """``[auth]``: how callers of the operator plane are identified, and their roles."""

    # Addresses or networks (CIDR) of the proxies whose identity headers are believed
    # (tailscale serve, nginx, Envoy); from anywhere else those headers are ignored.
    trusted_proxies: Names = Field(default_factory=list)
    # Identity patterns per role: tailnet:LOGIN, cert:SUBJECT, token:SUB, github:LOGIN,
    # github-team:ORG/TEAM; globs allowed (tailnet:*@example.com).
    admins: Names = Field(default_factory=list)
    operators: Names = Field(default_factory=list)
    viewers: Names = Field(default_factory=list)
    session_lifetime: Seconds = 12 * 3600
    # The WebAuthn relying party: by default the host of public-url (an IP address has none).
    passkey_rp_id: str | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network") from None
        return v

    @field_validator("admins", "operators", "viewers")
    @classmethod
    def _check_patterns(cls, v: list[str]) -> list[str]:
        from flywheel.auth.roles import check_pattern

        return [check_pattern(p) for p in v]


class UiSettings(_Section):
    """``[ui]``: the operator dashboard: where the fleet is, and how changes are made."""

    # The fleet spec, when changes are applied directly (with changes = "gitops" it is read
    # from the forge's repository).
    fleet_spec: Path | None = None
    kubeconfig: Path | None = None
    kube_context: str | None = None
    pending_threshold: Seconds = 600
    # "gitops": a change becomes a pull (merge) request; "direct": fleet-spec is edited and
    # applied to the cluster.
    changes: Literal["gitops", "direct"] = "gitops"
    # Alerts: a cache this full of its size bound; a state lock held this long.
    size_alert: float = Field(default=0.9, gt=0, le=1)
    lock_alert: Seconds = 3600


class ForgeSettings(_Section):
    """``[forge]``: the repository holding the fleet spec, and GitHub's webhook secret."""

    kind: Literal["github", "gitlab"] = "github"
    url: str | None = None              # API base; GitHub's or gitlab.com's by default
    repository: str | None = None       # OWNER/REPO (GitLab: the project path)
    spec_path: str = "fleet.yaml"
    branch: str = "main"
    token_file: Path | None = None
    app_id: int | None = Field(default=None, gt=0)
    app_key_file: Path | None = None
    installation_id: int | None = Field(default=None, gt=0)
    webhook_secret_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^\s]+", v):
            raise ValueError(f"url must be an http(s) URL, got {v!r}")
        return v.rstrip("/") if v else v


class StorageSettings(_Section):
    """``[storage]``: where content (NARs, chunks, CAS blobs) is kept."""

    # s3://BUCKET/PREFIX: an S3-compatible bucket shared by every replica. Unset: files
    # under the data dir.
    url: str | None = None
    # The bucket's server when it is not AWS (MinIO, SeaweedFS), e.g. http://minio:9000.
    endpoint: str | None = None
    region: str | None = None
    # Keys in the AWS shared-credentials format; unset: the usual AWS_* variables.
    credentials_file: Path | None = None
    # Uploads past this size stream to the bucket as multipart uploads.
    multipart_size: Size = Field(default=16 << 20, ge=5 << 20, le=5 << 30)
    # Seconds a presigned URL stays valid when NAR downloads are answered with a redirect to
    # the bucket; 0 streams them through the server.
    redirect_ttl: int = Field(default=0, ge=0, le=7 * 86400)
    # NARs at least this large are stored as content-defined chunks (deduplicated between
    # NARs, zstd-compressed); unset: never.
    chunk_nars_from: Size | None = None
    # The average chunk (FastCDC's target; chunks range from a quarter to four times it).
    # Smaller chunks share more between similar NARs; larger ones cost fewer requests to a
    # bucket when a NAR is read back (1 MiB keeps a chunked NAR as fast as one object).
    chunk_size: Size = Field(default=1 << 20, ge=1 << 10, le=4 << 20)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", v):
            raise ValueError(f"storage url must be s3://BUCKET[/PREFIX], got {v!r}")
        return v

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^\s/]+/?", v):
            raise ValueError(f"s3 endpoint must be an http(s) URL of a server, got {v!r}")
        return v.rstrip("/") if v else v


class GcSettings(_Section):
    """``[gc]``: garbage collection (``flywheel gc``, ``flywheel serve --role gc``)."""

    # Seconds between collections when running as the gc role.
    interval: int = Field(default=3600, ge=1)
    # Content younger than this (seconds) is never collected: its upload may be in flight,
    # or its narinfo yet to follow.
    grace: int = Field(default=3600, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("flywheel-data")
    listen: Listen = "127.0.0.1:8080"
    grpc_listen: Listen = "127.0.0.1:9092"
    database_url: str | None = None
    public_url: str | None = None
    workers: int = Field(default=max(1, min(os.cpu_count() or 1, 8)), ge=1, le=64)
    # Threads per process for blocking work (hashing, decompression, file and database
    # writes), so it never runs on the event loop.
    blocking_threads: int = Field(default=8, ge=1, le=256)
    log_level: str = "info"
    # Seconds a stopping server lets requests in flight finish before aborting them (under
    # Kubernetes' default 30 s grace period).
    drain_timeout: float = Field(default=25.0, ge=0, le=3600)
    # Seconds a request body may go without a byte before the request is answered 408 (with
    # Connection: close) and its upload aborted: a client that announces a body and stops
    # would otherwise hold an upload (and a blocking thread) for ever.
    body_idle_timeout: float = Field(default=60.0, gt=0, le=3600)
    # HTTPS: a certificate and its key (PEM); with client-ca as well, every client must
    # present a certificate signed by it, and its subject identifies the caller.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    cache: CacheSettings = CacheSettings()
    bazel: BazelSettings = BazelSettings()
    storage: StorageSettings = StorageSettings()
    gc: GcSettings = GcSettings()
    auth: AuthSettings = AuthSettings()
    ui: UiSettings = UiSettings()
    forge: ForgeSettings = ForgeSettings()
    state: StateSettings = StateSettings()

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

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls)

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca needs tls_cert and tls_key")
        return self

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
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def _sections() -> dict[str, type[BaseModel]]:
    return {name: field.annotation for name, field in Settings.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)}


def env_names() -> dict[str, tuple[str, ...]]:
    """Every settings variable and the setting it sets, e.g.
    ``FLYWHEEL_BAZEL_MAX_SIZE`` → ("bazel", "max_size")."""
    sections = _sections()
    names: dict[str, tuple[str, ...]] = {}
    for name in Settings.model_fields:
        if name in sections:
            for sub in sections[name].model_fields:
                names[f"{ENV_PREFIX}{name}_{sub}".upper()] = (name, sub)
        else:
            names[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return names


# What load_settings read, for the sources below (pydantic-settings calls them without
# arguments of ours).
_ENVIRON: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("environ")
_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_file",
                                                                          default=None)


class _EnvSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        environ = _ENVIRON.get(dict(os.environ))
        known = env_names()
        values: dict[str, Any] = {}
        for key, value in environ.items():
            if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES or key == CONFIG_ENV:
                continue
            where = known.get(key)
            if where is None:
                raise ConfigError(f"unknown environment variable {key} (known: "
                                  + ", ".join(sorted(known)) + ")")
            if len(where) == 1:
                values[where[0]] = value
            else:
                values.setdefault(where[0], {})[where[1]] = value
        return values


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = _CONFIG_FILE.get()
        if path is None:
            return {}
        try:
            return _underscored(tomllib.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def _underscored(values: dict[str, Any]) -> dict[str, Any]:
    """TOML keys may be written ``max-nar-size`` or ``max_nar_size``."""
    return {k.replace("-", "_"): _underscored(v) if isinstance(v, dict) else v
            for k, v in values.items()}


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Merge the sources and validate, turning pydantic's errors into one readable message.
    ``overrides`` (command-line flags) are top-level names, or ``section.name``."""
    environ = dict(os.environ if environ is None else environ)
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    flags: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (flags.setdefault(section, {}) if section else flags)[name] = value
    env_token = _ENVIRON.set(environ)
    file_token = _CONFIG_FILE.set(config_file)
    try:
        # Sources, highest first: flags, then the environment, then the TOML file; sections
        # are merged key by key across them.
        return Settings(**flags)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting"
            problems.append(f"{where}: {msg}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    finally:
        _ENVIRON.reset(env_token)
        _CONFIG_FILE.reset(file_token)


def settings_for_worker(settings: Settings) -> dict[str, str]:
    return {WORKER_SETTINGS_ENV: settings.model_dump_json()}


def settings_from_worker_env() -> Settings:
    return Settings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
