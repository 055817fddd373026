"""Roles from configuration: ``[auth] admins``, ``operators`` and ``viewers`` list identity
patterns; an identity gets the highest role whose list matches it.

Patterns are ``kind:glob`` over identities (``tailnet:*@example.com``, ``cert:CN=ci,O=Acme``,
``token:ci-bot``), ``github:LOGIN`` for a GitHub user (a tailnet login made through GitHub)
and ``github-team:ORG/TEAM`` for the members of a GitHub team, asked of the forge."""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flywheel.auth.identities import KINDS, Identity
from flywheel.auth.principal import Role

log = logging.getLogger(__name__)

# (org, team slug, GitHub login) -> member?; raises when the forge cannot be asked.
TeamCheck = Callable[[str, str, str], bool]
_TEAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]{0,38})/([A-Za-z0-9._-]{1,100})")
TEAM_ANSWER_SECONDS = 300


def check_pattern(pattern: str) -> str:
    kind, sep, rest = pattern.partition(":")
    if not sep or not rest or kind not in (*KINDS, "github", "github-team"):
        raise ValueError(f"{pattern[:80]!r} is not an identity pattern (tailnet:LOGIN, "
                         "cert:SUBJECT, token:SUB, github:LOGIN or github-team:ORG/TEAM)")
    if kind == "github-team" and not _TEAM.fullmatch(rest):
        raise ValueError(f"{pattern[:80]!r}: a team is github-team:ORG/TEAM-SLUG")
    return pattern


@dataclass(frozen=True)
class RoleMap:
    admins: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()

    @classmethod
    def of(cls, admins: Sequence[str], operators: Sequence[str],
           viewers: Sequence[str]) -> RoleMap:
        return cls(tuple(map(check_pattern, admins)), tuple(map(check_pattern, operators)),
                   tuple(map(check_pattern, viewers)))

    def teams(self) -> set[str]:
        return {p.partition(":")[2] for p in (*self.admins, *self.operators, *self.viewers)
                if p.startswith("github-team:")}


class Roles:
    """The role of an identity, asking the forge about team membership at most every few
    minutes per (team, login)."""

    def __init__(self, mapping: RoleMap, team_check: TeamCheck | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mapping = mapping
        self._team_check = team_check
        self._clock = clock
        self._answers: dict[tuple[str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def role_for(self, identity: Identity | None) -> Role | None:
        if identity is None:
            return None
        for role, patterns in ((Role.ADMIN, self.mapping.admins),
                               (Role.OPERATOR, self.mapping.operators),
                               (Role.VIEWER, self.mapping.viewers)):
            if any(self._matches(p, identity) for p in patterns):
                return role
        return None

    def _matches(self, pattern: str, identity: Identity) -> bool:
        kind, _, glob = pattern.partition(":")
        if kind == identity.kind:
            return fnmatch.fnmatchcase(identity.name, glob)
        login = identity.github_login
        if login is None:
            return False
        if kind == "github":
            return glob.lower() == login.lower()
        if kind == "github-team":
            return self._member(glob, login)
        return False

    def _member(self, team: str, login: str) -> bool:
        if self._team_check is None:
            return False
        now = self._clock()
        with self._lock:
            known = self._answers.get((team, login))
        if known is not None and now - known[0] < TEAM_ANSWER_SECONDS:
            return known[1]
        org, _, slug = team.partition("/")
        try:
            member = self._team_check(org, slug, login)
        except Exception as e:  # the forge is down: no role from it, never a failed request
            log.warning("cannot check membership of %s in team %s: %s", login, team, e)
            return False
        with self._lock:
            self._answers[(team, login)] = (now, member)
        return member
