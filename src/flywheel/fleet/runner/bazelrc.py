"""The Bazel side of runner setup: a fragment with the remote cache flags, and a
``try-import`` of it in the user's ``~/.bazelrc`` so a plain ``bazel build`` reads it."""

from __future__ import annotations

from pathlib import Path

from flywheel.client.files import atomic_write, existing_mode


def fragment(remote_cache: str, token: str | None, may_write: bool) -> str:
    lines = ["# Written by `flywheel runner setup`: Bazel's remote cache on GloriousFlywheel.",
             f"build --remote_cache={remote_cache}"]
    if token:
        # Quoted: Bazel splits rc lines on whitespace, which would make the token a target.
        lines.append(f'build "--remote_header=Authorization=Bearer {token}"')
    if not may_write:
        # The token may only read: uploads would be refused one by one, each a warning.
        lines.append("build --remote_upload_local_results=false")
    return "\n".join(lines) + "\n"


def write_fragment(path: Path, text: str) -> None:
    atomic_write(path, text, 0o600, dir_mode=0o700)     # it holds the token


def import_line(fragment_path: Path) -> str:
    return f"try-import {fragment_path}"


def ensure_imported(user_rc: Path, fragment_path: Path) -> bool:
    """Add the try-import to ``user_rc`` unless it is there; True when it was added."""
    line = import_line(fragment_path)
    try:
        text = user_rc.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write(user_rc, text + line + "\n", existing_mode(user_rc, 0o644))
    return True
