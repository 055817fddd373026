"""GitHub's published descriptions (the vendored slices in ``openapi/``) as validators: every
answer the fake gives and every webhook payload it sends is checked against them, so the
fake cannot drift from what GitHub documents."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).resolve().parent / "openapi"
REST_URI = "urn:github:rest"
HOOKS_URI = "urn:github:webhooks"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema: the schema, or null."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") is True:
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def _documents() -> tuple[dict[str, Any], dict[str, Any], Registry]:
    rest = _nullable(json.loads((HERE / "api.github.com.json").read_text()))
    hooks = json.loads((HERE / "webhooks.json").read_text())
    registry: Registry = Registry().with_resources([
        (REST_URI, DRAFT202012.create_resource(rest)),
        (HOOKS_URI, DRAFT202012.create_resource(hooks))])
    return rest, hooks, registry


class SchemaMismatch(AssertionError):
    pass


def _check(uri: str, pointer: str, value: Any) -> None:
    _, _, registry = _documents()
    validator = Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=registry)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise SchemaMismatch(f"{pointer}: at /{where}: {first.message[:300]}")


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def check_response(template: str, method: str, status: int, body: Any) -> None:
    """``body`` is what GitHub's description says ``METHOD template`` answers with
    ``status``."""
    rest, _, _ = _documents()
    operation = rest["paths"][template][method.lower()]
    if str(status) not in operation["responses"]:
        raise SchemaMismatch(f"{method} {template} does not answer {status}")
    pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{status}"
    response = operation["responses"][str(status)]
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        response = _resolve(rest, pointer)
    if "content" not in response:
        return
    _check(REST_URI, f"{pointer}/content/application~1json/schema", body)


def check_request(template: str, method: str, body: Any) -> None:
    pointer = (f"/paths/{_escape(template)}/{method.lower()}/requestBody/content/"
               "application~1json/schema")
    _check(REST_URI, pointer, body)


def check_webhook(name: str, payload: Any) -> None:
    """``payload`` is a ``name`` webhook (``workflow-job-queued``) as GitHub describes it."""
    _check(HOOKS_URI, f"/webhooks/{name}/post/requestBody/content/application~1json/schema",
           payload)


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
