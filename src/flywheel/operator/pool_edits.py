"""Edits of one pool in ``fleet.yaml`` text: its settings from a validated form, pausing
(``maxRunners: 0``, the values it had kept in a comment on that line) and resuming. Each is
a round-trip edit that keeps comments and layout, refused unless the result is a valid
spec; the unified diff is what a reviewer sees."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.errors import Conflict, FailedPrecondition, Invalid, NotFound
from flywheel.fleet.enroll import _dump
from flywheel.fleet.loader import SpecError, load_text, parse_document

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap

# ruamel.yaml is imported where a pool is edited: ~1 MiB per server process, for fleet work only.

PAUSED = "flywheel-paused:"
_PAUSED = re.compile(r"#\s*flywheel-paused:\s*(\{.*\})")


@dataclass(frozen=True)
class PoolSettings:
    """What the form may change; None leaves a field as it is."""

    min_runners: int | None = None
    max_runners: int | None = None
    image: str | None = None
    runner_group: str | None = None


@dataclass(frozen=True)
class Edited:
    text: str
    diff: str


def _pool(document: Any, name: str) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap

    for pool in document.get("pools") or []:
        if isinstance(pool, CommentedMap) and pool.get("name") == name:
            return pool
    raise NotFound(f"the fleet spec has no pool {name!r}")


def _paused_note(pool: CommentedMap) -> dict[str, Any] | None:
    token = (pool.ca.items.get("maxRunners") or [None, None, None])[2]
    m = _PAUSED.search(token.value) if token is not None else None
    return json.loads(m.group(1)) if m else None


def is_paused(text: str, pool: str) -> bool:
    return _paused_note(_pool(parse_document(Path("fleet.yaml"), text), pool)) is not None


def _finish(path: Path, before: str, document: Any) -> Edited:
    after = _dump(document, before)
    if after == before:
        raise Conflict("nothing to change: the spec already says so")
    try:
        load_text(path, after)
    except SpecError as e:
        raise Invalid("the change would make the spec invalid: " + "; ".join(e.lines)) from None
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}"))
    return Edited(after, diff)


def _document(path: Path, text: str) -> Any:
    load_text(path, text)   # only a valid spec is edited
    return parse_document(path, text)


def edit(path: Path, text: str, pool: str, settings: PoolSettings) -> Edited:
    document = _document(path, text)
    target = _pool(document, pool)
    if _paused_note(target) is not None and settings.max_runners is not None:
        raise FailedPrecondition(f"pool {pool!r} is paused: resume it before changing "
                                 "maxRunners")
    for key, value in (("minRunners", settings.min_runners),
                       ("maxRunners", settings.max_runners), ("image", settings.image),
                       ("runnerGroup", settings.runner_group)):
        if value is not None and target.get(key) != value:
            if key in target:
                target[key] = value
            else:
                target.insert(len(target), key, value)
    return _finish(path, text, document)


def pause(path: Path, text: str, pool: str) -> Edited:
    document = _document(path, text)
    target = _pool(document, pool)
    if _paused_note(target) is not None:
        raise Conflict(f"pool {pool!r} is paused already")
    # Every runner count drops to 0 (minRunners and the schedules' must stay ≤ maxRunners);
    # what they were goes into the note, so resuming restores exactly that.
    note: dict[str, Any] = {"maxRunners": target["maxRunners"],
                            "minRunners": target.get("minRunners", 0)}
    schedules = {s["name"]: s["minRunners"] for s in target.get("schedules") or []}
    if schedules:
        note["schedules"] = schedules
        for s in target["schedules"]:
            s["minRunners"] = 0
    if "minRunners" in target:
        target["minRunners"] = 0
    target["maxRunners"] = 0
    target.yaml_add_eol_comment(f"{PAUSED} {json.dumps(note, separators=(',', ':'))}",
                                "maxRunners")
    return _finish(path, text, document)


def resume(path: Path, text: str, pool: str) -> Edited:
    document = _document(path, text)
    target = _pool(document, pool)
    note = _paused_note(target)
    if note is None:
        raise Conflict(f"pool {pool!r} is not paused")
    target["maxRunners"] = int(note["maxRunners"])
    if "minRunners" in target:
        target["minRunners"] = int(note.get("minRunners", 0))
    for s in target.get("schedules") or []:
        if s["name"] in note.get("schedules", {}):
            s["minRunners"] = int(note["schedules"][s["name"]])
    target.ca.items.pop("maxRunners", None)
    return _finish(path, text, document)
