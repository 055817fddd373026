"""Talking to the GitHub Actions runner: annotations on the job, and the files it reads
between steps (``GITHUB_ENV``, ``GITHUB_OUTPUT``)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path


def in_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def warning_line(message: str, environ: Mapping[str, str]) -> str:
    return f"::warning::{message}" if in_actions(environ) else f"warning: {message}"


def _append(path: Path, values: Mapping[str, str]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for name, value in values.items():
            if "\n" in value:
                # Multi-line values need the delimiter form; a random delimiter cannot
                # occur in the value.
                delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
                f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                f.write(f"{name}={value}\n")


def export(environ: Mapping[str, str], *, env: Mapping[str, str],
           outputs: Mapping[str, str]) -> None:
    """Variables for the job's later steps, and this step's outputs, when run by Actions."""
    if env and environ.get("GITHUB_ENV"):
        _append(Path(environ["GITHUB_ENV"]), env)
    if outputs and environ.get("GITHUB_OUTPUT"):
        _append(Path(environ["GITHUB_OUTPUT"]), outputs)
