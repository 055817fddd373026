"""``flywheel use``: make the user's Nix substitute from a cache, with the cache's key
trusted and (for a token profile) credentials in the netrc file nix.conf names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from flywheel.api.cache_config import CacheConfig
from flywheel.client import netrc
from flywheel.client.errors import ClientError
from flywheel.client.files import atomic_write, existing_mode, writable_target
from flywheel.client.nixconf import NixConf
from flywheel.client.xdg import config_home


@dataclass
class UseResult:
    nix_conf: Path
    netrc_file: Path | None = None
    changes: list[str] = field(default_factory=list)   # "<file>: <what>"
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def nix_conf_path(override: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The nix.conf to edit: the flag, else the first (highest-priority) of
    NIX_USER_CONF_FILES, else ``$XDG_CONFIG_HOME/nix/nix.conf`` as Nix reads it."""
    env = os.environ if environ is None else environ
    if override is not None:
        return override
    first = next((f for f in env.get("NIX_USER_CONF_FILES", "").split(":") if f), None)
    if first is not None:
        return Path(first)
    return config_home(env) / "nix" / "nix.conf"


def default_netrc(environ: Mapping[str, str] | None = None) -> Path:
    return config_home(environ) / "nix" / "netrc"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise ClientError(f"cannot read {path}: {e.strerror}") from None


def _write(path: Path, text: str, mode: int, lines_hint: list[str]) -> None:
    try:
        atomic_write(writable_target(path), text, mode)
    except OSError as e:
        hint = "".join(f"\n  {line}" for line in lines_hint)
        raise ClientError(f"cannot write {path}: {e.strerror or e}; add yourself:{hint}"
                          ) from None


def configure_nix(config: CacheConfig, token: str | None, nix_conf: Path,
                  netrc_default: Path) -> UseResult:
    result = UseResult(nix_conf)
    conf = NixConf.parse(_read(nix_conf))
    conf.add_to_list("substituters", config.substituter_endpoint)
    conf.replace_key(config.public_key)
    conf.add_to_list("trusted-public-keys", config.public_key)

    if token:
        # Respect a netrc-file the user already chose (it may hold other hosts'
        # credentials); only name ours when there is none.
        existing = conf.get_single("netrc-file")
        netrc_path = Path(existing) if existing else netrc_default
        if existing is None:
            conf.set_single("netrc-file", str(netrc_path))
        host = urlsplit(config.substituter_endpoint).hostname or ""
        text, change = netrc.set_password(_read(netrc_path), host, token)
        if change is not None:
            _write(netrc_path, text, 0o600, [f"machine {host} password <token>"])
            result.changes.append(f"{netrc_path}: {change}")
        result.netrc_file = netrc_path
    elif not config.is_public:
        result.notes.append("the cache is private and this profile has no token: Nix will "
                            "be refused (run flywheel login again with a token)")

    if conf.changes:
        wanted = [f"extra-substituters = {config.substituter_endpoint}",
                  f"extra-trusted-public-keys = {config.public_key}"]
        if result.netrc_file is not None:
            wanted.append(f"netrc-file = {result.netrc_file}")
        _write(nix_conf, conf.text(), existing_mode(nix_conf, 0o644), wanted)
        result.changes[:0] = [f"{nix_conf}: {c}" for c in conf.changes]
    if os.geteuid() != 0 and result.changed:
        result.notes.append("on a multi-user Nix install the daemon only honours these "
                            "settings for trusted users (trusted-users in /etc/nix/nix.conf)"
                            " or substituters listed in trusted-substituters")
    return result
