"""GitHub through githubkit: a GitHub App's installation (its token minted and renewed by
githubkit) or a token."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from githubkit import AppInstallationAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import GitHubException, RequestFailed

from flywheel.operator.forges.base import ChangeRequest, ChangeState, Check, FileAt, ForgeError

API = "https://api.github.com"
T = TypeVar("T")


@contextmanager
def _answers(what: str) -> Iterator[None]:
    try:
        yield
    except RequestFailed as e:
        message = e.response.parsed_data.get("message") if _is_json(e.response) else None
        raise ForgeError(f"GitHub refused to {what}: {e.response.status_code} "
                         f"{message or e.response.reason_phrase}") from None
    except (GitHubException, httpx.HTTPError) as e:
        raise ForgeError(f"cannot reach GitHub to {what}: {e or type(e).__name__}") from None


def _is_json(response: Any) -> bool:
    try:
        return isinstance(response.parsed_data, dict)
    except Exception:  # a body that is not JSON: no message to show
        return False


class GitHubForge:
    kind = "github"

    def __init__(self, repository: str, *, url: str | None = None, token: str | None = None,
                 app_id: int | None = None, app_key: str | None = None,
                 installation_id: int | None = None) -> None:
        owner, _, repo = repository.partition("/")
        if not owner or not repo:
            raise ValueError(f"[forge] repository must be OWNER/REPO, got {repository!r}")
        self.owner, self.repo = owner, repo
        self.url = url or API
        auth: AppInstallationAuthStrategy | TokenAuthStrategy
        if app_id is not None and app_key is not None and installation_id is not None:
            auth = AppInstallationAuthStrategy(app_id, app_key, installation_id)
        elif token is not None:
            auth = TokenAuthStrategy(token)
        else:
            raise ValueError("GitHub needs a token ([forge] token-file) or an App (app-id, "
                             "app-key-file and installation-id)")
        self._gh: GitHub[Any] = GitHub(auth, base_url=self.url, timeout=20.0, trust_env=False)

    def describe(self) -> str:
        return f"GitHub {self.owner}/{self.repo}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _answers(what):
            return fn()

    def read_file(self, path: str, ref: str) -> FileAt:
        found = self._call(f"read {path}@{ref}", lambda: self._gh.rest.repos.get_content(
            self.owner, self.repo, path, ref=ref).parsed_data)
        content = getattr(found, "content", None)
        if getattr(found, "type", None) != "file" or content is None:
            raise ForgeError(f"{path} in {self.owner}/{self.repo}@{ref} is not a file")
        text = base64.b64decode(content).decode("utf-8")
        return FileAt(text, found.sha, f"{self.describe()}@{ref}:{path}")  # type: ignore[union-attr]

    def propose(self, *, path: str, base: str, branch: str, text: str, version: str,
                title: str, body: str) -> ChangeRequest:
        rest = self._gh.rest
        head = self._call(f"read branch {base}", lambda: rest.git.get_ref(
            self.owner, self.repo, f"heads/{base}").parsed_data)
        self._call(f"create branch {branch}", lambda: rest.git.create_ref(
            self.owner, self.repo, data={"ref": f"refs/heads/{branch}",
                                         "sha": head.object_.sha}))
        self._call(f"commit {path}", lambda: rest.repos.create_or_update_file_contents(
            self.owner, self.repo, path, data={
                "message": title, "branch": branch, "sha": version,
                "content": base64.b64encode(text.encode()).decode()}))
        pull = self._call("open the pull request", lambda: rest.pulls.create(
            self.owner, self.repo, data={"title": title, "head": branch, "base": base,
                                         "body": body}).parsed_data)
        return ChangeRequest(pull.number, pull.html_url, branch)

    def state(self, number: int) -> ChangeState:
        rest = self._gh.rest
        pull = self._call(f"read pull request #{number}", lambda: rest.pulls.get(
            self.owner, self.repo, number).parsed_data)
        runs = self._call("read its checks", lambda: rest.checks.list_for_ref(
            self.owner, self.repo, pull.head.sha).parsed_data)
        state = "merged" if pull.merged else pull.state
        return ChangeState(number, pull.html_url, state, pull.mergeable if isinstance(
            pull.mergeable, bool) else None, [
            Check(run.name, run.status, run.conclusion, run.html_url or None)
            for run in runs.check_runs])

    def is_team_member(self, org: str, team: str, login: str) -> bool:
        try:
            membership = self._gh.rest.teams.get_membership_for_user_in_org(
                org, team, login).parsed_data
        except RequestFailed as e:
            if e.response.status_code == 404:
                return False
            raise ForgeError(f"GitHub refused to read team {org}/{team}: "
                             f"{e.response.status_code}") from None
        return membership.state == "active"
