"""The operator dashboard under ``/_ui/``: server-rendered pages over the same operations as
the JSON API, readable without JavaScript, kept live by server-sent events. Every page and
form declares its resource and action in the route table like any other route; forms carry
the session's CSRF token; answers carry a strict Content-Security-Policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from flywheel.api.state import StateWorkspace
from flywheel.api.tokens import MintTokenRequest
from flywheel.auth import authorize as authz
from flywheel.auth.authorize import ServerAction
from flywheel.auth.principal import ANONYMOUS
from flywheel.auth.sessions import COOKIE
from flywheel.errors import FlywheelError, Forbidden, Invalid, NotFound, Unauthenticated
from flywheel.operator.sourced import Sourced, fetch
from flywheel.operator.templating import Templates
from flywheel.server import metrics, readiness
from flywheel.server.access import Endpoint
from flywheel.server.api import operator_models as m
from flywheel.server.api.operator import session_cookie
from flywheel.server.api.operator_access import (
    SAFE_METHODS,
    Caller,
    OperatorAccess,
    protect,
    refusal_outcome,
)
from flywheel.server.api.operator_ops import Operations
from flywheel.server.blocking import Offload
from flywheel.server.errors import answer
from flywheel.state.views import workspace_view

log = logging.getLogger(__name__)

VIEW, OPERATE, ADMIN = ServerAction.VIEW, ServerAction.OPERATE, ServerAction.ADMINISTER
U = "/_ui"
GET, BOTH = ("GET",), ("GET", "POST")

ROOT = Endpoint(GET, "/", "none", None, "ui")   # a redirect to the overview
OVERVIEW = Endpoint(GET, f"{U}/", "server", VIEW, "ui")
FLEET = Endpoint(GET, f"{U}/fleet", "fleet", VIEW, "ui")
RUNNER_DELETE = Endpoint(BOTH, f"{U}/fleet/runners/{{namespace}}/{{name}}/delete", "fleet",
                         OPERATE, "ui")
LISTENER_RESTART = Endpoint(BOTH, f"{U}/fleet/scale-sets/{{namespace}}/{{name}}/"
                            "restart-listener", "fleet", OPERATE, "ui")
POOL_PAUSE = Endpoint(BOTH, f"{U}/fleet/pools/{{pool}}/pause", "fleet", OPERATE, "ui")
POOL_RESUME = Endpoint(BOTH, f"{U}/fleet/pools/{{pool}}/resume", "fleet", OPERATE, "ui")
CACHES = Endpoint(GET, f"{U}/caches", "server", VIEW, "ui")
CACHE = Endpoint(GET, f"{U}/caches/{{cache}}", "server", VIEW, "ui")
TOKENS_PAGE = Endpoint(BOTH, f"{U}/tokens", "tokens", ADMIN, "ui")
TOKEN_REVOKE = Endpoint(BOTH, f"{U}/tokens/{{id}}/revoke", "tokens", ADMIN, "ui")
STATE = Endpoint(GET, f"{U}/state", "server", VIEW, "ui")
STATE_UNLOCK = Endpoint(BOTH, f"{U}/state/{{workspace}}/unlock", "server", ADMIN, "ui")
CHANGES = Endpoint(GET, f"{U}/changes", "fleet", VIEW, "ui")
CHANGE_NEW = Endpoint(BOTH, f"{U}/changes/new", "fleet", OPERATE, "ui")
CHANGE = Endpoint(GET, f"{U}/changes/{{id}}", "fleet", VIEW, "ui")
AUDIT = Endpoint(GET, f"{U}/audit", "audit", VIEW, "ui")
SETTINGS = Endpoint(GET, f"{U}/settings", "account", VIEW, "ui")
SESSION_REVOKE = Endpoint(("POST",), f"{U}/settings/sessions/{{id}}/revoke", "account",
                          OPERATE, "ui")
PASSKEY_RENAME = Endpoint(("POST",), f"{U}/settings/passkeys/{{id}}/rename", "account",
                          OPERATE, "ui")
PASSKEY_REMOVE = Endpoint(("POST",), f"{U}/settings/passkeys/{{id}}/remove", "account",
                          OPERATE, "ui")
SIGNOUT = Endpoint(("POST",), f"{U}/signout", "account", OPERATE, "ui")
# Where an unidentified visitor is sent; static files hold nothing but our CSS and script.
SIGNIN = Endpoint(GET, f"{U}/signin", "none", None, "ui")
STATIC = Endpoint(GET, f"{U}/static/{{file}}", "none", None, "ui-static")
LIVE = Endpoint(GET, f"{U}/live/{{page:path}}", "server", VIEW, "ui-live")

ENDPOINTS = (ROOT, OVERVIEW, FLEET, RUNNER_DELETE, LISTENER_RESTART, POOL_PAUSE, POOL_RESUME,
             CACHES, CACHE, TOKENS_PAGE, TOKEN_REVOKE, STATE, STATE_UNLOCK, CHANGES,
             CHANGE_NEW, CHANGE, AUDIT, SETTINGS, SESSION_REVOKE, PASSKEY_RENAME,
             PASSKEY_REMOVE, SIGNOUT, SIGNIN, STATIC, LIVE)

NAV = ((f"{U}/", "Overview", "overview"), (f"{U}/fleet", "Fleet", "fleet"),
       (f"{U}/caches", "Caches", "caches"), (f"{U}/state", "State", "state"),
       (f"{U}/changes", "Changes", "changes"), (f"{U}/audit", "Audit", "audit"),
       (f"{U}/settings", "Settings", "settings"))
STATIC_TYPES = {"app.css": "text/css", "app.js": "text/javascript"}
# A live page re-renders this often, for at most this long per connection (the browser
# reconnects), so no stream holds a worker through a drain.
LIVE_EVERY = 5.0
LIVE_FOR = 60.0
MAX_FORM_FIELDS = 50

Page = Callable[[Request, Caller], Awaitable[Response]]


class Pages:
    def __init__(self, ops: Operations, access: OperatorAccess, offload: Offload) -> None:
        self.ops = ops
        self.access = access
        self.offload = offload
        self.templates = Templates()
        self._static = {name: (files("flywheel.operator") / "static" / name).read_bytes()
                        for name in STATIC_TYPES}

    # -- rendering --

    def render(self, caller: Caller, template: str, title: str, active: str = "",
               status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.render(template, title=title, principal=caller.principal,
                                     csrf=self.access.csrf_token(caller), nav=NAV,
                                     active=active, **context)
        return HTMLResponse(html, status)

    def fragment(self, template: str, **context: Any) -> str:
        return self.templates.render(template, **context)

    def error_page(self, caller: Caller, request: Request, status: int,
                   message: str) -> HTMLResponse:
        if status == 401:
            return self.render(caller, "signin.html", "Sign in", status=401, message=message,
                               next=request.url.path if request.method == "GET" else "/_ui/")
        return self.render(caller, "error.html", "Not done" if status < 500 else "Error",
                           status=status, message=message)

    # -- the wrapper every page goes through --

    def page(self, endpoint: Endpoint, handler: Page) -> Route:
        async def wrapped(request: Request) -> Response:
            caller = Caller(ANONYMOUS, request.client.host if request.client else "unknown",
                            None)
            cookie: str | None = None
            try:
                caller = await self.access.caller(request)
                caller, cookie = await self._signed_in(request, caller)
                self.access.authorize(caller, endpoint)
                if request.method not in SAFE_METHODS:
                    form = await self._form(request)
                    self.access.check_csrf(request, caller, str(form.get("csrf") or ""))
                response = await handler(request, caller)
            except Exception as e:
                status, message, _ = answer(e)
                if request.method not in SAFE_METHODS and endpoint.resource != "none":
                    await self._audit_refusal(caller, request, e)
                response = self.error_page(caller, request, status, message)
            if cookie is not None:
                session_cookie(response, request, cookie,
                               self.ops.services.settings.auth.session_lifetime)
            metrics.count(metrics.REQUESTS, endpoint.label,
                          metrics.method_label(request.method), str(response.status_code))
            return protect(response)

        return Route(endpoint.path, wrapped, methods=list(endpoint.methods))

    async def _audit_refusal(self, caller: Caller, request: Request, e: Exception) -> None:
        try:
            await self.access.audit(caller, "ui." + request.method.lower(),
                                    request.url.path[:200], outcome=refusal_outcome(e),
                                    detail={"error": str(e)[:300]})
        except FlywheelError:
            log.warning("could not audit a refused request to %s", request.url.path)

    async def _signed_in(self, request: Request, caller: Caller) -> tuple[Caller, str | None]:
        """Someone a trusted proxy or a client certificate identifies gets a session on
        their first page: that is signing in, and it gives their forms a CSRF token."""
        p = caller.principal
        if p.identity is None or p.via not in ("tailnet", "cert") or caller.session:
            return caller, None
        cookie, session, _ = await self.ops.begin_session(
            caller, p.identity, p.via, request.headers.get("user-agent", ""))
        principal = self.ops.services.auth.principal_for(p.identity, p.via, session.id_hash)
        return Caller(principal, caller.address, session), cookie

    @staticmethod
    async def _form(request: Request) -> FormData:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", "") \
                and "multipart/form-data" not in request.headers.get("content-type", ""):
            raise Invalid("send the page's form (application/x-www-form-urlencoded)")
        return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)

    # -- pages --

    async def root(self, _r: Request, _c: Caller) -> Response:
        return RedirectResponse(f"{U}/", 307)

    async def signin(self, r: Request, c: Caller) -> Response:
        if not c.principal.anonymous:
            return RedirectResponse(f"{U}/", 303)
        return self.render(c, "signin.html", "Sign in", next=f"{U}/", message=None)

    async def static(self, r: Request, _c: Caller) -> Response:
        name = r.path_params["file"]
        if name not in self._static:
            raise NotFound("no such file")
        return Response(self._static[name], media_type=STATIC_TYPES[name],
                        headers={"cache-control": "public, max-age=300"})

    async def overview(self, _r: Request, c: Caller) -> Response:
        return self.render(c, "overview.html", "Overview", "overview",
                           o=await self.ops.overview(c))

    def _can(self, c: Caller, resource: Any, action: str) -> bool:
        return authz.may(c.principal, resource, action)

    async def fleet(self, _r: Request, c: Caller) -> Response:
        return self.render(c, "fleet.html", "Fleet", "fleet", fleet=await self.ops.fleet(c),
                           can_operate=self._can(c, authz.FLEET, OPERATE))

    async def _confirm(self, r: Request, c: Caller, *, question: str, confirm: str,
                       back: str, title: str, diff: m.Preview | None = None) -> Response:
        return self.render(c, "confirm.html", title, "fleet", question=question,
                           confirm=confirm, action=r.url.path, back=back,
                           diff=diff.diff if diff else None,
                           diff_source=diff.source if diff else None)

    def _done(self, c: Caller, title: str, message: str, back: str, link: str | None = None,
              link_text: str | None = None, active: str = "fleet") -> Response:
        return self.render(c, "done.html", title, active, message=message, back=back,
                           link=link, link_text=link_text)

    async def runner_delete(self, r: Request, c: Caller) -> Response:
        ns, name = r.path_params["namespace"], r.path_params["name"]
        if r.method == "GET":
            return await self._confirm(r, c, title="Delete a runner",
                                       question=f"Delete runner {ns}/{name}? ARC starts a new "
                                       "one if the scale set needs it.",
                                       confirm="Delete the runner", back=f"{U}/fleet")
        done = await self.ops.delete_runner(c, ns, name)
        return self._done(c, "Runner deleted", done.message, f"{U}/fleet")

    async def listener_restart(self, r: Request, c: Caller) -> Response:
        ns, name = r.path_params["namespace"], r.path_params["name"]
        if r.method == "GET":
            return await self._confirm(r, c, title="Restart a listener",
                                       question=f"Restart the listener of scale set {ns}/"
                                       f"{name}? Jobs are not assigned while it restarts.",
                                       confirm="Restart the listener", back=f"{U}/fleet")
        done = await self.ops.restart_listener(c, ns, name)
        return self._done(c, "Listener restarted", done.message, f"{U}/fleet")

    def _pool_change(self, kind: str) -> Page:
        async def handler(r: Request, c: Caller) -> Response:
            pool = r.path_params["pool"]
            mode = self.ops.plane.fleet.mode
            if r.method == "GET":
                preview = await self.ops.preview(c, kind, pool, None)
                how = "as a pull request" if mode == "gitops" else "to the cluster now"
                return await self._confirm(
                    r, c, title=f"{kind.capitalize()} pool {pool}",
                    question=f"{kind.capitalize()} pool {pool} {how}? The spec changes so:",
                    confirm=f"{kind.capitalize()} {pool}", back=f"{U}/fleet", diff=preview)
            change = await self.ops.submit(c, kind, pool, None)
            return self._done(c, change.title, _change_message(change), f"{U}/fleet",
                              f"{U}/changes/{change.id}", "Follow the change")
        return handler

    async def caches(self, _r: Request, c: Caller) -> Response:
        return self.render(c, "caches.html", "Caches", "caches",
                           caches=await self.ops.caches(c),
                           can_admin=self._can(c, authz.TOKENS, ADMIN))

    async def cache(self, r: Request, c: Caller) -> Response:
        name = r.path_params["cache"]
        detail = await self.ops.cache(c, name)
        query = r.query_params.get("q")
        inspected, problem = None, None
        if query:
            try:
                inspected = await self.ops.inspect(c, name, query)
            except (Invalid, Forbidden, Unauthenticated) as e:
                problem = e.message
        return self.render(c, "cache.html", f"Cache {name}", "caches", d=detail, query=query,
                           inspected=inspected, inspect_error=problem)

    async def tokens(self, r: Request, c: Caller) -> Response:
        minted, sub, problem = None, None, None
        if r.method == "POST":
            form = await self._form(r)
            try:
                body = _mint_request(form)
                minted = await self.ops.mint(c, body)
                sub = body.sub
            except (ValidationError, Invalid) as e:
                problem = _problem(e)
        listed = await self.ops.tokens(c)
        response = self.render(c, "tokens.html", "Tokens", "caches", tokens=listed.tokens,
                               minted=minted, minted_sub=sub, message=problem,
                               status=201 if minted else 400 if problem else 200)
        return response

    async def token_revoke(self, r: Request, c: Caller) -> Response:
        token_id = r.path_params["id"]
        if r.method == "GET":
            return await self._confirm(r, c, title="Revoke a token",
                                       question=f"Revoke token {token_id}? Every replica "
                                       "refuses it from now on.", confirm="Revoke",
                                       back=f"{U}/tokens")
        await self.ops.revoke(c, token_id)
        return self._done(c, "Token revoked", f"Token {token_id} is revoked.", f"{U}/tokens",
                          active="caches")

    def _workspaces(self) -> list[StateWorkspace]:
        return [workspace_view(w) for w in self.ops.services.state.workspaces()]

    async def state(self, _r: Request, c: Caller) -> Response:
        found: Sourced[list[StateWorkspace]] = await self.offload.run(
            fetch, "the state backend (the metadata database)", self._workspaces)
        return self.render(c, "state.html", "State", "state", workspaces=found,
                           can_admin=self._can(c, authz.SERVER, ADMIN))

    async def state_unlock(self, r: Request, c: Caller) -> Response:
        name = r.path_params["workspace"]
        if r.method == "GET":
            return await self._confirm(r, c, title="Force-unlock",
                                       question=f"Force-unlock workspace {name}? Whoever holds "
                                       "the lock may then write over someone else's run.",
                                       confirm="Force-unlock", back=f"{U}/state")
        released = await self.offload.run(self.ops.services.state.unlock, name, None)
        if released is None:
            raise NotFound(f"workspace {name!r} is not locked")
        await self.access.audit(c, "state.force-unlock", name,
                                detail={"lock": released.id, "held_by": released.locked_by})
        return self._done(c, "Unlocked", f"Workspace {name} was locked by "
                          f"{released.locked_by}; it is unlocked now.", f"{U}/state",
                          active="state")

    async def changes(self, _r: Request, c: Caller) -> Response:
        listed, drift = await asyncio.gather(self.ops.changes(c), self.ops.drift(c))
        return self.render(c, "changes.html", "Changes", "changes", changes=listed.changes,
                           drift=drift)

    async def change(self, r: Request, c: Caller) -> Response:
        text = r.path_params["id"]
        if not text.isdigit() or len(text) > 9:
            raise NotFound(f"no change {text[:20]!r}")
        detail = await self.ops.change(c, int(text))
        return self.render(c, "change.html", f"Change {detail.change.id}", "changes",
                           detail=detail)

    async def change_new(self, r: Request, c: Caller) -> Response:
        fleet = await self.ops.fleet(c)
        name = r.query_params.get("pool")
        pools = fleet.pools.value or []
        pool = next((p for p in pools if p.name == name), None)
        if name and pool is None and fleet.pools.error is None:
            raise NotFound(f"the fleet spec has no pool {name[:60]!r}")
        context: dict[str, Any] = {"pools": fleet.pools, "pool": pool, "form": pool,
                                   "mode": fleet.mode, "diff": None, "message": None}
        if r.method == "POST" and pool is not None:
            form = await self._form(r)
            try:
                edit = _pool_edit(form)
                context["form"] = {**pool.model_dump(), **edit.model_dump(exclude_none=True)}
                if form.get("step") == "submit":
                    change = await self.ops.submit(c, "edit", pool.name, edit)
                    return self._done(c, change.title, _change_message(change),
                                      f"{U}/changes", f"{U}/changes/{change.id}",
                                      "Follow the change", active="changes")
                preview = await self.ops.preview(c, "edit", pool.name, edit)
                context.update(diff=preview.diff, diff_source=preview.source)
            except (ValidationError, Invalid) as e:
                context["message"] = _problem(e)
        title = f"Edit pool {pool.name}" if pool else "Edit a pool"
        return self.render(c, "change_new.html", title, "changes",
                           status=400 if context["message"] else 200, **context)

    async def audit(self, r: Request, c: Caller) -> Response:
        q = r.query_params
        before = q.get("before")
        page = await self.ops.audit_page(
            c, before=int(before) if before and before.isdigit() and len(before) < 18
            else None, actor=q.get("actor") or None, action=q.get("action") or None)
        return self.render(c, "audit.html", "Audit", "audit", page=page,
                           actor=q.get("actor"), action=q.get("action"))

    async def settings(self, _r: Request, c: Caller) -> Response:
        me = await self.ops.whoami(c)
        sessions = passkeys = None
        if c.principal.ambient:
            sessions = (await self.ops.sessions(c)).sessions
            passkeys = (await self.ops.passkeys(c)).passkeys
        return self.render(c, "settings.html", "Settings", "settings", me=me,
                           sessions=sessions, passkeys=passkeys)

    async def session_revoke(self, r: Request, c: Caller) -> Response:
        await self.ops.revoke_session(c, r.path_params["id"])
        return RedirectResponse(f"{U}/settings", 303)

    async def passkey_rename(self, r: Request, c: Caller) -> Response:
        form = await self._form(r)
        try:
            name = m.PasskeyRename(name=str(form.get("name") or "")).name
        except ValidationError as e:
            raise Invalid(_problem(e)) from None
        await self.ops.rename_passkey(c, r.path_params["id"], name)
        return RedirectResponse(f"{U}/settings", 303)

    async def passkey_remove(self, r: Request, c: Caller) -> Response:
        await self.ops.remove_passkey(c, r.path_params["id"])
        return RedirectResponse(f"{U}/settings", 303)

    async def signout(self, _r: Request, c: Caller) -> Response:
        await self.ops.signout(c)
        response = RedirectResponse(f"{U}/signin", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- live updates --

    async def live(self, r: Request, c: Caller) -> Response:
        page = r.path_params["page"]
        render = await self._live_renderer(c, page)

        async def events() -> AsyncIterator[str]:
            yield f"retry: {int(LIVE_EVERY * 1000)}\n\n"
            last = None
            deadline = time.monotonic() + LIVE_FOR
            # A stream ends when the worker drains too (at most LIVE_EVERY later), so an
            # open dashboard never holds a stopping server up; the browser reconnects to
            # another one.
            while time.monotonic() < deadline and not await r.is_disconnected() and \
                    readiness.not_ready_reason() != readiness.SHUTTING_DOWN:
                html = await render()
                if html != last:
                    last = html
                    yield "event: update\n" + "".join(f"data: {line}\n"
                                                      for line in html.splitlines()) + "\n"
                await asyncio.sleep(LIVE_EVERY)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def _live_renderer(self, c: Caller, page: str) -> Callable[[], Awaitable[str]]:
        if page == "overview":
            return lambda: self._render_overview(c)
        if page == "fleet":
            authz.authorize(c.principal, authz.FLEET, VIEW)

            async def fleet() -> str:
                return self.fragment("live/fleet.html", fleet=await self.ops.fleet(c),
                                     can_operate=self._can(c, authz.FLEET, OPERATE))
            return fleet
        if page == "caches":
            async def caches() -> str:
                return self.fragment("live/caches.html", caches=await self.ops.caches(c))
            return caches
        if page.startswith("caches/"):
            name = page.removeprefix("caches/")

            async def cache() -> str:
                return self.fragment("live/cache.html", d=await self.ops.cache(c, name))
            return cache
        raise NotFound(f"no live page {page[:60]!r}")

    async def _render_overview(self, c: Caller) -> str:
        return self.fragment("live/overview.html", o=await self.ops.overview(c))

    def routes(self) -> list[Route]:
        pages: dict[Endpoint, Page] = {
            ROOT: self.root, OVERVIEW: self.overview, FLEET: self.fleet,
            RUNNER_DELETE: self.runner_delete, LISTENER_RESTART: self.listener_restart,
            POOL_PAUSE: self._pool_change("pause"), POOL_RESUME: self._pool_change("resume"),
            CACHES: self.caches, CACHE: self.cache, TOKENS_PAGE: self.tokens,
            TOKEN_REVOKE: self.token_revoke, STATE: self.state, STATE_UNLOCK: self.state_unlock,
            CHANGES: self.changes, CHANGE_NEW: self.change_new, CHANGE: self.change,
            AUDIT: self.audit, SETTINGS: self.settings, SESSION_REVOKE: self.session_revoke,
            PASSKEY_RENAME: self.passkey_rename, PASSKEY_REMOVE: self.passkey_remove,
            SIGNOUT: self.signout, SIGNIN: self.signin, STATIC: self.static, LIVE: self.live}
        return [self.page(ep, pages[ep]) for ep in ENDPOINTS]


def _change_message(change: m.Change) -> str:
    if change.url:
        return f"Opened {change.forge} #{change.number}: {change.url}"
    return "Applied to the cluster and written to the fleet spec."


def _globs(form: FormData, field: str) -> list[str]:
    return [g.strip() for g in str(form.get(field) or "").split(",") if g.strip()]


def _mint_request(form: FormData) -> MintTokenRequest:
    """The token form's globs as the API's permission claim: push implies pull."""
    caches: dict[str, dict[str, int]] = {}
    for field, bits in (("pull", ("r",)), ("push", ("r", "w")), ("delete", ("r", "d"))):
        for glob in _globs(form, field):
            caches.setdefault(glob, {}).update(dict.fromkeys(bits, 1))
    return MintTokenRequest(sub=str(form.get("sub") or "").strip(),
                            validity=str(form.get("validity") or "30d").strip(),
                            caches=caches, admin=form.get("admin") == "1")


def _pool_edit(form: FormData) -> m.PoolEdit:
    values: dict[str, Any] = {}
    for field in ("min_runners", "max_runners", "image", "runner_group"):
        text = str(form.get(field) or "").strip()
        if text:
            values[field] = text
    return m.PoolEdit.model_validate(values)


def _problem(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return e.message if isinstance(e, FlywheelError) else str(e)
