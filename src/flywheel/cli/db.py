"""``flywheel db``: the metadata schema."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, out, settings_from

app = typer.Typer(help="The metadata database (SQLite or PostgreSQL).", no_args_is_help=True)

DatabaseUrlOpt = Annotated[str | None, typer.Option(
    "--database-url", help="SQLAlchemy URL [default: SQLite in the data dir]",
    show_default=False)]


@app.command()
def upgrade(config: ConfigOpt = None, data_dir: DataDirOpt = None,
            database_url: DatabaseUrlOpt = None) -> None:
    """Bring the schema to this version's (one migration history for SQLite and
    PostgreSQL). Replicas on the old version should be stopped first."""
    from sqlalchemy.exc import OperationalError

    from flywheel.app.secrets import make_private
    from flywheel.db.engine import make_engine, migrate

    settings = settings_from(config, data_dir=data_dir, database_url=database_url)
    make_private(settings.data_dir)
    engine = make_engine(settings.resolved_database_url)
    try:
        before, after = migrate(engine)
    except OperationalError as e:
        raise fail(f"cannot reach the database: {type(e.orig).__name__}") from None
    finally:
        engine.dispose()
    if before == after:
        out.print(f"schema is current (revision {after})")
    else:
        out.print(f"schema upgraded from revision {before or 'none'} to {after}")
