"""A stand-in for the parts of GitLab's REST API (v4) a merge request takes, answering as
GitLab documents them: a project by path, a repository file, a branch, a commit with file
actions (refused when ``last_commit_id`` is stale), a merge request with its head pipeline.
``PRIVATE-TOKEN`` must match."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.github.threads import serving

PROJECT_ID = 17


@dataclass
class FakeGitLab:
    token: str
    path: str = "acme/platform"
    url: str = ""
    branches: dict[str, str] = field(default_factory=dict)     # branch -> commit id
    commits: dict[str, dict[str, str]] = field(default_factory=dict)
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)

    def commit(self, branch: str, files: dict[str, str]) -> str:
        tree = {**self.commits.get(self.branches.get(branch, ""), {}), **files}
        sha = hashlib.sha1(json.dumps([branch, sorted(tree.items()), len(self.commits)])
                           .encode()).hexdigest()
        self.commits[sha] = tree
        self.branches[branch] = sha
        return sha

    def file(self, branch: str, path: str) -> str:
        return self.commits[self.branches[branch]][path]

    def _project(self) -> dict[str, Any]:
        return {"id": PROJECT_ID, "path_with_namespace": self.path, "name": "platform",
                "default_branch": "main", "web_url": f"https://gitlab.example/{self.path}"}

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any]:
        project = f"/api/v4/projects/{PROJECT_ID}"
        if method == "GET" and path in (f"/api/v4/projects/{self.path}",
                                        f"/api/v4/projects/{PROJECT_ID}"):
            return 200, self._project()
        m = re.fullmatch(rf"{project}/repository/files/(.+)", path)
        if method == "GET" and m:
            ref = (query.get("ref") or ["main"])[0]
            name = unquote(m.group(1))
            tree = self.commits.get(self.branches.get(ref, ""), {})
            if name not in tree:
                return 404, {"message": "404 File Not Found"}
            data = tree[name].encode()
            return 200, {"file_name": name.rsplit("/", 1)[-1], "file_path": name,
                         "size": len(data), "encoding": "base64", "ref": ref,
                         "content": base64.b64encode(data).decode(),
                         "blob_id": hashlib.sha1(data).hexdigest(),
                         "commit_id": self.branches[ref], "last_commit_id": self.branches[ref]}
        if method == "POST" and path == f"{project}/repository/branches":
            if body["branch"] in self.branches:
                return 400, {"message": "Branch already exists"}
            self.branches[body["branch"]] = self.branches[body["ref"]]
            return 201, {"name": body["branch"], "commit": {"id": self.branches[body["ref"]]}}
        if method == "POST" and path == f"{project}/repository/commits":
            branch = body["branch"]
            for action in body["actions"]:
                if action.get("last_commit_id") not in (None, self.branches[branch]):
                    return 400, {"message": "A file with this name has been changed"}
            sha = self.commit(branch, {a["file_path"]: a["content"] for a in body["actions"]})
            return 201, {"id": sha, "short_id": sha[:8], "title": body["commit_message"]}
        if method == "POST" and path == f"{project}/merge_requests":
            iid = len(self.merge_requests) + 1
            mr = {"id": 500 + iid, "iid": iid, "project_id": PROJECT_ID, "state": "opened",
                  "title": body["title"], "description": body["description"],
                  "source_branch": body["source_branch"],
                  "target_branch": body["target_branch"],
                  "web_url": f"https://gitlab.example/{self.path}/-/merge_requests/{iid}",
                  "detailed_merge_status": "checking", "head_pipeline": None}
            self.merge_requests[iid] = mr
            return 201, mr
        m = re.fullmatch(rf"{project}/merge_requests/(\d+)", path)
        if method == "GET" and m and int(m.group(1)) in self.merge_requests:
            return 200, self.merge_requests[int(m.group(1))]
        return 404, {"message": "404 Not Found"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        if self.headers.get("private-token") != fake.token:
            status, answer = 401, {"message": "401 Unauthorized"}
        else:
            status, answer = fake.handle(self.command, unquote(parts.path),
                                         parse_qs(parts.query),
                                         json.loads(raw) if raw else None)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGitLab) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def running(fake: FakeGitLab) -> Iterator[FakeGitLab]:
    with serving(_Server(fake)) as port:
        fake.url = f"http://127.0.0.1:{port}"
        yield fake
