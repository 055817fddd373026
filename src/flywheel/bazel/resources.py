"""ByteStream resource names (REAPI v2):

  read:  {instance}/blobs/{hash}/{size}
         {instance}/compressed-blobs/{compressor}/{hash}/{size}
  write: {instance}/uploads/{uuid}/blobs/{hash}/{size}[/{metadata...}]
         {instance}/uploads/{uuid}/compressed-blobs/{compressor}/{hash}/{size}[/...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flywheel.bazel.digests import Digest, DigestError, parse_size

COMPRESSORS = frozenset({"identity", "zstd"})
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")


@dataclass(frozen=True)
class Resource:
    instance: str
    digest: Digest
    compressor: str  # "identity" for plain blobs
    upload_id: str | None = None


def _blob_part(instance: str, parts: list[str], upload_id: str | None) -> Resource:
    if parts[:1] == ["blobs"] and len(parts) >= 3:
        return Resource(instance, Digest(parts[1], parse_size(parts[2])), "identity", upload_id)
    if parts[:1] == ["compressed-blobs"] and len(parts) >= 4:
        compressor = parts[1]
        if compressor not in COMPRESSORS:
            raise DigestError(f"unsupported compressor {compressor[:40]!r}")
        return Resource(instance, Digest(parts[2], parse_size(parts[3])), compressor,
                        upload_id)
    raise DigestError("malformed resource name: expected blobs/{hash}/{size} or "
                      "compressed-blobs/{compressor}/{hash}/{size}")


def _split(name: str, marker: tuple[str, ...]) -> tuple[str, list[str]]:
    if len(name) > 2048:
        raise DigestError("resource name too long")
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part in marker:
            return "/".join(parts[:i]), parts[i:]
    raise DigestError(f"malformed resource name {name[:120]!r}")


def parse_read(name: str) -> Resource:
    instance, rest = _split(name, ("blobs", "compressed-blobs"))
    resource = _blob_part(instance, rest, None)
    if len(rest) != (3 if resource.compressor == "identity" and rest[0] == "blobs" else 4):
        raise DigestError(f"malformed read resource name {name[:120]!r}")
    return resource


def parse_write(name: str) -> Resource:
    instance, rest = _split(name, ("uploads",))
    if len(rest) < 2 or not _UUID.fullmatch(rest[1]):
        raise DigestError(f"malformed write resource name {name[:120]!r}: expected "
                          "{instance}/uploads/{uuid}/blobs/{hash}/{size}")
    return _blob_part(instance, rest[2:], rest[1])
