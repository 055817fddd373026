"""The fake Kubernetes API server's HTTP side: TLS with its own CA, bearer-token auth, the
discovery documents, the REST paths (core and named groups, namespaced and cluster-scoped,
``/status`` subresources), and answers shaped like the real server's, failures as
``Status`` objects."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.kube.labels import selector
from tests.fakes.kube.store import ApiStatus, Obj, ResourceType, Store

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"}
VERBS = ["create", "delete", "get", "list", "patch", "update"]
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, store: Store) -> None:
        super().__init__(address, Handler)
        self.token = token
        self.store = store


class Handler(BaseHTTPRequestHandler):
    server: FakeApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing --

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        try:
            body = self._body()
            if self.headers.get("Authorization") != f"Bearer {self.server.token}":
                raise ApiStatus(401, "Unauthorized", "Unauthorized")
            code, answer = self._route(method, body)
            self._send(code, answer)
        except ApiStatus as e:
            self._send(e.code, e.body())

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- routing --

    def _route(self, method: str, body: bytes) -> tuple[int, Obj]:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        store = self.server.store
        if method == "GET" and parts in (["version"], ["api"], ["apis"]):
            return 200, self._discovery_root(parts[0])
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if not rest and method == "GET":
            return 200, self._resource_list(group, version)
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = store.find(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = store.find(group, version, rest[0])
        if rt is None or len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource and not rt.status:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        return self._resource(method, rt, namespace, name, subresource, query, body)

    def _discovery_root(self, what: str) -> Obj:
        if what == "version":
            return VERSION
        if what == "api":
            return {"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
                    "serverAddressByClientCIDRs": []}
        groups: dict[str, list[str]] = {}
        for t in self.server.store.types:
            if t.group:
                groups.setdefault(t.group, [])
                if t.version not in groups[t.group]:
                    groups[t.group].append(t.version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
            for g, vs in sorted(groups.items())]}

    def _resource_list(self, group: str, version: str) -> Obj:
        types = [t for t in self.server.store.types if (t.group, t.version) == (group, version)]
        if not types:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        resources: list[Obj] = []
        for t in types:
            resources.append({"name": t.plural, "singularName": t.kind.lower(),
                              "namespaced": t.namespaced, "kind": t.kind, "verbs": VERBS})
            if t.status:
                resources.append({"name": f"{t.plural}/status", "singularName": "",
                                  "namespaced": t.namespaced, "kind": t.kind,
                                  "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": types[0].api_version, "resources": resources}

    def _resource(self, method: str, rt: ResourceType, namespace: str, name: str | None,
                  subresource: str | None, query: dict[str, str], body: bytes
                  ) -> tuple[int, Obj]:
        store = self.server.store
        dry_run = query.get("dryRun") == "All"
        manager = query.get("fieldManager") or self.headers.get("User-Agent", "unknown"
                                                                ).split("/")[0]
        if name is None:
            if method == "GET":
                if "watch" in query:
                    raise ApiStatus(405, "MethodNotAllowed", "this fake does not watch")
                items, version = store.list(rt, namespace or None,
                                            selector(query.get("labelSelector", "")))
                return 200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                             "metadata": {"resourceVersion": version}, "items": items}
            if method == "POST":
                return 201, store.create(rt, namespace, self._json(body), manager, dry_run)
            raise ApiStatus(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if method == "GET":
            return 200, store.get(rt, namespace, name)
        if method == "DELETE":
            return 200, store.delete(rt, namespace, name, dry_run)
        if method == "PUT":
            new = self._json(body)
            return 200, store.update(rt, namespace, name, lambda _old: new, manager, dry_run,
                                     subresource)
        if method == "PATCH":
            return self._patch(rt, namespace, name, subresource, query, body, manager, dry_run)
        raise ApiStatus(405, "MethodNotAllowed", f"{method} is not allowed")

    def _patch(self, rt: ResourceType, namespace: str, name: str, subresource: str | None,
               query: dict[str, str], body: bytes, manager: str, dry_run: bool
               ) -> tuple[int, Obj]:
        store = self.server.store
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind == APPLY and subresource is None:
            if not query.get("fieldManager"):
                raise ApiStatus(400, "BadRequest", "PATCH, application/apply-patch+yaml: "
                                "fieldManager is required for apply requests")
            try:
                applied = yaml.safe_load(body)
            except yaml.YAMLError as e:
                raise ApiStatus(400, "BadRequest", f"error decoding YAML: {e}") from None
            if not isinstance(applied, dict):
                raise ApiStatus(400, "BadRequest", "the apply body is not an object")
            exists = True
            try:
                store.get(rt, namespace, name)
            except ApiStatus:
                exists = False
            result = store.apply(rt, namespace, name, applied, query["fieldManager"],
                                 query.get("force") == "true", dry_run)
            return (200 if exists else 201), result
        # Strategic merge differs from a merge patch only in how it merges lists, which no
        # caller of this fake relies on; custom resources refuse it, as on a real server.
        if kind == MERGE or (kind == STRATEGIC and not rt.custom):
            patch = self._json(body)
            return 200, store.update(rt, namespace, name, lambda old: merge_patch(old, patch),
                                     manager, dry_run, subresource)
        raise ApiStatus(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                        f"format - accepted media types include: {MERGE}, {APPLY}")

    @staticmethod
    def _json(body: bytes) -> Obj:
        try:
            value = json.loads(body or b"{}")
        except json.JSONDecodeError as e:
            raise ApiStatus(400, "BadRequest", f"error decoding JSON: {e}") from None
        if not isinstance(value, dict):
            raise ApiStatus(400, "BadRequest", "the body is not an object")
        return value


def serve(host: str, port: int, token: str, store: Store, cert: Path, key: Path
          ) -> FakeApiServer:
    server = FakeApiServer((host, port), token, store)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
