"""What the operator plane asks of a forge: read the spec, propose a change to it as a
branch, a commit and a pull (merge) request, follow that request's checks and merge state,
and (GitHub) answer team membership for roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ForgeError(Exception):
    """The forge refused or could not be reached; the message says which, and why."""


@dataclass(frozen=True)
class FileAt:
    text: str
    version: str      # what an update must name: GitHub's blob sha, GitLab's last commit id
    source: str       # for people: "github acme/platform@main:fleet.yaml"


@dataclass(frozen=True)
class Check:
    name: str
    status: str       # queued, in_progress, completed (GitLab pipelines: their status)
    conclusion: str | None
    url: str | None


@dataclass(frozen=True)
class ChangeRequest:
    number: int
    url: str
    branch: str


@dataclass(frozen=True)
class ChangeState:
    number: int
    url: str
    state: str        # open, closed, merged
    mergeable: bool | None
    checks: list[Check] = field(default_factory=list)


class Forge(Protocol):
    kind: str

    def describe(self) -> str: ...

    def read_file(self, path: str, ref: str) -> FileAt: ...

    def propose(self, *, path: str, base: str, branch: str, text: str, version: str,
                title: str, body: str) -> ChangeRequest: ...

    def state(self, number: int) -> ChangeState: ...

    def is_team_member(self, org: str, team: str, login: str) -> bool: ...
