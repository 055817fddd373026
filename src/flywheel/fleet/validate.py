"""Validating rendered objects offline, as the API server would with
``fieldValidation=Strict``: ARC objects against their CRD's openAPIV3Schema with unknown
fields refused, a scale set's pod template as a PodTemplateSpec, and core objects against
the Kubernetes schemas that ``kubernetes-validate`` ships."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flywheel.fleet.crds import ARC_GROUP, Crds

if TYPE_CHECKING:
    import jsonschema

# jsonschema and kubernetes_validate are imported where objects are validated: ~3 MiB, fleet only.

Object = dict[str, Any]


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever an object lists its
    properties and does not say it keeps unknown fields, and ``nullable`` understood."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "(object)"


def _describe(obj: Object) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


class Validator:
    def __init__(self, crds: Crds, kubernetes_version: str) -> None:
        self.crds = crds
        self.kubernetes_version = kubernetes_version
        self._validators: dict[str, jsonschema.Draft7Validator] = {}

    def _crd_validator(self, kind: str) -> jsonschema.Draft7Validator:
        if kind not in self._validators:
            import jsonschema

            schema = strict(copy.deepcopy(self.crds.schema(kind)))
            self._validators[kind] = jsonschema.Draft7Validator(schema)
        return self._validators[kind]

    def _kubernetes(self, obj: Object) -> list[tuple[str, str]]:
        import kubernetes_validate  # type: ignore[import-untyped]

        try:
            kubernetes_validate.validate(obj, self.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [(_path(e.absolute_path), e.message)]
        return []

    def _template(self, obj: Object) -> list[tuple[str, str]]:
        # Checked as the template of a PodTemplate, whose schema is PodTemplateSpec's.
        wrapper = {"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": obj["metadata"]["name"]},
                   "template": obj.get("spec", {}).get("template", {})}
        return [(f"spec.{path}", message) for path, message in self._kubernetes(wrapper)]

    def problems(self, obj: Object) -> list[str]:
        """Each problem as ``Kind namespace/name: field: message``."""
        if str(obj.get("apiVersion", "")).startswith(f"{ARC_GROUP}/"):
            found = [(_path(e.absolute_path), e.message)
                     for e in self._crd_validator(obj["kind"]).iter_errors(obj)]
            if obj["kind"] == "AutoscalingRunnerSet":
                found += self._template(obj)
        else:
            found = self._kubernetes(obj)
        return [f"{_describe(obj)}: {path}: {message}" for path, message in sorted(set(found))]

    def all_problems(self, objects: Iterable[Object]) -> list[str]:
        return [p for obj in objects for p in self.problems(obj)]
