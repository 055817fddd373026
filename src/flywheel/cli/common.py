"""Options every local command shares, and turning domain errors into clean exits."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from flywheel.app.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from flywheel.app.services import Services

err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file",
                                                show_default=False)]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Data directory [default: ./flywheel-data or $FLYWHEEL_DATA_DIR]",
    show_default=False)]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as e:
        raise fail(str(e), 2) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@contextlib.contextmanager
def local_services(config: Path | None, data_dir: Path | None) -> Iterator[Services]:
    # Imported here: the database stack costs most of a second to load, which the client
    # commands (login, push, ...) sharing this CLI should not pay.
    from flywheel.app.services import Services
    from flywheel.errors import FlywheelError

    settings = settings_from(config, data_dir=data_dir)
    try:
        services = Services.open(settings)
    except FlywheelError as e:  # e.g. a schema that needs `flywheel db upgrade`
        raise fail(e.message) from None
    try:
        yield services
    except FlywheelError as e:
        raise fail(e.message) from None
    except ValueError as e:
        raise fail(str(e)) from None
    finally:
        services.close()
