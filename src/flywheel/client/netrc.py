"""Editing a netrc file: one ``machine HOST password TOKEN`` entry per host, every other
entry (and comment) left as it was.

Nix hands the file to curl, which matches ``machine`` against the host name alone (no port)
and sends Basic auth; flywheel takes the password as a token, so no login is needed."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"#[^\n]*|\S+")
_STARTS_ENTRY = ("machine", "default")


@dataclass(frozen=True)
class Entry:
    start: int
    end: int
    machine: str | None      # None for "default"
    password: str | None


def entries(text: str) -> list[Entry]:
    tokens = [(m.start(), m.group()) for m in _TOKEN.finditer(text)
              if not m.group().startswith("#")]
    found: list[Entry] = []
    i = 0
    while i < len(tokens):
        start, word = tokens[i]
        if word not in _STARTS_ENTRY:
            i += 1
            continue
        machine = None
        last = i
        if word == "machine" and i + 1 < len(tokens):
            machine = tokens[i + 1][1]
            last = i + 1
        i = last + 1
        password = None
        end = tokens[last][0] + len(tokens[last][1])
        while i < len(tokens) and tokens[i][1] not in _STARTS_ENTRY:
            if tokens[i][1] == "macdef":
                # A macro body runs to the next blank line and may hold any words.
                body_end = text.find("\n\n", tokens[i][0])
                end = len(text) if body_end < 0 else body_end + 1
                while i < len(tokens) and tokens[i][0] < end:
                    i += 1
                continue
            if tokens[i][1] == "password" and i + 1 < len(tokens):
                password = tokens[i + 1][1]
                i += 1
            end = tokens[i][0] + len(tokens[i][1])
            i += 1
        # The entry owns the rest of its last line, so removing it leaves no blank line;
        # comments on lines of their own stay.
        newline = text.find("\n", end)
        end = len(text) if newline < 0 else newline + 1
        found.append(Entry(start, end, machine, password))
    return found


def set_password(text: str, host: str, password: str) -> tuple[str, str | None]:
    """The text with ``host``'s entry holding ``password``, and what changed (None when
    it already did)."""
    mine = [e for e in entries(text) if e.machine == host]
    if len(mine) == 1 and mine[0].password == password:
        return text, None
    for e in reversed(mine):
        text = text[:e.start] + text[e.end:]
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"machine {host} password {password}\n"
    return text, (f"replaced the credentials for {host}" if mine
                  else f"added credentials for {host}")
