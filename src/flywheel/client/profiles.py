"""Server profiles in ``$XDG_CONFIG_HOME/flywheel/config.toml``: a name, a URL, an optional
token, and which profile is the default.

The file holds tokens, so it is written atomically with mode 0600. It is small and its
shape is fixed, so it is written by hand rather than through a TOML library; every string
goes through ``json.dumps``, whose output is a valid TOML basic string."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from flywheel.client.errors import ClientError
from flywheel.client.files import atomic_write
from flywheel.client.xdg import config_home

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_home(environ) / "flywheel" / "config.toml"


def check_name(name: str) -> str:
    # A bare TOML key and a safe word in messages; no quoting questions anywhere.
    if not NAME_RE.fullmatch(name):
        raise ClientError(f"profile name {name!r} must be letters, digits, '-' or '_' "
                          "(at most 64, starting with a letter or digit)")
    return name


def normalize_url(url: str) -> str:
    """An http(s) base URL without a trailing slash, query or fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ClientError(f"server URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ClientError(f"server URL {url!r} has no host")
    if parts.query or parts.fragment:
        raise ClientError(f"server URL {url!r} must not have a query or fragment")
    if parts.username or parts.password:
        raise ClientError("put the token in the TOKEN argument, not in the URL")
    try:
        _ = parts.port
    except ValueError:
        raise ClientError(f"server URL {url!r} has an invalid port") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    token: str | None = None


@dataclass
class Profiles:
    servers: dict[str, Profile] = field(default_factory=dict)
    default: str | None = None

    def add(self, profile: Profile, *, make_default: bool = False) -> None:
        """Add or replace a profile; the first one ever added becomes the default."""
        self.servers[profile.name] = profile
        if make_default or self.default not in self.servers:
            self.default = profile.name

    def select(self, name: str | None) -> Profile:
        """The named profile, else the default one."""
        if name is not None:
            try:
                return self.servers[name]
            except KeyError:
                known = ", ".join(sorted(self.servers)) or "none"
                raise ClientError(f"no server profile named {name!r} (known: {known}); "
                                  f"add it with: flywheel login {name} URL [TOKEN]") from None
        if self.default is None or self.default not in self.servers:
            raise ClientError("no server configured; run: flywheel login NAME URL [TOKEN]")
        return self.servers[self.default]


def load(path: Path) -> Profiles:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Profiles()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ClientError(f"{path}: {e}") from None
    profiles = Profiles()
    servers = data.get("servers", {})
    if not isinstance(servers, dict):
        raise ClientError(f"{path}: [servers] must be a table")
    for name, entry in servers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ClientError(f"{path}: [servers.{name}] needs url = \"...\"")
        token = entry.get("token")
        if token is not None and not isinstance(token, str):
            raise ClientError(f"{path}: servers.{name}.token must be a string")
        profiles.servers[name] = Profile(name, entry["url"], token)
    default = data.get("default-server")
    profiles.default = default if isinstance(default, str) else None
    return profiles


def dumps(profiles: Profiles) -> str:
    lines = ["# flywheel client profiles; written by `flywheel login`. Holds tokens: keep 0600."]
    if profiles.default is not None:
        lines.append(f"default-server = {json.dumps(profiles.default)}")
    for name in sorted(profiles.servers):
        p = profiles.servers[name]
        lines += ["", f"[servers.{check_name(name)}]", f"url = {json.dumps(p.url)}"]
        if p.token is not None:
            lines.append(f"token = {json.dumps(p.token)}")
    return "\n".join(lines) + "\n"


def save(path: Path, profiles: Profiles) -> None:
    atomic_write(path, dumps(profiles), 0o600, dir_mode=0o700)
