"""Running ``flywheel`` in-process (the same Typer app the command runs), for tests that
call it many times; the README tests run the real executable."""

from __future__ import annotations

from dataclasses import dataclass

from typer.testing import CliRunner

from flywheel.cli.main import app


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def flywheel(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})},
                           catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)
