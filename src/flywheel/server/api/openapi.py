"""``GET /_api/v1/openapi.json``: the OpenAPI document of every ``/_api/v1`` route, generated
from the route table (methods, paths, the permission each declares) and the pydantic wire
models each takes and answers with. A route of the table without its entry here fails the
test that compares the two, so the document cannot fall behind."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel import __version__
from flywheel.api import cache_config, objects, pins, state, tokens, upload
from flywheel.api.errors import ErrorBody
from flywheel.server.access import Endpoint
from flywheel.server.api import operator_models as m
from flywheel.server.api.common import route

PREFIX = "/_api/v1/"
OPENAPI = Endpoint(("GET",), "/_api/v1/openapi.json", "none", None, "api-openapi")
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Wire:
    summary: str
    response: type[BaseModel] | None = None   # None: no JSON body
    status: int = 200
    request: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    # Bodies that are not JSON (a NAR, state content): their media type.
    raw_request: str | None = None
    raw_response: str | None = None


OPTIONS = "WebAuthn options as the browser's navigator.credentials call takes them"
WIRES: dict[tuple[str, str], Wire] = {
    ("POST", "/_api/v1/get-missing-paths"): Wire(
        "Attic: which of these store paths the cache lacks", upload.GetMissingPathsResponse,
        request=upload.GetMissingPathsRequest),
    ("PUT", "/_api/v1/upload-path"): Wire(
        "Attic: upload one path (the NAR as the body, its info in X-Attic-Nar-Info)",
        upload.UploadPathResult, raw_request="application/octet-stream"),
    ("GET", "/_api/v1/cache-config/{cache}"): Wire("Attic: a cache's configuration",
                                                   cache_config.CacheConfig),
    ("POST", "/_api/v1/cache-config/{cache}"): Wire(
        "Attic: create a cache", None, request=cache_config.CreateCacheRequest),
    ("PATCH", "/_api/v1/cache-config/{cache}"): Wire(
        "Attic: configure a cache (keypair Generate rotates its key)", None,
        request=cache_config.ConfigureCacheRequest),
    ("DELETE", "/_api/v1/cache-config/{cache}"): Wire("Attic: destroy a cache"),
    ("GET", "/_api/v1/caches"): Wire("Caches the caller may read", cache_config.CacheList),
    ("GET", "/_api/v1/caches/{cache}/objects"): Wire(
        "A cache's store paths, paged", objects.ObjectPage, query=("after", "limit", "order")),
    ("DELETE", "/_api/v1/caches/{cache}/objects/{hash}"): Wire("Remove one path", status=204),
    ("POST", "/_api/v1/tokens"): Wire("Mint a token", tokens.MintTokenResponse, 201,
                                      tokens.MintTokenRequest),
    ("POST", "/_api/v1/tokens/revoke"): Wire("Revoke a token by id, or a subject's tokens",
                                             tokens.RevokeTokenResponse,
                                             request=tokens.RevokeTokenRequest),
    ("GET", "/_api/v1/tokens"): Wire("Tokens minted here (?sub= for one subject's)",
                                     tokens.TokenList, query=("sub",)),
    ("GET", "/_api/v1/state"): Wire("State workspaces the caller may read",
                                               state.StateWorkspaceList),
    ("GET", "/_api/v1/state/{workspace}"): Wire("One workspace",
                                                           state.StateWorkspace),
    ("GET", "/_api/v1/state/{workspace}/versions"): Wire(
        "A workspace's versions", state.StateHistory),
    ("GET", "/_api/v1/state/{workspace}/content"): Wire(
        "The state as stored (a version with ?version=)", query=("version",),
        raw_response="application/json"),
    ("POST", "/_api/v1/state/{workspace}/rollback"): Wire(
        "Make an older version current again", state.StateVersion, 201,
        state.RollbackRequest),
    ("POST", "/_api/v1/state/{workspace}/unlock"): Wire(
        "Force-unlock a workspace", state.UnlockResponse),
    ("GET", "/_api/v1/overview"): Wire("Pools, queue times, caches and alerts", m.Overview),
    ("GET", "/_api/v1/fleet"): Wire("Pools of the spec, scale sets and runners live",
                                    m.Fleet),
    ("GET", "/_api/v1/fleet/drift"): Wire("What applying the spec would change",
                                          m.Sourced[m.Drift]),
    ("DELETE", "/_api/v1/fleet/runners/{namespace}/{name}"): Wire(
        "Delete an ephemeral runner of the fleet", m.Remedy),
    ("POST", "/_api/v1/fleet/scale-sets/{namespace}/{name}/restart-listener"): Wire(
        "Restart a scale set's listener", m.Remedy),
    ("POST", "/_api/v1/fleet/pools/{pool}/preview"): Wire(
        "The fleet.yaml diff an edit of the pool would make", m.Preview, request=m.PoolEdit),
    ("POST", "/_api/v1/fleet/pools/{pool}/edit"): Wire(
        "Edit the pool: a pull request, or applied directly", m.Change, 201, m.PoolEdit),
    ("POST", "/_api/v1/fleet/pools/{pool}/pause"): Wire("Pause the pool (maxRunners: 0)",
                                                        m.Change, 201),
    ("POST", "/_api/v1/fleet/pools/{pool}/resume"): Wire("Resume the pool", m.Change, 201),
    ("GET", "/_api/v1/changes"): Wire("Changes made from the operator plane", m.ChangeList),
    ("GET", "/_api/v1/changes/{id}"): Wire("A change, with its request's checks and state",
                                           m.ChangeDetail),
    ("GET", "/_api/v1/cache-figures"): Wire("Every cache's figures", m.CacheFiguresList),
    ("GET", "/_api/v1/cache-figures/{cache}"): Wire(
        "A cache's figures, traffic over time, pushers and configuration lines",
        m.CacheDetail),
    ("GET", "/_api/v1/cache-figures/{cache}/inspect"): Wire(
        "Look up a store path or digest in a cache (needs pull on it)", m.Inspected,
        query=("q",)),
    ("GET", "/_api/v1/audit"): Wire("The audit log, newest first", m.AuditPage,
                                    query=("before", "actor", "action", "limit")),
    ("GET", "/_api/v1/whoami"): Wire("Who the caller is, and how it was identified",
                                     m.WhoAmI),
    ("GET", "/_api/v1/sessions"): Wire("The caller's sessions", m.SessionList),
    ("DELETE", "/_api/v1/sessions/{id}"): Wire("End one of the caller's sessions", status=204),
    ("GET", "/_api/v1/passkeys"): Wire("The caller's passkeys", m.PasskeyList),
    ("POST", "/_api/v1/passkeys/options"): Wire(f"Begin registering a passkey: {OPTIONS}",
                                                raw_response="application/json"),
    ("POST", "/_api/v1/passkeys"): Wire("Register a passkey for the caller", m.PasskeyInfo,
                                        201, m.PasskeyRegistration),
    ("PATCH", "/_api/v1/passkeys/{id}"): Wire("Rename a passkey", status=204,
                                              request=m.PasskeyRename),
    ("DELETE", "/_api/v1/passkeys/{id}"): Wire("Remove a passkey", status=204),
    ("POST", "/_api/v1/signout"): Wire("End the current session", status=204),
    ("POST", "/_api/v1/signin"): Wire("Begin a session as the trusted proxy's identity",
                                      m.SignedIn, 201),
    ("POST", "/_api/v1/signin/passkey/options"): Wire(f"Begin signing in: {OPTIONS}",
                                                      raw_response="application/json"),
    ("POST", "/_api/v1/signin/passkey"): Wire("Sign in with a passkey alone", m.SignedIn, 201,
                                              m.PasskeyLogin),
    ("POST", "/_api/v1/webhooks/github"): Wire(
        "GitHub webhook deliveries (workflow_job), verified by X-Hub-Signature-256",
        m.Delivery, 202, raw_request="application/json"),
    ("GET", "/_api/v1/openapi.json"): Wire("This document", raw_response="application/json"),
    ("GET", "/_api/v1/caches/{cache}/pins"): Wire(
        "A cache's pins: store paths whose closure garbage collection keeps", pins.PinList),
    ("PUT", "/_api/v1/caches/{cache}/pins/{name}"): Wire(
        "Pin a store path of the cache under this name (moves an existing pin)",
        pins.PinModel, request=pins.PinRequest),
    ("DELETE", "/_api/v1/caches/{cache}/pins/{name}"): Wire("Remove a pin", None, 204),
}


def api_endpoints(endpoints: tuple[Endpoint, ...]) -> list[tuple[str, Endpoint]]:
    return [(method, ep) for ep in endpoints if ep.path.startswith(PREFIX)
            for method in ep.methods]


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def document(endpoints: tuple[Endpoint, ...], server_url: str) -> dict[str, Any]:
    wires = [(method, ep, WIRES[method, ep.path]) for method, ep in api_endpoints(endpoints)]
    models = {w.request for _, _, w in wires if w.request} | \
        {w.response for _, _, w in wires if w.response} | {ErrorBody}
    keyed, definitions = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda c: c.__name__)],
        ref_template="#/components/schemas/{model}")
    refs = {model: schema for (model, _mode), schema in keyed.items()}
    error = _content(refs[ErrorBody])
    paths: dict[str, dict[str, Any]] = {}
    for method, ep, wire in wires:
        op: dict[str, Any] = {
            "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', ep.path)}",
            "summary": wire.summary,
            "x-permission": {"resource": ep.resource, "action": ep.action,
                             "or": list(ep.or_actions)},
            "parameters": [{"name": p, "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}
                           for p in _PARAM.findall(ep.path)] +
                          [{"name": q, "in": "query", "required": False,
                            "schema": {"type": "string"}} for q in wire.query],
            "responses": {str(code): {"description": text, "content": error} for code, text in
                          ((400, "bad request"), (401, "authentication required"),
                           (403, "not allowed"), (404, "not found"), (409, "conflict"))}}
        if wire.request is not None:
            op["requestBody"] = {"required": True, "content": _content(refs[wire.request])}
        elif wire.raw_request is not None:
            op["requestBody"] = {"required": True, "content": {
                wire.raw_request: {"schema": {"type": "string", "format": "binary"}}}}
        ok: dict[str, Any] = {"description": "done"}
        if wire.response is not None:
            ok["content"] = _content(refs[wire.response])
        elif wire.raw_response is not None:
            ok["content"] = {wire.raw_response: {"schema": {}}}
        op["responses"][str(wire.status)] = ok
        if ep.resource == "none":
            op["security"] = []
        paths.setdefault(ep.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "GloriousFlywheel", "version": __version__},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "netrc": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "flywheel_session"}}},
        "security": [{"token": []}, {"netrc": []}, {"session": []}],
    }


def openapi_route(endpoints: tuple[Endpoint, ...], server_url: str) -> Route:
    body = json.dumps(document(endpoints, server_url)).encode()

    async def serve(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    return route(OPENAPI, serve)
