"""Entry point: ``flywheel``."""

from __future__ import annotations

import typer

from flywheel import __version__
from flywheel.cli import cache, db, fleet, remote, runner, state, token
from flywheel.cli.fsck import fsck
from flywheel.cli.gc import gc
from flywheel.cli.pin import pin, pins, unpin
from flywheel.cli.serve import serve

app = typer.Typer(help="GloriousFlywheel: multi-tenant Nix binary cache and CI platform.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command()(serve)
app.command()(fsck)
app.command()(gc)
app.command()(pin)
app.command()(unpin)
app.command()(pins)
app.add_typer(cache.app, name="cache")
app.add_typer(db.app, name="db")
app.add_typer(token.app, name="token")
app.add_typer(fleet.app, name="fleet")
app.add_typer(runner.app, name="runner")
app.add_typer(state.app, name="state")
remote.register(app)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    app()
