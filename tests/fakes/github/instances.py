"""Smallest instances of GitHub's schemas: every required property, typed as the description
says, with the values a test cares about laid over them. What the fake answers is built
here and then checked against the same description."""

from __future__ import annotations

from typing import Any

from tests.fakes.github.schemas import HOOKS_URI, REST_URI, _documents, _resolve

NOW = "2025-03-03T09:00:00Z"


def _string(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return str(next(v for v in schema["enum"] if v is not None))
    if "const" in schema:
        return str(schema["const"])
    fmt = schema.get("format")
    if fmt == "date-time":
        return NOW
    if fmt == "uri" or fmt == "uri-template":
        return "https://github.com/acme"
    if fmt == "email":
        return "octocat@example.com"
    return "x" * max(1, int(schema.get("minLength", 1)))


class Builder:
    def __init__(self, uri: str) -> None:
        rest, hooks, _ = _documents()
        self._doc = rest if uri == REST_URI else hooks

    def _deref(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = _resolve(self._doc, schema["$ref"].removeprefix("#"))
        return schema

    def build(self, schema: dict[str, Any]) -> Any:
        schema = self._deref(schema)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                value = self.build(part)
                if isinstance(value, dict):
                    merged.update(value)
            return merged
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._deref(o) for o in schema[key]]
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                return self.build(chosen)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            props = schema.get("properties", {})
            return {name: self.build(props.get(name, {"type": "string"}))
                    for name in schema.get("required", [])}
        if kind == "array":
            return []
        if kind == "integer" or kind == "number":
            return int(schema.get("minimum", 1))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        if kind == "string" or "enum" in schema or "format" in schema:
            return _string(schema)
        return None


def _overlay(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _overlay(base.get(key), value)
        return out
    return top


def rest_component(name: str, /, **values: Any) -> dict[str, Any]:
    """An instance of ``components/schemas/<name>`` with ``values`` laid over it."""
    built = Builder(REST_URI).build({"$ref": f"#/components/schemas/{name}"})
    result: dict[str, Any] = _overlay(built, values)
    return result


def webhook(name: str, /, **values: Any) -> dict[str, Any]:
    _rest, hooks, _ = _documents()
    schema = hooks["webhooks"][name]["post"]["requestBody"]["content"]["application/json"][
        "schema"]
    built = Builder(HOOKS_URI).build(schema)
    result: dict[str, Any] = _overlay(built, values)
    return result
