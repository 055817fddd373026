"""Label selectors as the API server parses them: ``a=b``, ``a==b``, ``a!=b``, ``a``,
``!a``, ``a in (x,y)``, ``a notin (x,y)``, comma-separated, all of which must hold."""

from __future__ import annotations

import re
from collections.abc import Callable

_SET = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")

Labels = dict[str, str]


def _requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _one(requirement: str) -> Callable[[Labels], bool]:
    if m := _SET.match(requirement):
        key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in requirement:
        key, value = (s.strip() for s in requirement.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in requirement:
        key, value = (s.strip().lstrip("=") for s in requirement.split("=", 1))
        return lambda labels: labels.get(key) == value
    if requirement.startswith("!"):
        key = requirement[1:].strip()
        return lambda labels: key not in labels
    return lambda labels: requirement in labels


def selector(text: str) -> Callable[[Labels], bool]:
    checks = [_one(r) for r in _requirements(text)]
    return lambda labels: all(check(labels) for check in checks)
