"""Editing nix.conf as text: lines are only ever added or extended, never reordered, so
comments, includes and settings we do not know survive.

Nix applies a file top to bottom: ``name = v`` replaces the value and ``extra-name = v``
appends, so what a file means is found by replaying its assignments in order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Nix 2.8's settings and their older aliases.
ALIASES = {
    "substituters": ("substituters", "binary-caches"),
    "trusted-public-keys": ("trusted-public-keys", "binary-cache-public-keys"),
    "netrc-file": ("netrc-file",),
}
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=(.*)$")


@dataclass(frozen=True)
class Assignment:
    line: int
    name: str            # as written, possibly extra-/alias
    setting: str         # canonical setting it assigns
    append: bool         # extra-: appends instead of replacing
    values: tuple[str, ...]


def _canonical(name: str) -> tuple[str, bool] | None:
    append = name.startswith("extra-")
    bare = name.removeprefix("extra-")
    for setting, aliases in ALIASES.items():
        if bare in aliases:
            return setting, append
    return None


def _split_comment(line: str) -> tuple[str, str]:
    # Nix drops everything from the first '#' on, wherever it is.
    at = line.find("#")
    return (line, "") if at < 0 else (line[:at], line[at:])


@dataclass
class NixConf:
    lines: list[str]
    changes: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> NixConf:
        return cls(text.splitlines())

    def text(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""

    def assignments(self, setting: str) -> list[Assignment]:
        found = []
        for i, line in enumerate(self.lines):
            m = _ASSIGNMENT.match(_split_comment(line)[0])
            if m and (c := _canonical(m.group(1))) is not None and c[0] == setting:
                found.append(Assignment(i, m.group(1), setting, c[1],
                                        tuple(m.group(2).split())))
        return found

    def effective(self, setting: str) -> list[str]:
        """The setting's value after this file, on top of an empty starting value."""
        value: list[str] = []
        for a in self.assignments(setting):
            value = [*value, *a.values] if a.append else list(a.values)
        return value

    def _rewrite(self, a: Assignment, values: list[str]) -> None:
        comment = _split_comment(self.lines[a.line])[1]
        self.lines[a.line] = f"{a.name} = {' '.join(values)}" + (f" {comment}" if comment
                                                                 else "")

    def add_to_list(self, setting: str, value: str) -> bool:
        """Make ``value`` part of a list setting. Appends to the last ``extra-`` line when
        nothing replaces the list after it, else adds an ``extra-`` line at the end."""
        if value in self.effective(setting):
            return False
        found = self.assignments(setting)
        if found and found[-1].append:
            self._rewrite(found[-1], [*found[-1].values, value])
        else:
            self.lines.append(f"extra-{setting} = {value}")
        self.changes.append(f"extra-{setting} += {value}")
        return True

    def replace_key(self, new_key: str) -> bool:
        """Swap a trusted key with the same name for ``new_key`` (the cache rotated its
        key); a stale key would only leave old signatures trusted."""
        name = new_key.split(":", 1)[0] + ":"
        changed = False
        for a in self.assignments("trusted-public-keys"):
            values = [new_key if v.startswith(name) and v != new_key else v for v in a.values]
            if values != list(a.values):
                old = next(v for v in a.values if v.startswith(name) and v != new_key)
                deduplicated = list(dict.fromkeys(values))
                self._rewrite(a, deduplicated)
                self.changes.append(f"{a.name}: replaced {old} with {new_key}")
                changed = True
        return changed

    def get_single(self, setting: str) -> str | None:
        found = self.assignments(setting)
        if not found or not found[-1].values:
            return None
        return found[-1].values[-1]

    def set_single(self, setting: str, value: str) -> None:
        self.lines.append(f"{setting} = {value}")
        self.changes.append(f"{setting} = {value}")
