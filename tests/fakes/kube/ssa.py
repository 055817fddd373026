"""Server-side apply as the API server does it, for what the product relies on: field sets
per manager (``managedFields`` in ``FieldsV1`` form), conflicts when another manager owns
a field the applier sets to a different value, ``force`` taking ownership, and fields a
manager stops applying being removed unless someone else owns them.

A path is a tuple of FieldsV1 elements: ``f:name`` for a field, ``k:{"name":"x"}`` for an
item of an associative list, ``v:"x"`` for a set member, ``.`` for the item itself."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from tests.fakes.kube.schemas import Node

Path = tuple[str, ...]
# Set by the server, never owned by a manager.
SERVER_FIELDS = {"name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                 "managedFields", "selfLink"}


def _item_key(item: dict[str, Any], keys: list[str]) -> str:
    return "k:" + json.dumps({k: item[k] for k in keys if k in item}, separators=(",", ":"))


def _fields(value: Any, node: Node, prefix: Path) -> set[Path]:
    if isinstance(value, dict) and value and not node.atomic_map:
        out: set[Path] = set()
        for k, v in value.items():
            out |= _fields(v, node.child(k), (*prefix, f"f:{k}"))
        return out
    if isinstance(value, list) and value and node.list_type == "map":
        out = set()
        for item in value:
            at = (*prefix, _item_key(item, node.list_keys))
            out.add((*at, "."))
            out |= _fields(item, node.item(), at)
        return out
    if isinstance(value, list) and value and node.list_type == "set":
        return {(*prefix, "v:" + json.dumps(v)) for v in value}
    return {prefix}


def managed(obj: dict[str, Any], schema: Node) -> set[Path]:
    """The fields an object (as applied, or as written) sets."""
    owned = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    meta = {k: v for k, v in owned.pop("metadata", {}).items() if k not in SERVER_FIELDS}
    if meta:
        owned["metadata"] = meta
    return _fields(owned, schema, ()) if owned else set()


def _find(items: list[Any], element: str) -> int | None:
    if element.startswith("k:"):
        key = json.loads(element[2:])
        for i, item in enumerate(items):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in key.items()):
                return i
    elif element.startswith("v:"):
        value = json.loads(element[2:])
        if value in items:
            return items.index(value)
    return None


_MISSING = object()


def get_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        if element == ".":
            return node
        if element.startswith("f:") and isinstance(node, dict):
            node = node.get(element[2:], _MISSING)
        elif isinstance(node, list):
            i = _find(node, element)
            node = _MISSING if i is None else node[i]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def merge(live: Any, applied: Any, node: Node) -> Any:
    """``applied`` laid over ``live``: maps field by field, associative lists item by item,
    sets member by member, anything else replaced."""
    if isinstance(live, dict) and isinstance(applied, dict) and applied and not node.atomic_map:
        out = dict(live)
        for k, v in applied.items():
            out[k] = merge(live[k], v, node.child(k)) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(applied, list) and node.list_type == "map":
        out_list = list(live)
        for item in applied:
            i = _find(out_list, _item_key(item, node.list_keys))
            if i is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[i] = merge(out_list[i], item, node.item())
        return out_list
    if isinstance(live, list) and isinstance(applied, list) and node.list_type == "set":
        return list(live) + [copy.deepcopy(v) for v in applied if v not in live]
    return copy.deepcopy(applied)


def remove_at(obj: dict[str, Any], path: Path) -> None:
    """Remove the field (or list item, for a path ending in ``.``) and any map or list left
    empty above it."""
    target = path[:-1] if path[-1] == "." else path
    parents: list[tuple[Any, str]] = []
    node: Any = obj
    for element in target[:-1]:
        parents.append((node, element))
        node = get_at(node, (element,))
        if node is _MISSING:
            return
    last = target[-1]
    if isinstance(node, dict) and last.startswith("f:"):
        node.pop(last[2:], None)
    elif isinstance(node, list) and (i := _find(node, last)) is not None:
        del node[i]
    for parent, element in reversed(parents[1:]):
        child = get_at(parent, (element,))
        if child in ({}, []):
            remove_at(parent, (element,))


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for element, child in tree.items():
        if child:
            paths |= from_fields_v1(child, (*prefix, element))
        else:
            paths.add((*prefix, element))
    return paths


def dotted(path: Path) -> str:
    """A path as the API server names it in conflict messages: ``.spec.maxRunners``,
    ``.spec.template.spec.containers[name="runner"].image``."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("k:"):
            key = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
        elif element.startswith("v:"):
            text += f"[={element[2:]}]"
    return text


@dataclass(frozen=True)
class Conflict:
    manager: str
    api_version: str
    path: Path


def conflicts(live: dict[str, Any], applied: dict[str, Any], wanted: set[Path],
              owners: dict[str, tuple[str, set[Path]]]) -> list[Conflict]:
    """Fields the applier sets to a value other than the live one while another manager
    owns them. ``owners`` maps each other manager to (apiVersion, its fields)."""
    found = []
    for manager, (api_version, fields) in sorted(owners.items()):
        for path in sorted(wanted & fields):
            if path[-1] == ".":
                continue
            current = get_at(live, path)
            if current is not _MISSING and current != get_at(applied, path):
                found.append(Conflict(manager, api_version, path))
    return found


def changed(old: dict[str, Any], new: dict[str, Any], schema: Node) -> set[Path]:
    """Fields an update set or changed (for an Update manager's ownership)."""
    return {p for p in managed(new, schema) if get_at(old, p) != get_at(new, p)}


def dropped(old: dict[str, Any], new: dict[str, Any], schema: Node) -> set[Path]:
    return managed(old, schema) - managed(new, schema)
