"""Cache wiring, from one source of truth: the variables a runner container gets, derived
from the spec's cache server and the pool's caches, and read back by ``flywheel runner
setup`` inside the job. Nothing else names these variables or builds these values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FLYWHEEL_URL = "FLYWHEEL_URL"
FLYWHEEL_CACHE = "FLYWHEEL_CACHE"
FLYWHEEL_BAZEL_CACHE = "FLYWHEEL_BAZEL_CACHE"
FLYWHEEL_TOKEN = "FLYWHEEL_TOKEN"
# For workflows written against Attic, bazel-remote or plain Nix.
ATTIC_SERVER = "ATTIC_SERVER"
ATTIC_CACHE = "ATTIC_CACHE"
BAZEL_REMOTE_CACHE = "BAZEL_REMOTE_CACHE"
NIX_CONFIG = "NIX_CONFIG"

TOKEN_KEY = "token"   # the key holding the token in a pool's token Secret


@dataclass(frozen=True)
class CacheAddresses:
    url: str
    nix_cache: str | None
    bazel_cache: str | None

    @property
    def substituter(self) -> str | None:
        return f"{self.url}/{self.nix_cache}" if self.nix_cache else None

    @property
    def bazel_url(self) -> str | None:
        return f"{self.url}/{self.bazel_cache}" if self.bazel_cache else None


@dataclass(frozen=True)
class CacheWiring(CacheAddresses):
    token_secret: str | None
    public_key: str | None      # the Nix cache's key; None when there is no Nix cache

    def nix_config(self) -> str | None:
        # extra-: added to whatever the image's nix.conf already trusts (cache.nixos.org).
        if self.substituter is None:
            return None
        return (f"extra-substituters = {self.substituter}\n"
                f"extra-trusted-public-keys = {self.public_key}\n")

    def env(self) -> list[dict[str, Any]]:
        """The runner container's ``env`` entries, in a fixed order."""
        values: list[tuple[str, str | None]] = [
            (FLYWHEEL_URL, self.url),
            (FLYWHEEL_CACHE, self.nix_cache),
            (FLYWHEEL_BAZEL_CACHE, self.bazel_cache),
            (ATTIC_SERVER, self.url if self.nix_cache else None),
            (ATTIC_CACHE, self.nix_cache),
            (BAZEL_REMOTE_CACHE, self.bazel_url),
            (NIX_CONFIG, self.nix_config()),
        ]
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values if v]
        if self.token_secret:
            env.insert(3, {"name": FLYWHEEL_TOKEN, "valueFrom": {"secretKeyRef": {
                "name": self.token_secret, "key": TOKEN_KEY}}})
        return env


@dataclass(frozen=True)
class InjectedWiring(CacheAddresses):
    """What a job finds in its environment (the runner side of :class:`CacheWiring`)."""

    token: str | None
    pinned_key: str | None      # the key the fleet was rendered with, from NIX_CONFIG

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InjectedWiring | None:
        url = env.get(FLYWHEEL_URL, "").strip().rstrip("/")
        if not url:
            return None
        return cls(url=url, nix_cache=env.get(FLYWHEEL_CACHE) or None,
                   bazel_cache=env.get(FLYWHEEL_BAZEL_CACHE) or None,
                   token=env.get(FLYWHEEL_TOKEN) or None,
                   pinned_key=pinned_key(env.get(NIX_CONFIG, ""), url,
                                         env.get(FLYWHEEL_CACHE) or None))


def pinned_key(nix_config: str, url: str, cache: str | None) -> str | None:
    """The trusted key NIX_CONFIG carries for our substituter, if it carries ours."""
    if cache is None or f"{url}/{cache}" not in nix_config:
        return None
    for line in nix_config.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in ("extra-trusted-public-keys", "trusted-public-keys"):
            keys = value.split()
            return keys[0] if keys else None
    return None


def without_our_substituter(nix_config: str, url: str) -> str:
    """NIX_CONFIG minus the lines that point Nix at the cache server (for a job that must do
    without it: an unreachable substituter costs every build a timeout)."""
    kept = [line for line in nix_config.splitlines()
            if not (line.strip().startswith(("extra-substituters", "substituters"))
                    and url in line)
            and not line.strip().startswith(("extra-trusted-public-keys",))]
    return "\n".join(kept) + ("\n" if kept else "")
