"""GitLab through python-gitlab, the legacy path: a merge request instead of a pull
request, its pipeline instead of check runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions
import requests

from flywheel.operator.forges.base import ChangeRequest, ChangeState, Check, FileAt, ForgeError

API = "https://gitlab.com"
T = TypeVar("T")
_STATES = {"opened": "open", "closed": "closed", "merged": "merged", "locked": "closed"}


@contextmanager
def _answers(what: str) -> Iterator[None]:
    try:
        yield
    except gitlab.exceptions.GitlabError as e:
        raise ForgeError(f"GitLab refused to {what}: {e.response_code} "
                         f"{e.error_message}") from None
    except requests.RequestException as e:
        raise ForgeError(f"cannot reach GitLab to {what}: {e or type(e).__name__}") from None


class GitLabForge:
    kind = "gitlab"

    def __init__(self, project: str, *, url: str | None = None, token: str | None) -> None:
        if token is None:
            raise ValueError("GitLab needs a token ([forge] token-file)")
        self.project_path = project
        self.url = url or API
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=20)
        self._project: Any = None

    def describe(self) -> str:
        return f"GitLab {self.project_path}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _answers(what):
            if self._project is None:
                self._project = self._gl.projects.get(self.project_path)
            return fn()

    def read_file(self, path: str, ref: str) -> FileAt:
        found = self._call(f"read {path}@{ref}",
                           lambda: self._project.files.get(file_path=path, ref=ref))
        return FileAt(found.decode().decode("utf-8"), found.last_commit_id,
                      f"{self.describe()}@{ref}:{path}")

    def propose(self, *, path: str, base: str, branch: str, text: str, version: str,
                title: str, body: str) -> ChangeRequest:
        self._call(f"create branch {branch}", lambda: self._project.branches.create(
            {"branch": branch, "ref": base}))
        self._call(f"commit {path}", lambda: self._project.commits.create({
            "branch": branch, "commit_message": title, "actions": [{
                "action": "update", "file_path": path, "content": text,
                "last_commit_id": version}]}))
        mr = self._call("open the merge request", lambda: self._project.mergerequests.create({
            "source_branch": branch, "target_branch": base, "title": title,
            "description": body}))
        return ChangeRequest(int(mr.iid), str(mr.web_url), branch)

    def state(self, number: int) -> ChangeState:
        mr = self._call(f"read merge request !{number}",
                        lambda: self._project.mergerequests.get(number))
        pipeline = getattr(mr, "head_pipeline", None) or {}
        checks = [Check("pipeline", str(pipeline.get("status")),
                        str(pipeline.get("status")) if pipeline.get("status") in
                        ("success", "failed", "canceled", "skipped") else None,
                        pipeline.get("web_url"))] if pipeline else []
        status = getattr(mr, "detailed_merge_status", None) or getattr(mr, "merge_status", "")
        mergeable = True if status in ("mergeable", "can_be_merged") else \
            False if status in ("cannot_be_merged", "broken_status") else None
        return ChangeState(number, str(mr.web_url), _STATES.get(mr.state, str(mr.state)),
                           mergeable, checks)

    def is_team_member(self, org: str, team: str, login: str) -> bool:
        return False   # team roles are GitHub teams
