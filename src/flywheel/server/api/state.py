"""``/_api/v1/state/...``: the workspaces a caller may read, their history and content, and
for workspace admins a rollback and a force-unlock."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.state import RollbackRequest, StateHistory, StateWorkspaceList, UnlockResponse
from flywheel.app.services import Services
from flywheel.auth.authorize import WorkspaceAction, WorkspaceResource, may
from flywheel.errors import Invalid, Unauthenticated
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import json_response, read_json, route
from flywheel.server.blocking import Offload
from flywheel.state.views import lock_view, version_view, workspace_view

_BASE = "/_api/v1/state"
# Listing shows only the workspaces the caller may read.
LIST = Endpoint(("GET",), _BASE, "workspace", WorkspaceAction.READ, "api-state")
SHOW = Endpoint(("GET",), _BASE + "/{workspace}", "workspace", WorkspaceAction.READ,
                "api-state")
HISTORY = Endpoint(("GET",), _BASE + "/{workspace}/versions", "workspace",
                   WorkspaceAction.READ, "api-state")
CONTENT = Endpoint(("GET",), _BASE + "/{workspace}/content", "workspace",
                   WorkspaceAction.READ, "api-state")
ROLLBACK = Endpoint(("POST",), _BASE + "/{workspace}/rollback", "workspace",
                    WorkspaceAction.ADMIN, "api-state")
UNLOCK = Endpoint(("POST",), _BASE + "/{workspace}/unlock", "workspace",
                  WorkspaceAction.ADMIN, "api-state")
ENDPOINTS = (LIST, SHOW, HISTORY, CONTENT, ROLLBACK, UNLOCK)


def _version_param(request: Request) -> int | None:
    text = request.query_params.get("version")
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 1 << 31:
        raise Invalid("version must be a positive integer")
    return int(text)


class StateApi:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.store = services.state
        self.access = access
        self.offload = offload

    def _workspace(self, request: Request, endpoint: Endpoint) -> tuple[str, str]:
        """The workspace named in the path, once the caller may act on it; and who calls."""
        assert endpoint.action is not None
        principal, name = self.access.workspace(request.headers.get("authorization"),
                                                request.path_params["workspace"],
                                                endpoint.action)
        return name, str(principal.subject)

    async def list_workspaces(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        if principal.anonymous:
            raise Unauthenticated("authentication required to list state workspaces")
        workspaces = await self.offload.run(self.store.workspaces)
        return json_response(StateWorkspaceList(workspaces=[
            workspace_view(ws) for ws in workspaces
            if may(principal, WorkspaceResource(ws.name), WorkspaceAction.READ)]))

    async def show(self, request: Request) -> Response:
        name, _ = self._workspace(request, SHOW)
        return json_response(workspace_view(await self.offload.run(self.store.workspace,
                                                                   name)))

    async def history(self, request: Request) -> Response:
        name, _ = self._workspace(request, HISTORY)
        versions = await self.offload.run(self.store.history, name)
        return json_response(StateHistory(workspace=name,
                                          versions=[version_view(v) for v in versions]))

    async def content(self, request: Request) -> Response:
        name, _ = self._workspace(request, CONTENT)
        content = await self.offload.run(self.store.show, name, _version_param(request))
        return Response(content.body, media_type="application/json",
                        headers={"x-flywheel-state-version": str(content.version.version)})

    async def rollback(self, request: Request) -> Response:
        name, by = self._workspace(request, ROLLBACK)
        body = await read_json(request, RollbackRequest)
        version = await self.offload.run(lambda: self.store.rollback(name, body.to, by=by))
        return json_response(version_view(version), 201)

    async def unlock(self, request: Request) -> Response:
        name, _ = self._workspace(request, UNLOCK)
        released = await self.offload.run(self.store.unlock, name, None)
        return json_response(UnlockResponse(released=lock_view(released)))

    def routes(self) -> list[Route]:
        return [route(LIST, self.list_workspaces), route(SHOW, self.show),
                route(HISTORY, self.history), route(CONTENT, self.content),
                route(ROLLBACK, self.rollback), route(UNLOCK, self.unlock)]
