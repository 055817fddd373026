"""``flywheel runner ...``: what a job runs on one of the fleet's runners. Thin: the work is
in :mod:`flywheel.fleet.runner`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from flywheel.client.errors import ClientError
from flywheel.fleet.runner.github import export, warning_line
from flywheel.fleet.runner.setup import Places, finish
from flywheel.fleet.runner.setup import setup as run_setup

app = typer.Typer(help="Runner side: set a job up to use the caches.", no_args_is_help=True)


@app.command()
def setup(
    watch_store: Annotated[bool, typer.Option(
        "--watch-store", help="Push new store paths to the Nix cache in the background "
        "(stop with flywheel runner finish)")] = False,
) -> None:
    """Point nix and bazel at the caches from the injected FLYWHEEL_* variables. Always
    exits 0: without a usable cache the job runs without one, with a warning."""
    environ = dict(os.environ)
    try:
        result = run_setup(environ, Places.default(environ), watch_store=watch_store)
    except (OSError, ClientError) as e:
        # Say so, in the job's annotations, and let it run without the cache.
        print(warning_line(f"could not set the caches up: {e}; the job runs without them",
                           environ))
        export(environ, env={}, outputs={"reachable": "false", "can-push": "false"})
        return
    for line in result.said:
        print(line)
    for warning in result.warnings:
        print(warning_line(warning, environ))
    export(environ, env=result.env, outputs=result.outputs)


@app.command("finish")
def finish_command(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for queued pushes")] = 300,
) -> None:
    """Stop the background watch-store once it has pushed what is queued."""
    log = finish(Places.default(dict(os.environ)), timeout)
    if log is None:
        print("no watch-store was running")
        return
    lines = log.strip().splitlines()
    summary = [line for line in lines if line.startswith("pushed ")]
    print(summary[-1] if summary else lines[-1] if lines else "watch-store stopped")
