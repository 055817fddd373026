"""Where per-user configuration lives (XDG base directories, as Nix itself resolves them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def config_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    # The spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    value = env.get("XDG_CONFIG_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path(env.get("HOME") or Path.home()) / ".config"
