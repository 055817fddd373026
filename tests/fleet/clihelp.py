"""Running ``flywheel`` in-process (the same Typer app the command runs), for tests that
call it many times; the README tests run the real executable."""

from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

from rich.console import Console
from typer.testing import CliRunner

from flywheel.cli import fleet as fleet_cli
from flywheel.cli.main import app


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def flywheel(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    # The command's consoles were made when it was imported, with whatever width the test
    # process had then (80 under some runners): tables are read wide, as on a wide terminal.
    with mock.patch.object(fleet_cli, "out", Console(highlight=False, soft_wrap=True,
                                                     markup=False, width=200)), \
            mock.patch.object(fleet_cli, "err", Console(stderr=True, highlight=False,
                                                        soft_wrap=True, markup=False,
                                                        width=200)):
        result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})},
                               catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)
