"""A local stand-in for GitLab's Terraform state API, answering as GitLab documents it:
``GET /api/v4/projects/:id/terraform/state/:name`` gives the latest state's bytes (as
``application/octet-stream``), ``.../versions/:serial`` an older one, ``404`` with
``{"message":"404 Not Found"}`` when there is none, ``401`` with
``{"message":"401 Unauthorized"}`` without a valid ``PRIVATE-TOKEN``. A project is named by
its id or by its URL-encoded path."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_ROUTE = re.compile(r"/api/v4/projects/([^/]+)/terraform/state/([^/]+)(?:/versions/(\d+))?")


@dataclass
class FakeGitLab:
    token: str
    # (project id or path, state name) -> serial -> bytes
    states: dict[tuple[str, str], dict[int, bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def add(self, project: str, name: str, serial: int, body: bytes) -> None:
        self.states.setdefault((project, name), {})[serial] = body

    def answer(self, path: str, token: str | None) -> tuple[int, str, bytes]:
        self.requests.append(path)
        if token != self.token:
            return 401, "application/json", json.dumps({"message": "401 Unauthorized"}).encode()
        m = _ROUTE.fullmatch(path)
        versions = self.states.get((unquote(m.group(1)), unquote(m.group(2)))) if m else None
        if m is None or versions is None:
            return 404, "application/json", json.dumps({"message": "404 Not Found"}).encode()
        serial = int(m.group(3)) if m.group(3) is not None else max(versions)
        if serial not in versions:
            return 404, "application/json", json.dumps({"message": "404 Not Found"}).encode()
        return 200, "application/octet-stream", versions[serial]


@contextmanager
def serve_gitlab(token: str) -> Iterator[FakeGitLab]:
    gitlab = FakeGitLab(token)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = gitlab.answer(self.path,
                                                       self.headers.get("PRIVATE-TOKEN"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gitlab.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gitlab
    finally:
        server.shutdown()
        server.server_close()
