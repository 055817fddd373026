"""Workspace names: one URL segment under ``/_state/``, matched by the same globs as tokens."""

from __future__ import annotations

import re

from flywheel.errors import Invalid

WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_workspace_name(name: str) -> str:
    if not WORKSPACE_NAME.fullmatch(name):
        raise Invalid(f"invalid workspace name {name[:60]!r}: use 1-128 characters of "
                      "A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return name
