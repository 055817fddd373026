"""Consistency between metadata and stored content, and cleanup of what a crash leaves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, exists, select

from flywheel.cache.bazel.service import cas_key
from flywheel.cache.nix.paths import nar_blob_key
from flywheel.db.schema import cas_blobs, nars, objects
from flywheel.storage.base import BlobStore


@dataclass
class FsckReport:
    stale_uploads: list[str] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    unreferenced_nars: list[str] = field(default_factory=list)
    missing_content: list[str] = field(default_factory=list)
    # Aliases are bookkeeping for uploads in flight; expiring them is routine, not a fault.
    expired_aliases: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.stale_uploads or self.orphan_blobs or self.unreferenced_nars
                    or self.missing_content)


def fsck(engine: Engine, blobs: BlobStore, *, repair: bool, grace_seconds: int) -> FsckReport:
    """Find (and with ``repair`` remove) leftovers older than ``grace_seconds``.

    - temp files of uploads that never committed (a killed server);
    - blobs no metadata row names (a crash between storing and recording);
    - NAR rows no cache lists any more (after deletes), with their bytes;
    - paths whose NAR content is missing: dropped so clients get a clean 404."""
    report = FsckReport(repaired=repair)
    cutoff = int(time.time()) - grace_seconds
    report.stale_uploads = list(blobs.stale_uploads(grace_seconds))
    with engine.connect() as conn:
        rows = conn.execute(select(nars.c.file_hash, nars.c.alias_of, nars.c.created_at)).all()
        referenced = {r[0] for r in conn.execute(select(objects.c.nar_file).distinct())}
        cas = {cas_key(r[0]) for r in conn.execute(select(cas_blobs.c.hash))}
    canonical = {fh for fh, alias, _ in rows if alias is None}
    alias_targets = {alias for _fh, alias, _c in rows if alias is not None}
    for key in blobs.iter_keys():
        known = key in cas if key.startswith("cas/") else key.removeprefix("nar/") in canonical
        if not known and (blobs.modified(key) or 0) <= cutoff:
            report.orphan_blobs.append(key)
    for fh, alias, created in rows:
        if alias is not None:
            if created <= cutoff:
                report.expired_aliases.append(fh)
        # An alias only points onward until its narinfo arrives; its target waits for it.
        elif fh not in referenced and created <= cutoff and fh not in alias_targets:
            report.unreferenced_nars.append(fh)
        elif fh in referenced and not blobs.exists(nar_blob_key(fh)):
            report.missing_content.append(fh)
    if repair:
        for upload in report.stale_uploads:
            blobs.remove_stale_upload(upload)
        for key in report.orphan_blobs:
            blobs.delete(key)
        with engine.begin() as conn:
            for fh in report.missing_content:
                conn.execute(delete(objects).where(objects.c.nar_file == fh))
                conn.execute(delete(nars).where(nars.c.alias_of == fh))
                conn.execute(delete(nars).where(nars.c.file_hash == fh))
            for fh in report.expired_aliases:
                conn.execute(delete(nars).where(nars.c.file_hash == fh))
            for fh in report.unreferenced_nars:
                still_unused = ~exists().where(objects.c.nar_file == fh)
                if conn.execute(delete(nars).where(nars.c.file_hash == fh, still_unused)).rowcount:
                    blobs.delete(nar_blob_key(fh))
    return report

