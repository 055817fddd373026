"""Pull-through upstreams: a narinfo a cache does not hold is fetched from the cache's
upstream substituters (in order), verified against the upstream's key and, while its NAR
streams in, against its NarHash and NarSize; then it is stored and served like an upload,
so a runner fleet fetches each path from the internet once.

Concurrent misses for one path fetch it once: within a process they wait for the first
fetch; across processes and replicas on PostgreSQL the fetch holds a lock named after the
path, and whoever waited finds the path stored. An upstream that is down, slow, or answers
with anything unverifiable is a plain miss (logged), never an error for the client."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx

from flywheel.cache.nix.nars import NarFile
from flywheel.cache.nix.paths import PathService
from flywheel.cache.tenancy import Cache, CacheService
from flywheel.cache.upstream_config import Upstream
from flywheel.db.engine import Database
from flywheel.errors import FlywheelError, Invalid
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.narinfo import MAX_NARINFO_BYTES, NarInfo, NarInfoError

log = logging.getLogger(__name__)

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class _Unusable(Exception):
    """What the upstream answered cannot be used (unsigned, malformed, mismatched)."""


class UpstreamService:
    def __init__(self, db: Database, caches: CacheService, paths: PathService,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._db = db
        self._caches = caches
        self._paths = paths
        self._client = httpx.Client(timeout=_TIMEOUT, transport=transport,
                                    follow_redirects=True)
        self._lock = threading.Lock()
        self._inflight: dict[tuple[int, str], threading.Event] = {}

    def configured(self, cache_name: str) -> bool:
        """Whether a miss in the cache may be pulled through (one indexed lookup)."""
        cache = self._caches.find(cache_name)
        return cache is not None and bool(cache.upstreams)

    def pull(self, cache_name: str, hash_part: str) -> str | None:
        """The narinfo the cache serves for ``hash_part`` once fetched from an upstream,
        or None (a plain miss)."""
        cache = self._caches.find(cache_name)
        if cache is None or not cache.upstreams:
            return None
        key = (cache.id, hash_part)
        with self._lock:
            waiting = self._inflight.get(key)
            if waiting is None:
                self._inflight[key] = threading.Event()
        if waiting is not None:
            waiting.wait(_TIMEOUT.read or 30.0)
            return self._stored(cache, hash_part)
        try:
            with self._db.exclusive(f"upstream:{cache.id}:{hash_part}"):
                return self._stored(cache, hash_part) or self._fetch_first(cache, hash_part)
        finally:
            with self._lock:
                self._inflight.pop(key).set()

    def _stored(self, cache: Cache, hash_part: str) -> str | None:
        found = self._paths.narinfo(cache.name, hash_part)
        return found.text if found is not None else None

    def _fetch_first(self, cache: Cache, hash_part: str) -> str | None:
        for upstream in cache.upstreams:
            try:
                if self._fetch(cache, upstream, hash_part):
                    return self._stored(cache, hash_part)
            except (httpx.HTTPError, _Unusable, FlywheelError) as e:
                reason = e.message if isinstance(e, FlywheelError) else str(e)
                log.warning("upstream %s of cache %r: %s for %s: %s", upstream.url,
                            cache.name, type(e).__name__, hash_part, reason)
        return None

    def _fetch(self, cache: Cache, upstream: Upstream, hash_part: str) -> bool:
        """Fetch, verify and store one path; False when the upstream does not have it."""
        text = self._narinfo_text(f"{upstream.url}/{hash_part}.narinfo")
        if text is None:
            return False
        try:
            info = narinfo_codec.parse(text, cache.store_dir)
        except NarInfoError as e:
            raise _Unusable(f"malformed narinfo: {e}") from None
        if info.store_path.hash_part != hash_part:
            raise _Unusable(f"narinfo is for {info.store_path.base_name}")
        fingerprint = narinfo_codec.fingerprint(info, cache.store_dir)
        key = upstream.key
        if not any(key.verify(fingerprint, sig) for sig in info.sigs):
            raise _Unusable(f"narinfo is not signed by {key.name}")
        file_name = info.url.rpartition("/")[2]
        with self._client.stream("GET", f"{upstream.url}/{info.url}") as reply:
            if reply.status_code != 200:
                raise _Unusable(f"NAR answered {reply.status_code}")
            nar = self._paths.nars.ingest(file_name, _pieces(reply), cache.id,
                                          check=lambda got: _matches(info, got))
        self._paths.add_object(cache, info, nar)
        return True

    def _narinfo_text(self, url: str) -> bytes | None:
        with self._client.stream("GET", url) as reply:
            if reply.status_code != 200:
                return None
            body = b""
            for piece in reply.iter_bytes():
                body += piece
                if len(body) > MAX_NARINFO_BYTES:
                    raise _Unusable("narinfo larger than this server accepts")
            return body

    def close(self) -> None:
        self._client.close()


def _pieces(reply: httpx.Response) -> Iterator[bytes]:
    yield from reply.iter_bytes(1 << 20)


def _matches(info: NarInfo, got: NarFile) -> None:
    """The NAR that arrived is the one the signed narinfo describes."""
    if info.nar_hash.to_base32() != got.nar_hash or info.nar_size != got.nar_size:
        raise Invalid("the NAR does not match the upstream's NarHash and NarSize")
    if info.file_hash is not None and info.file_hash.to_base32() != f"sha256:{got.file_hash}":
        raise Invalid("the NAR file does not match the upstream's FileHash")
