"""``flywheel pin``, ``unpin`` and ``pins``: closures garbage collection keeps."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, local_services, out


def pin(cache: str, path: str,
        name: Annotated[str | None, typer.Option(
            help="The pin's name [default: the path's name]; pinning a name again moves it",
            show_default=False)] = None,
        config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Keep a store path and its whole closure in CACHE, whatever the retention."""
    from flywheel.maintenance.pins import PinService

    with local_services(config, data_dir) as s:
        made = PinService(s.db).pin(s.caches.get(cache), path, name)
    out.print(f"pinned {made.store_path} in {cache} as {made.name!r}")


def unpin(cache: str, name_or_path: str,
          config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Remove a pin, by its name or by its store path."""
    from flywheel.maintenance.pins import PinService

    with local_services(config, data_dir) as s:
        removed = PinService(s.db).unpin(s.caches.get(cache), name_or_path)
    if not removed:
        raise fail(f"no pin {name_or_path!r} in cache {cache!r}")
    out.print(f"unpinned {name_or_path} in {cache}")


def pins(cache: str,
         json_output: Annotated[bool, typer.Option("--json")] = False,
         config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List a cache's pins."""
    import json

    from flywheel.maintenance.pins import PinService

    with local_services(config, data_dir) as s:
        found = PinService(s.db).list(s.caches.get(cache))
    if json_output:
        print(json.dumps([{"name": p.name, "store_path": p.store_path,
                           "created_at": p.created_at} for p in found]))
        return
    for p in found:
        out.print(f"{p.name}\t{p.store_path}")
