"""Structural schemas, as the API server uses them for server-side apply: for each field,
whether it is a map, an associative list (with its key fields), a set or an atomic value.

Built-in kinds use the Kubernetes OpenAPI definitions that ``kubernetes-validate`` ships;
custom resources use their CRD's openAPIV3Schema, as a real server does."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

KUBERNETES_SCHEMAS = "v1.31.0-local"


@functools.cache
def _definitions() -> dict[str, Any]:
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / KUBERNETES_SCHEMAS
    defs: dict[str, Any] = json.loads((root / "_definitions.json").read_text())["$defs"]
    return defs


def builtin_schema(group: str, version: str, kind: str) -> dict[str, Any]:
    for schema in _definitions().values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if (gvk.get("group", ""), gvk["version"], gvk["kind"]) == (group, version, kind):
                return dict(schema)
    raise KeyError(f"no schema for {group}/{version} {kind}")


@dataclass(frozen=True)
class Node:
    """One place in a schema."""

    schema: dict[str, Any]

    def _resolved(self) -> dict[str, Any]:
        schema = self.schema
        while "$ref" in schema:
            ref = schema["$ref"]
            schema = {**_definitions()[ref.rsplit("/", 1)[-1]],
                      **{k: v for k, v in schema.items() if k != "$ref"}}
        for combined in ("allOf", "anyOf"):
            for part in schema.get(combined, []):
                if "$ref" in part or "properties" in part:
                    schema = {**Node(part)._resolved(), **schema}
        return schema

    def child(self, key: str) -> Node:
        schema = self._resolved()
        props = schema.get("properties", {})
        if key in props:
            return Node(props[key])
        extra = schema.get("additionalProperties")
        return Node(extra if isinstance(extra, dict) else {})

    def item(self) -> Node:
        items = self._resolved().get("items")
        return Node(items if isinstance(items, dict) else {})

    @property
    def list_type(self) -> str:
        return str(self._resolved().get("x-kubernetes-list-type", "atomic"))

    @property
    def list_keys(self) -> list[str]:
        return list(self._resolved().get("x-kubernetes-list-map-keys", []))

    @property
    def atomic_map(self) -> bool:
        return self._resolved().get("x-kubernetes-map-type") == "atomic"
