"""A fake GitHub REST API for what the operator plane uses: a repository's files, branches
and commits, pull requests and their check runs, team memberships, and GitHub App
installation tokens (the App's JWT verified with its public key). Every request body it
takes and every answer it gives is checked against GitHub's published description; a
mismatch is answered with 500 and kept in ``mismatches`` so the test fails.

It runs in the test's process, on a loopback port, as a thread."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from tests.fakes.github import schemas
from tests.fakes.github.instances import rest_component
from tests.fakes.github.threads import serving

ROUTES = [
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("PUT", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}"),
]
# {path} and {ref} may hold slashes (a file in a directory, heads/main).
_GREEDY = {"path", "ref"}


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>"
                     + (".+" if m.group(1) in _GREEDY else "[^/]+") + ")", template)
    return re.compile(pattern)


_COMPILED = [(method, template, _compile(template)) for method, template in ROUTES]


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class PullRequest:
    number: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    state: str = "open"
    merged: bool = False


@dataclass
class CheckRun:
    id: int
    name: str
    status: str = "queued"
    conclusion: str | None = None


@dataclass
class FakeGitHub:
    owner: str = "acme"
    repo: str = "platform"
    token: str = field(default_factory=lambda: "ghp_" + secrets.token_hex(16))
    app_id: int = 4242
    installation_id: int = 77
    app_public_key: str | None = None
    url: str = ""
    # commit sha -> {path: bytes}; branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    checks: dict[str, list[CheckRun]] = field(default_factory=dict)
    teams: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    installation_tokens: set[str] = field(default_factory=set)
    # An outage: every request answered 503, as GitHub does when it is down.
    down: bool = False
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what tests set up and look at --

    def commit(self, branch: str, files: dict[str, str], parent: str | None = None) -> str:
        base = dict(self.commits.get(parent or self.branches.get(branch, ""), {}))
        base.update({p: t.encode() for p, t in files.items()})
        sha = hashlib.sha1(json.dumps(sorted((p, blob_sha(b)) for p, b in base.items()))
                           .encode() + secrets.token_bytes(4)).hexdigest()
        self.commits[sha] = base
        self.branches[branch] = sha
        return sha

    def file(self, branch: str, path: str) -> str:
        return self.commits[self.branches[branch]][path].decode()

    def set_check(self, number: int, status: str, conclusion: str | None = None) -> None:
        for run in self.checks[self.pulls[number].head_sha]:
            run.status, run.conclusion = status, conclusion

    def merge(self, number: int) -> None:
        pull = self.pulls[number]
        self.branches[pull.base] = pull.head_sha
        pull.state, pull.merged = "closed", True

    # -- the API --

    def _repo_url(self) -> str:
        return f"{self.url}/repos/{self.owner}/{self.repo}"

    def _authorized(self, headers: dict[str, str], template: str) -> None:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if template.startswith("/app/"):
            if scheme.lower() != "bearer" or self.app_public_key is None:
                raise ApiError(401, "A JSON web token could not be decoded")
            try:
                claims = jwt.decode(credential, self.app_public_key, algorithms=["RS256"])
            except jwt.InvalidTokenError:
                raise ApiError(401, "A JSON web token could not be decoded") from None
            if str(claims.get("iss")) != str(self.app_id):
                raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
            return
        if scheme.lower() not in ("token", "bearer") or (
                credential != self.token and credential not in self.installation_tokens):
            raise ApiError(401, "Bad credentials")

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: Any) -> tuple[int, str, Any]:
        for m, template, pattern in _COMPILED:
            found = pattern.fullmatch(path)
            if m == method and found:
                params = {k: unquote(v) for k, v in found.groupdict().items()}
                self._authorized(headers, template)
                if body is not None:
                    schemas.check_request(template, method, body)
                with self._lock:
                    self.requests.append(f"{method} {path}")
                    status, answer = getattr(self, "_" + _name(method, template))(
                        params, query, body)
                return status, template, answer
        raise ApiError(404, "Not Found")

    def _own_repo(self, params: dict[str, str]) -> None:
        if (params["owner"], params["repo"]) != (self.owner, self.repo):
            raise ApiError(404, "Not Found")

    def _branch_commit(self, ref: str) -> str:
        sha = self.branches.get(ref.removeprefix("heads/").removeprefix("refs/heads/"))
        if sha is None:
            raise ApiError(404, "Not Found")
        return sha

    def _get_contents(self, p: dict[str, str], q: dict[str, list[str]], _b: Any
                      ) -> tuple[int, Any]:
        self._own_repo(p)
        files = self.commits[self._branch_commit((q.get("ref") or ["main"])[0])]
        data = files.get(p["path"])
        if data is None:
            raise ApiError(404, "Not Found")
        encoded = base64.encodebytes(data).decode()
        url = f"{self._repo_url()}/contents/{p['path']}"
        return 200, rest_component(
            "content-file", type="file", encoding="base64", size=len(data),
            name=p["path"].rsplit("/", 1)[-1], path=p["path"], content=encoded,
            sha=blob_sha(data), url=url, git_url=None, html_url=None, download_url=None,
            _links={"self": url, "git": None, "html": None})

    def _put_contents(self, p: dict[str, str], _q: dict[str, list[str]], b: Any
                      ) -> tuple[int, Any]:
        self._own_repo(p)
        branch = b.get("branch") or "main"
        current = self.commits[self._branch_commit(branch)].get(p["path"])
        if current is not None and b.get("sha") != blob_sha(current):
            raise ApiError(409, f"{p['path']} does not match {b.get('sha')}")
        data = base64.b64decode(b["content"])
        sha = self.commit(branch, {p["path"]: data.decode()})
        return 200, rest_component(
            "file-commit", content={"name": p["path"].rsplit("/", 1)[-1], "path": p["path"],
                                    "sha": blob_sha(data), "size": len(data)},
            commit={"sha": sha, "message": b["message"]})

    def _get_ref(self, p: dict[str, str], _q: dict[str, list[str]], _b: Any
                 ) -> tuple[int, Any]:
        self._own_repo(p)
        sha = self._branch_commit(p["ref"])
        return 200, self._ref(p["ref"].removeprefix("heads/"), sha)

    def _ref(self, branch: str, sha: str) -> dict[str, Any]:
        return rest_component("git-ref", ref=f"refs/heads/{branch}", node_id="REF_" + sha[:8],
                              url=f"{self._repo_url()}/git/refs/heads/{branch}",
                              object={"type": "commit", "sha": sha,
                                      "url": f"{self._repo_url()}/git/commits/{sha}"})

    def _post_refs(self, p: dict[str, str], _q: dict[str, list[str]], b: Any
                   ) -> tuple[int, Any]:
        self._own_repo(p)
        branch = str(b["ref"]).removeprefix("refs/heads/")
        if branch in self.branches:
            raise ApiError(422, "Reference already exists")
        if b["sha"] not in self.commits:
            raise ApiError(422, "Object does not exist")
        self.branches[branch] = b["sha"]
        return 201, self._ref(branch, b["sha"])

    def _pull(self, pull: PullRequest) -> dict[str, Any]:
        html = f"https://github.com/{self.owner}/{self.repo}/pull/{pull.number}"
        side = {"label": f"{self.owner}:x", "ref": "x", "sha": "x",
                "user": rest_component("simple-user", login=self.owner),
                "repo": rest_component("repository", name=self.repo,
                                       full_name=f"{self.owner}/{self.repo}",
                                       default_branch="main")}
        return rest_component(
            "pull-request", number=pull.number, title=pull.title, body=pull.body,
            state=pull.state, merged=pull.merged, mergeable=not pull.merged,
            html_url=html, url=f"{self._repo_url()}/pulls/{pull.number}",
            head={**side, "ref": pull.head, "sha": pull.head_sha},
            base={**side, "ref": pull.base, "sha": self.branches[pull.base]})

    def _post_pulls(self, p: dict[str, str], _q: dict[str, list[str]], b: Any
                    ) -> tuple[int, Any]:
        self._own_repo(p)
        head = self._branch_commit(b["head"])
        self._branch_commit(b["base"])
        number = len(self.pulls) + 1
        pull = PullRequest(number, b["title"], b.get("body") or "", b["head"], b["base"], head)
        self.pulls[number] = pull
        # The repository's CI: one check run, queued until the test moves it.
        self.checks[head] = [CheckRun(next(self._ids), "ci / build")]
        return 201, self._pull(pull)

    def _get_pull(self, p: dict[str, str], _q: dict[str, list[str]], _b: Any
                  ) -> tuple[int, Any]:
        self._own_repo(p)
        pull = self.pulls.get(int(p["pull_number"])) if p["pull_number"].isdigit() else None
        if pull is None:
            raise ApiError(404, "Not Found")
        return 200, self._pull(pull)

    def _get_check_runs(self, p: dict[str, str], _q: dict[str, list[str]], _b: Any
                        ) -> tuple[int, Any]:
        self._own_repo(p)
        runs = [rest_component(
            "check-run", id=run.id, name=run.name, head_sha=p["ref"], status=run.status,
            conclusion=run.conclusion, html_url=f"https://github.com/{self.owner}/{self.repo}"
            f"/runs/{run.id}", url=f"{self._repo_url()}/check-runs/{run.id}",
            check_suite=None, app=None, details_url=None, external_id=None,
            started_at=None, completed_at=None,
            output={"title": None, "summary": None, "text": None, "annotations_count": 0,
                    "annotations_url": f"{self._repo_url()}/check-runs/{run.id}/annotations"})
            for run in self.checks.get(p["ref"], [])]
        return 200, {"total_count": len(runs), "check_runs": runs}

    def _post_access_tokens(self, p: dict[str, str], _q: dict[str, list[str]], _b: Any
                            ) -> tuple[int, Any]:
        if p["installation_id"] != str(self.installation_id):
            raise ApiError(404, "Not Found")
        token = "ghs_" + secrets.token_hex(16)
        self.installation_tokens.add(token)
        return 201, rest_component("installation-token", token=token,
                                   expires_at="2099-01-01T00:00:00Z")

    def _get_membership(self, p: dict[str, str], _q: dict[str, list[str]], _b: Any
                        ) -> tuple[int, Any]:
        if p["username"] not in self.teams.get((p["org"], p["team_slug"]), set()):
            raise ApiError(404, "Not Found")
        return 200, rest_component(
            "team-membership", role="member", state="active",
            url=f"{self.url}/teams/1/memberships/{p['username']}")


def _name(method: str, template: str) -> str:
    return {"/repos/{owner}/{repo}/contents/{path}": f"{method.lower()}_contents",
            "/repos/{owner}/{repo}/git/ref/{ref}": "get_ref",
            "/repos/{owner}/{repo}/git/refs": "post_refs",
            "/repos/{owner}/{repo}/pulls": "post_pulls",
            "/repos/{owner}/{repo}/pulls/{pull_number}": "get_pull",
            "/repos/{owner}/{repo}/commits/{ref}/check-runs": "get_check_runs",
            "/app/installations/{installation_id}/access_tokens": "post_access_tokens",
            "/orgs/{org}/teams/{team_slug}/memberships/{username}": "get_membership",
            }[template]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if fake.down:
            self._send(503, {"message": "Service Unavailable"})
            return
        try:
            body = json.loads(raw) if raw else None
            status, template, answer = fake.handle(method, parts.path, parse_qs(parts.query),
                                                   headers, body)
            schemas.check_response(template, method, status, answer)
        except ApiError as e:
            status, answer = e.status, {"message": e.message,
                                        "documentation_url": "https://docs.github.com/rest"}
        except Exception as e:  # a fault of the fake or a mismatch: fail the test, loudly
            fake.mismatches.append(f"{method} {parts.path}: {e}")
            status, answer = 500, {"message": f"fake GitHub: {e}"}
        self._send(status, answer)

    def _send(self, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGitHub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def running(fake: FakeGitHub) -> Iterator[FakeGitHub]:
    with serving(_Server(fake)) as port:
        fake.url = f"http://127.0.0.1:{port}"
        yield fake
