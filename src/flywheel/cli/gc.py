"""``flywheel gc``."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.cli.common import ConfigOpt, DataDirOpt, local_services, out


def gc(
    grace: Annotated[int | None, typer.Option(
        help="Seconds: nothing younger is collected [default: [gc] grace, 3600]",
        show_default=False)] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Collect garbage once: paths past their cache's retention (pins kept), then content
    nothing uses any more. `flywheel serve --role gc` does this on a schedule."""
    from flywheel.maintenance.gc import Collector

    with local_services(config, data_dir) as s:
        collector = Collector(s.db, s.blobs, s.bazel_bound,
                              grace=s.settings.gc.grace if grace is None else grace)
        report = collector.collect()
    for line in report.lines():
        out.print(line)
