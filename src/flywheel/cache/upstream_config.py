"""A cache's pull-through upstreams as configured: a binary cache URL and the key its
narinfos must be signed with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flywheel.errors import Invalid
from flywheel.nix.signing import PublicKey

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
MAX_UPSTREAMS = 8


@dataclass(frozen=True)
class Upstream:
    url: str
    public_key: str

    @classmethod
    def of(cls, url: str, public_key: str) -> Upstream:
        if not _URL.fullmatch(url):
            raise Invalid(f"upstream URL must be an http(s) binary cache URL, got {url[:100]!r}")
        try:
            PublicKey.parse(public_key)
        except ValueError as e:
            raise Invalid(f"upstream key {public_key[:100]!r}: {e}") from None
        return cls(url.rstrip("/"), public_key)

    @property
    def key(self) -> PublicKey:
        return PublicKey.parse(self.public_key)

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "public_key": self.public_key}


def parse_upstreams(values: list[Any]) -> tuple[Upstream, ...]:
    if len(values) > MAX_UPSTREAMS:
        raise Invalid(f"at most {MAX_UPSTREAMS} upstreams per cache")
    return tuple(Upstream.of(str(v["url"]), str(v["public_key"])) for v in values)
