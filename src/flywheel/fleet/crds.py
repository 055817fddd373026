"""The ARC CustomResourceDefinitions to validate against: read from a directory (the
``actions.github.com_*.yaml`` files the controller's chart installs) or taken from the
cluster itself."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.errors import FailedPrecondition

ARC_GROUP = "actions.github.com"
ARC_VERSION = "v1alpha1"
CRDS_ENV = "ARC_CRDS"


class CrdError(FailedPrecondition):
    """The ARC CRDs to validate against are missing or unreadable."""


@dataclass(frozen=True)
class Crds:
    schemas: dict[str, dict[str, Any]]    # kind -> openAPIV3Schema of the served version
    source: str

    def schema(self, kind: str) -> dict[str, Any]:
        try:
            return self.schemas[kind]
        except KeyError:
            raise CrdError(f"no CustomResourceDefinition for {kind} in {self.source}") from None


def schemas_of(documents: Iterable[Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec", {})
        if spec.get("group") != ARC_GROUP:
            continue
        for version in spec.get("versions", []):
            if version.get("name") == ARC_VERSION:
                found[spec["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return found


def from_directory(directory: Path) -> Crds:
    if not directory.is_dir():
        raise CrdError(f"{directory} is not a directory of CRD files")
    # Imported here: only commands reading CRDs from files need PyYAML, never the server.
    import yaml

    # The CRDs are megabytes of YAML: libyaml reads them ten times faster than pure Python.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents: list[Any] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        with path.open(encoding="utf-8") as f:
            documents += list(yaml.load_all(f, Loader=loader))
    schemas = schemas_of(documents)
    if not schemas:
        raise CrdError(f"{directory} holds no {ARC_GROUP}/{ARC_VERSION} "
                       "CustomResourceDefinitions")
    return Crds(schemas, str(directory))


def crds_directory(option: Path | None) -> Path:
    if option is not None:
        return option
    value = os.environ.get(CRDS_ENV)
    if not value:
        raise CrdError(f"validating needs the ARC CRDs: give --crds DIR (or ${CRDS_ENV}), a "
                       "directory with the actions.github.com_*.yaml files of the "
                       "gha-runner-scale-set-controller chart")
    return Path(value)
