"""Consistency between metadata and stored content, and cleanup of what a crash leaves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import delete, exists, select

from flywheel.cache.bazel.cas import CasStore
from flywheel.cache.bazel.size_bound import SizeBound, cas_key
from flywheel.cache.nix.nars import nar_blob_key
from flywheel.db.engine import Database
from flywheel.db.schema import cas_blobs, nars, objects
from flywheel.storage.base import BlobStore


@dataclass
class FsckReport:
    stale_uploads: list[str] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    unreferenced_nars: list[str] = field(default_factory=list)
    missing_content: list[str] = field(default_factory=list)
    missing_cas: list[str] = field(default_factory=list)
    # (recorded total, what the rows add up to) when they differ.
    bazel_usage: tuple[int, int] | None = None
    # Aliases are bookkeeping for uploads in flight; expiring them is routine, not a fault.
    expired_aliases: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.stale_uploads or self.orphan_blobs or self.unreferenced_nars
                    or self.missing_content or self.missing_cas or self.bazel_usage)


def fsck(db: Database, blobs: BlobStore, cas: CasStore, bound: SizeBound, *, repair: bool,
         grace_seconds: int) -> FsckReport:
    """Find (and with ``repair`` remove) what is inconsistent:

    - temp files of uploads that never committed (a killed server), older than the grace;
    - stored files no metadata row names (a crash between storing and recording);
    - NARs no narinfo names any more, older than the grace, with their bytes;
    - NARs and CAS blobs whose stored bytes are missing or short: dropped, so clients get a
      clean miss and upload them again;
    - a Bazel usage total that differs from what its rows add up to."""
    report = FsckReport(repaired=repair)
    cutoff = int(time.time()) - grace_seconds
    report.stale_uploads = list(blobs.stale_uploads(grace_seconds))
    with db.read() as conn:
        rows = conn.execute(select(nars.c.file_hash, nars.c.alias_of, nars.c.file_size,
                                   nars.c.created_at)).all()
        referenced = {r[0] for r in conn.execute(select(objects.c.nar_file).distinct())}
        cas_rows = dict(conn.execute(select(cas_blobs.c.hash, cas_blobs.c.size)).all())
        usage, stored = bound.usage(conn), bound.stored(conn)
    canonical = {fh for fh, alias, _size, _c in rows if alias is None}
    alias_targets = {alias for _fh, alias, _s, _c in rows if alias is not None}
    for key in blobs.iter_keys():
        known = key.removeprefix("cas/") in cas_rows if key.startswith("cas/") else \
            key.removeprefix("nar/") in canonical
        if not known and (blobs.modified(key) or 0) <= cutoff:
            report.orphan_blobs.append(key)
    for fh, alias, size, created in rows:
        if alias is not None:
            if created <= cutoff:
                report.expired_aliases.append(fh)
        elif blobs.size(nar_blob_key(fh)) != size:
            report.missing_content.append(fh)
        # An alias only points onward until its narinfo arrives; its target waits for it.
        elif fh not in referenced and created <= cutoff and fh not in alias_targets:
            report.unreferenced_nars.append(fh)
    report.missing_cas = [h for h, size in cas_rows.items()
                          if blobs.size(cas_key(h)) != size]
    if usage != stored:
        report.bazel_usage = (usage, stored)
    if repair:
        _repair(db, blobs, cas, bound, report)
    return report


def _repair(db: Database, blobs: BlobStore, cas: CasStore, bound: SizeBound,
            report: FsckReport) -> None:
    for upload in report.stale_uploads:
        blobs.remove_stale_upload(upload)
    cas.forget(report.missing_cas)
    with db.write() as conn:
        # Under the write lock: a file is removed only if no row names it by now.
        for key in report.orphan_blobs:
            if key.startswith("cas/"):
                named = exists().where(cas_blobs.c.hash == key.removeprefix("cas/"))
            else:
                named = exists().where(nars.c.file_hash == key.removeprefix("nar/"),
                                       nars.c.alias_of.is_(None))
            if not conn.execute(select(named)).scalar():
                blobs.delete(key)
        for fh in report.missing_content:
            conn.execute(delete(objects).where(objects.c.nar_file == fh))
            conn.execute(delete(nars).where(nars.c.alias_of == fh))
            conn.execute(delete(nars).where(nars.c.file_hash == fh))
            blobs.delete(nar_blob_key(fh))
        for fh in report.expired_aliases:
            conn.execute(delete(nars).where(nars.c.file_hash == fh))
        for fh in report.unreferenced_nars:
            still_unused = ~exists().where(objects.c.nar_file == fh)
            if conn.execute(delete(nars).where(nars.c.file_hash == fh, still_unused)).rowcount:
                blobs.delete(nar_blob_key(fh))
        bound.reset(conn)
