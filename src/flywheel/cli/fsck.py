"""``flywheel fsck``."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.auth.tokens import parse_duration
from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, local_services, out


def fsck(
    repair: Annotated[bool, typer.Option("--repair", help="Remove what is found")] = False,
    grace: Annotated[str, typer.Option(
        help="Leave anything younger than this alone (uploads may be in flight); 0 when "
             "the server is stopped")] = "1h",
    sample: Annotated[float, typer.Option(
        help="Read back and hash only this fraction of the stored content (0 to 1), "
             "for big stores")] = 1.0,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Check metadata against stored content and its hashes; clean what crashes left."""
    from flywheel.maintenance.fsck import fsck as run_fsck

    if not 0 <= sample <= 1:
        raise fail("--sample must be between 0 and 1", 2)
    with local_services(config, data_dir) as s:
        grace_seconds = 0 if grace == "0" else parse_duration(grace)
        report = run_fsck(s.db, s.blobs, s.bazel_bound, repair=repair,
                          grace_seconds=grace_seconds, sample=sample)
        where = s.blobs.describe()
    verb = "removed" if repair else "found"
    out.print(f"checked {report.checked} stored objects in {where}")
    out.print(f"stale uploads {verb}: {len(report.stale_uploads)}")
    out.print(f"orphan blobs {verb}: {len(report.orphan_blobs)}")
    out.print(f"unreferenced NARs {verb}: {len(report.unreferenced_nars)}")
    out.print(f"NARs with missing or short content {verb}: {len(report.missing_content)}")
    out.print(f"chunks with missing or corrupt content {verb}: {len(report.broken_chunks)}")
    out.print(f"CAS blobs with missing or short content {verb}: {len(report.missing_cas)}")
    if report.bazel_usage is not None:
        recorded, stored = report.bazel_usage
        out.print(f"Bazel usage total {'reset' if repair else 'wrong'}: recorded {recorded} "
                  f"bytes, stored {stored}")
    if report.clean:
        out.print("clean")
    elif not repair:
        out.print("run with --repair to remove these")
        raise typer.Exit(1)
