"""The operator plane's JSON API under ``/_api/v1/``: every route with the resource and
action it needs, a thin handler over :class:`Operations`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.auth.authorize import ServerAction
from flywheel.auth.principal import ANONYMOUS
from flywheel.auth.sessions import COOKIE
from flywheel.errors import FlywheelError, Invalid, TooLarge, Unauthenticated
from flywheel.operator.webhooks import MAX_DELIVERY_BYTES
from flywheel.server.access import Endpoint
from flywheel.server.api import operator_models as m
from flywheel.server.api.common import json_response, read_json, route
from flywheel.server.api.operator_access import (
    Caller,
    OperatorAccess,
    protect,
    refusal_outcome,
    secure,
)
from flywheel.server.api.operator_ops import Operations
from flywheel.server.blocking import Offload

VIEW, OPERATE, ADMIN = ServerAction.VIEW, ServerAction.OPERATE, ServerAction.ADMINISTER
P = "/_api/v1"

OVERVIEW = Endpoint(("GET",), f"{P}/overview", "server", VIEW, "api-overview")
FLEET = Endpoint(("GET",), f"{P}/fleet", "fleet", VIEW, "api-fleet")
DRIFT = Endpoint(("GET",), f"{P}/fleet/drift", "fleet", VIEW, "api-fleet")
RUNNER_DELETE = Endpoint(("DELETE",), f"{P}/fleet/runners/{{namespace}}/{{name}}", "fleet", OPERATE,
                         "api-fleet")
LISTENER_RESTART = Endpoint(("POST",), f"{P}/fleet/scale-sets/{{namespace}}/{{name}}/"
                            "restart-listener", "fleet", OPERATE, "api-fleet")
POOL_PREVIEW = Endpoint(("POST",), f"{P}/fleet/pools/{{pool}}/preview", "fleet", OPERATE,
                        "api-fleet")
POOL_EDIT = Endpoint(("POST",), f"{P}/fleet/pools/{{pool}}/edit", "fleet", OPERATE, "api-fleet")
POOL_PAUSE = Endpoint(("POST",), f"{P}/fleet/pools/{{pool}}/pause", "fleet", OPERATE, "api-fleet")
POOL_RESUME = Endpoint(("POST",), f"{P}/fleet/pools/{{pool}}/resume", "fleet", OPERATE, "api-fleet")
CHANGES = Endpoint(("GET",), f"{P}/changes", "fleet", VIEW, "api-changes")
CHANGE = Endpoint(("GET",), f"{P}/changes/{{id}}", "fleet", VIEW, "api-changes")
CACHE_FIGURES = Endpoint(("GET",), f"{P}/cache-figures", "server", VIEW, "api-cache-figures")
CACHE_DETAIL = Endpoint(("GET",), f"{P}/cache-figures/{{cache}}", "server", VIEW,
                        "api-cache-figures")
# The route needs the viewer role, and the cache's own pull right is checked on top.
INSPECT = Endpoint(("GET",), f"{P}/cache-figures/{{cache}}/inspect", "server", VIEW,
                   "api-cache-figures")
AUDIT = Endpoint(("GET",), f"{P}/audit", "audit", VIEW, "api-audit")
WHOAMI = Endpoint(("GET",), f"{P}/whoami", "account", VIEW, "api-account")
SESSIONS = Endpoint(("GET",), f"{P}/sessions", "account", VIEW, "api-account")
SESSION_REVOKE = Endpoint(("DELETE",), f"{P}/sessions/{{id}}", "account", OPERATE, "api-account")
PASSKEYS = Endpoint(("GET",), f"{P}/passkeys", "account", VIEW, "api-account")
PASSKEY_OPTIONS = Endpoint(("POST",), f"{P}/passkeys/options", "account", OPERATE, "api-account")
PASSKEY_REGISTER = Endpoint(("POST",), f"{P}/passkeys", "account", OPERATE, "api-account")
PASSKEY_RENAME = Endpoint(("PATCH",), f"{P}/passkeys/{{id}}", "account", OPERATE, "api-account")
PASSKEY_REMOVE = Endpoint(("DELETE",), f"{P}/passkeys/{{id}}", "account", OPERATE, "api-account")
SIGNOUT = Endpoint(("POST",), f"{P}/signout", "account", OPERATE, "api-signin")
# Signing in is what makes a caller known, so it cannot need to be known first.
SIGNIN = Endpoint(("POST",), f"{P}/signin", "none", None, "api-signin")
SIGNIN_OPTIONS = Endpoint(("POST",), f"{P}/signin/passkey/options", "none", None, "api-signin")
SIGNIN_PASSKEY = Endpoint(("POST",), f"{P}/signin/passkey", "none", None, "api-signin")
# Checked by its signature (X-Hub-Signature-256), not by who sends it.
WEBHOOK = Endpoint(("POST",), f"{P}/webhooks/github", "none", None, "api-webhooks")

ENDPOINTS = (OVERVIEW, FLEET, DRIFT, RUNNER_DELETE, LISTENER_RESTART, POOL_PREVIEW, POOL_EDIT,
             POOL_PAUSE, POOL_RESUME, CHANGES, CHANGE, CACHE_FIGURES, CACHE_DETAIL, INSPECT,
             AUDIT, WHOAMI, SESSIONS, SESSION_REVOKE, PASSKEYS, PASSKEY_OPTIONS,
             PASSKEY_REGISTER, PASSKEY_RENAME, PASSKEY_REMOVE, SIGNOUT, SIGNIN, SIGNIN_OPTIONS,
             SIGNIN_PASSKEY, WEBHOOK)

Handler = Callable[[Request, Caller], Awaitable[Response]]


def session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", httponly=True,
                        secure=secure(request), samesite="lax")


def api_route(access: OperatorAccess, endpoint: Endpoint, handler: Handler) -> Route:
    """Identify, authorize for the declared resource and action, check CSRF; a refused or
    failed state-changing request is audited too."""

    async def wrapped(request: Request) -> Response:
        caller = Caller(ANONYMOUS, request.client.host if request.client else "unknown", None)
        try:
            caller = await access.caller(request)
            access.authorize(caller, endpoint)
            access.check_csrf(request, caller, None)
            return protect(await handler(request, caller))
        except FlywheelError as e:
            if request.method != "GET" and endpoint.resource != "none":
                await access.audit(caller, f"{endpoint.label}.{request.method.lower()}",
                                   request.url.path[:200], outcome=refusal_outcome(e),
                                   detail={"error": e.message[:300]})
            raise

    return route(endpoint, wrapped)


def _int(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 18:
        raise Invalid(f"{what} must be a whole number")
    return int(text)


def _json(model: BaseModel, status: int = 200) -> Response:
    return json_response(model, status)


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


class OperatorApi:
    def __init__(self, ops: Operations, access: OperatorAccess, offload: Offload) -> None:
        self.ops = ops
        self.access = access
        self.offload = offload

    async def overview(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.overview(c))

    async def fleet(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.fleet(c))

    async def drift(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.drift(c))

    async def delete_runner(self, r: Request, c: Caller) -> Response:
        return _json(await self.ops.delete_runner(c, r.path_params["namespace"],
                                                  r.path_params["name"]))

    async def restart_listener(self, r: Request, c: Caller) -> Response:
        return _json(await self.ops.restart_listener(c, r.path_params["namespace"],
                                                     r.path_params["name"]))

    async def preview(self, r: Request, c: Caller) -> Response:
        edit = await read_json(r, m.PoolEdit)
        return _json(await self.ops.preview(c, "edit", r.path_params["pool"], edit))

    def _change(self, kind: str) -> Handler:
        async def handler(r: Request, c: Caller) -> Response:
            edit = await read_json(r, m.PoolEdit) if kind == "edit" else None
            return _json(await self.ops.submit(c, kind, r.path_params["pool"], edit), 201)
        return handler

    async def changes(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.changes(c))

    async def change(self, r: Request, c: Caller) -> Response:
        change_id = _int(r.path_params["id"], "the change id")
        assert change_id is not None
        return _json(await self.ops.change(c, change_id))

    async def cache_figures(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.caches(c))

    async def cache_detail(self, r: Request, c: Caller) -> Response:
        return _json(await self.ops.cache(c, r.path_params["cache"]))

    async def inspect(self, r: Request, c: Caller) -> Response:
        return _json(await self.ops.inspect(c, r.path_params["cache"],
                                            r.query_params.get("q", "")))

    async def audit(self, r: Request, c: Caller) -> Response:
        q = r.query_params
        limit = _int(q.get("limit"), "limit") or 100
        return _json(await self.ops.audit_page(
            c, before=_int(q.get("before"), "before"), actor=q.get("actor") or None,
            action=q.get("action") or None, limit=min(limit, 500)))

    async def whoami(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.whoami(c))

    async def sessions(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.sessions(c))

    async def revoke_session(self, r: Request, c: Caller) -> Response:
        await self.ops.revoke_session(c, r.path_params["id"])
        return Response(status_code=204)

    async def passkeys(self, _r: Request, c: Caller) -> Response:
        return _json(await self.ops.passkeys(c))

    async def passkey_options(self, _r: Request, c: Caller) -> Response:
        return Response(_dumps(await self.ops.passkey_options(c)),
                        media_type="application/json")

    async def register_passkey(self, r: Request, c: Caller) -> Response:
        return _json(await self.ops.register_passkey(
            c, await read_json(r, m.PasskeyRegistration)), 201)

    async def rename_passkey(self, r: Request, c: Caller) -> Response:
        body = await read_json(r, m.PasskeyRename)
        await self.ops.rename_passkey(c, r.path_params["id"], body.name)
        return Response(status_code=204)

    async def remove_passkey(self, r: Request, c: Caller) -> Response:
        await self.ops.remove_passkey(c, r.path_params["id"])
        return Response(status_code=204)

    async def signin(self, r: Request, c: Caller) -> Response:
        identity = c.principal.identity
        if identity is None or c.principal.via not in ("tailnet", "cert"):
            raise Unauthenticated("nothing identifies you: sign in with a passkey, or come "
                                  "through the tailnet or with a client certificate")
        cookie, _, signed = await self.ops.begin_session(c, identity, c.principal.via,
                                                         r.headers.get("user-agent", ""))
        response = _json(signed, 201)
        session_cookie(response, r, cookie, self.ops.services.settings.auth.session_lifetime)
        return response

    async def signin_options(self, _r: Request, _c: Caller) -> Response:
        return Response(_dumps(await self.ops.signin_options()), media_type="application/json")

    async def signin_passkey(self, r: Request, c: Caller) -> Response:
        cookie, _, signed = await self.ops.signin_passkey(
            c, await read_json(r, m.PasskeyLogin), r.headers.get("user-agent", ""))
        response = _json(signed, 201)
        session_cookie(response, r, cookie, self.ops.services.settings.auth.session_lifetime)
        return response

    async def signout(self, _r: Request, c: Caller) -> Response:
        await self.ops.signout(c)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def webhook(self, r: Request, _c: Caller) -> Response:
        body = b""
        async for chunk in r.stream():
            body += chunk
            if len(body) > MAX_DELIVERY_BYTES:
                raise TooLarge(f"a delivery may be at most {MAX_DELIVERY_BYTES} bytes")
        receiver = self.ops.plane.webhooks
        found = await self.offload.run(receiver.receive, r.headers.get("x-github-event"),
                                       r.headers.get("x-hub-signature-256"), body)
        return _json(m.Delivery(stored=found is not None, job_id=found.id if found else None,
                                pool=found.pool if found else None), 202 if found else 200)

    def routes(self) -> list[Route]:
        handlers: dict[Endpoint, Handler] = {
            OVERVIEW: self.overview, FLEET: self.fleet, DRIFT: self.drift,
            RUNNER_DELETE: self.delete_runner, LISTENER_RESTART: self.restart_listener,
            POOL_PREVIEW: self.preview, POOL_EDIT: self._change("edit"),
            POOL_PAUSE: self._change("pause"), POOL_RESUME: self._change("resume"),
            CHANGES: self.changes, CHANGE: self.change, CACHE_FIGURES: self.cache_figures,
            CACHE_DETAIL: self.cache_detail, INSPECT: self.inspect,
            AUDIT: self.audit, WHOAMI: self.whoami, SESSIONS: self.sessions,
            SESSION_REVOKE: self.revoke_session, PASSKEYS: self.passkeys,
            PASSKEY_OPTIONS: self.passkey_options, PASSKEY_REGISTER: self.register_passkey,
            PASSKEY_RENAME: self.rename_passkey, PASSKEY_REMOVE: self.remove_passkey,
            SIGNOUT: self.signout, SIGNIN: self.signin, SIGNIN_OPTIONS: self.signin_options,
            SIGNIN_PASSKEY: self.signin_passkey, WEBHOOK: self.webhook}
        return [api_route(self.access, ep, handlers[ep]) for ep in ENDPOINTS]

