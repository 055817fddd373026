"""``/_state/<workspace>``: the OpenTofu/Terraform ``http`` backend protocol.

``GET`` the state (404 when none), ``POST`` a new one (``?ID=`` while holding the lock,
``?force=true`` with the admin permission), ``DELETE`` it; ``LOCK``/``UNLOCK`` on the address
or on ``.../lock``, where ``POST``/``DELETE`` also lock and unlock for clients configured
that way. A lock held by someone else answers 423 with the holder's lock info, which is what
the client prints."""

from __future__ import annotations

import base64
import binascii
import hashlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.app.services import Services
from flywheel.auth.authorize import WorkspaceAction, WorkspaceResource, may
from flywheel.auth.principal import Principal
from flywheel.errors import Invalid, Locked, TooLarge
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import error_response, route
from flywheel.server.blocking import Offload
from flywheel.state.lockinfo import MAX_LOCK_INFO_BYTES, check_lock_id, parse_lock_info

ADDRESS = "/_state/{workspace}"
LOCK_ADDRESS = "/_state/{workspace}/lock"
GET = Endpoint(("GET",), ADDRESS, "workspace", WorkspaceAction.READ, "state")
STORE = Endpoint(("POST",), ADDRESS, "workspace", WorkspaceAction.WRITE, "state")
PURGE = Endpoint(("DELETE",), ADDRESS, "workspace", WorkspaceAction.WRITE, "state")
LOCK = Endpoint(("LOCK",), ADDRESS, "workspace", WorkspaceAction.LOCK, "state-lock")
UNLOCK = Endpoint(("UNLOCK",), ADDRESS, "workspace", WorkspaceAction.LOCK, "state-lock")
LOCK_AT = Endpoint(("LOCK", "POST"), LOCK_ADDRESS, "workspace", WorkspaceAction.LOCK,
                   "state-lock")
UNLOCK_AT = Endpoint(("UNLOCK", "DELETE"), LOCK_ADDRESS, "workspace", WorkspaceAction.LOCK,
                     "state-lock")
ENDPOINTS = (GET, STORE, PURGE, LOCK, UNLOCK, LOCK_AT, UNLOCK_AT)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Invalid("malformed Content-Length")
        if int(declared) > limit:
            raise TooLarge(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_md5(request: Request, body: bytes) -> None:
    sent = request.headers.get("content-md5")
    if sent is None:
        return
    try:
        digest = base64.b64decode(sent, validate=True)
    except binascii.Error:
        raise Invalid("Content-MD5 is not base64") from None
    if digest != hashlib.md5(body).digest():
        raise Invalid("Content-MD5 does not match the body; nothing was stored")


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} must be true or false")
    return value in ("true", "1")


class StateHttp:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.states = services.state
        self.access = access
        self.offload = offload

    def _caller(self, request: Request, endpoint: Endpoint) -> tuple[Principal, str]:
        assert endpoint.action is not None
        return self.access.workspace(request.headers.get("authorization"),
                                     request.path_params["workspace"], endpoint.action)

    @staticmethod
    def _refusal(principal: Principal, name: str, error: Locked) -> Response:
        """The holder's lock info, which the client parses, for callers who may see it."""
        if may(principal, WorkspaceResource(name), WorkspaceAction.LOCK) or \
                may(principal, WorkspaceResource(name), WorkspaceAction.READ):
            return Response(error.holder, 423, media_type="application/json")
        return error_response(423, f"workspace {name!r} is locked")

    async def get_state(self, request: Request) -> Response:
        _principal, name = self._caller(request, GET)
        content = await self.offload.run(self.states.current, name)
        if content is None:
            return error_response(404, f"workspace {name!r} has no state")
        md5 = base64.b64encode(bytes.fromhex(content.version.md5)).decode()
        return Response(content.body, media_type="application/json",
                        headers={"content-md5": md5})

    async def store_state(self, request: Request) -> Response:
        principal, name = self._caller(request, STORE)
        force = _flag(request, "force")
        if force:
            self.access.authorize(principal, WorkspaceResource(name), WorkspaceAction.ADMIN)
        lock_id = request.query_params.get("ID")
        if lock_id is not None:
            check_lock_id(lock_id)
        body = await read_body(request, self.states.max_size)
        check_content_md5(request, body)
        try:
            await self.offload.run(lambda: self.states.write(
                name, body, by=str(principal.subject), lock_id=lock_id, force=force,
                note="forced" if force else None))
        except Locked as e:
            return self._refusal(principal, name, e)
        return Response(status_code=200)

    async def purge_state(self, request: Request) -> Response:
        principal, name = self._caller(request, PURGE)
        lock_id = request.query_params.get("ID")
        try:
            await self.offload.run(lambda: self.states.purge(name, lock_id=lock_id))
        except Locked as e:
            return self._refusal(principal, name, e)
        return Response(status_code=200)

    async def take_lock(self, request: Request) -> Response:
        principal, name = self._caller(request, LOCK)
        body = await read_body(request, MAX_LOCK_INFO_BYTES)
        check_content_md5(request, body)
        info = parse_lock_info(body)
        try:
            await self.offload.run(lambda: self.states.lock(name, info,
                                                           by=str(principal.subject)))
        except Locked as e:
            return self._refusal(principal, name, e)
        return Response(status_code=200)

    async def release_lock(self, request: Request) -> Response:
        """An empty body is a force-unlock (what ``force-unlock`` sends): whoever may lock
        may also release a lock left behind."""
        principal, name = self._caller(request, UNLOCK)
        body = await read_body(request, MAX_LOCK_INFO_BYTES)
        check_content_md5(request, body)
        lock_id = parse_lock_info(body).id if body.strip() else None
        try:
            await self.offload.run(self.states.unlock, name, lock_id)
        except Locked as e:
            return self._refusal(principal, name, e)
        return Response(status_code=200)

    def routes(self) -> list[Route]:
        return [route(GET, self.get_state), route(STORE, self.store_state),
                route(PURGE, self.purge_state), route(LOCK, self.take_lock),
                route(UNLOCK, self.release_lock), route(LOCK_AT, self.take_lock),
                route(UNLOCK_AT, self.release_lock)]
