"""The narinfo a cache serves: the pusher's facts, our URL, and the cache's own signature."""

from __future__ import annotations

from dataclasses import replace

from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.narinfo import NarInfo
from flywheel.nix.signing import SecretKey


def signed_narinfo(info: NarInfo, key: SecretKey, store_dir: str,
                   *stale_key_names: str) -> str:
    """Render ``info`` with a fresh signature by ``key``.

    Signatures claiming the cache's key names (current or retired) are dropped first: a
    pusher cannot plant one, and a key rotation leaves no signature by the old key."""
    ours = {key.name, *stale_key_names}
    sigs = [s for s in info.sigs if s.partition(":")[0] not in ours]
    sigs.append(key.sign(narinfo_codec.fingerprint(info, store_dir)))
    return narinfo_codec.render(replace(info, sigs=sigs), store_dir)
