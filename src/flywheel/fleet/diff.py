"""Field-level differences between a live object and what it would become, as readable
paths (``spec.template.spec.containers[runner].image``) with old and new values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Set by the server (or by controllers), never by the spec.
SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp",
                   "generation", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
_ABSENT = object()


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.old is _ABSENT:
            return f"{self.path}: + {_short(self.new)}"
        if self.new is _ABSENT:
            return f"{self.path}: - {_short(self.old)}"
        return f"{self.path}: {_short(self.old)} → {_short(self.new)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= 90 else text[:87] + "..."


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the server and controllers own."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in SERVER_METADATA}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _named(items: list[Any]) -> bool:
    names = [i.get("name") for i in items if isinstance(i, dict)]
    return len(names) == len(items) and None not in names and len(set(names)) == len(names)


def _walk(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            _walk(f"{path}.{key}" if path else key, old.get(key, _ABSENT),
                  new.get(key, _ABSENT), out)
        return
    if isinstance(old, list) and isinstance(new, list) and _named(old) and _named(new):
        before = {i["name"]: i for i in old}
        after = {i["name"]: i for i in new}
        for name in list(before) + [n for n in after if n not in before]:
            _walk(f"{path}[{name}]", before.get(name, _ABSENT), after.get(name, _ABSENT), out)
        return
    out.append(FieldChange(path, old, new))


def field_changes(live: dict[str, Any], wanted: dict[str, Any]) -> list[FieldChange]:
    out: list[FieldChange] = []
    _walk("", comparable(live), comparable(wanted), out)
    return out
