"""Where the fleet spec is read from: the forge's repository (GitOps), or a file on this
server (changes applied directly)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flywheel.fleet.loader import LoadedSpec, load_text
from flywheel.operator.forges.base import Forge


@dataclass(frozen=True)
class SpecText:
    text: str
    version: str       # what an update must name, so it never overwrites an unseen change
    source: str
    path: Path         # the name errors are reported under

    def load(self) -> LoadedSpec:
        return load_text(self.path, self.text)


class SpecSource(Protocol):
    def describe(self) -> str: ...

    def read(self) -> SpecText: ...


class LocalSpec:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"file {self.path}"

    def read(self) -> SpecText:
        text = self.path.read_text(encoding="utf-8")
        return SpecText(text, hashlib.sha256(text.encode()).hexdigest(), self.describe(),
                        self.path)


class ForgeSpec:
    def __init__(self, forge: Forge, path: str, branch: str) -> None:
        self.forge = forge
        self.path = path
        self.branch = branch

    def describe(self) -> str:
        return f"{self.forge.describe()}@{self.branch}:{self.path}"

    def read(self) -> SpecText:
        found = self.forge.read_file(self.path, self.branch)
        return SpecText(found.text, found.version, found.source, Path(self.path))
