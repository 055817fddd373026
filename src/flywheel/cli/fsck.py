"""``flywheel fsck``."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.auth.tokens import parse_duration
from flywheel.cli.common import ConfigOpt, DataDirOpt, local_services, out


def fsck(
    repair: Annotated[bool, typer.Option("--repair", help="Remove what is found")] = False,
    grace: Annotated[str, typer.Option(
        help="Leave anything younger than this alone (uploads may be in flight); 0 when "
             "the server is stopped")] = "1h",
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Check metadata against stored content; clean what crashes left behind."""
    from flywheel.maintenance.fsck import fsck as run_fsck

    with local_services(config, data_dir) as s:
        grace_seconds = 0 if grace == "0" else parse_duration(grace)
        report = run_fsck(s.db, s.blobs, s.cas, s.bazel_bound, repair=repair,
                          grace_seconds=grace_seconds)
    verb = "removed" if repair else "found"
    out.print(f"stale uploads {verb}: {len(report.stale_uploads)}")
    out.print(f"orphan blobs {verb}: {len(report.orphan_blobs)}")
    out.print(f"unreferenced NARs {verb}: {len(report.unreferenced_nars)}")
    out.print(f"NARs with missing or short content {verb}: {len(report.missing_content)}")
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
