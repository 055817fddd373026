"""``/_api/v1/tokens``: list, mint and revoke tokens; for admins only."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.tokens import (
    MintTokenRequest,
    MintTokenResponse,
    RevokeTokenRequest,
    RevokeTokenResponse,
    TokenList,
    TokenRecord,
)
from flywheel.app.services import Services
from flywheel.auth.authorize import TOKENS, ServerAction
from flywheel.auth.permissions import Grants
from flywheel.auth.tokens import parse_duration
from flywheel.errors import Invalid, NotFound
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import json_response, read_json, route
from flywheel.server.blocking import Offload

MINT = Endpoint(("POST",), "/_api/v1/tokens", "tokens", ServerAction.ADMINISTER, "api-tokens")
REVOKE = Endpoint(("POST",), "/_api/v1/tokens/revoke", "tokens", ServerAction.ADMINISTER,
                  "api-tokens")
LIST = Endpoint(("GET",), "/_api/v1/tokens", "tokens", ServerAction.ADMINISTER, "api-tokens")
ENDPOINTS = (LIST, MINT, REVOKE)


class TokensApi:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.services = services
        self.access = access
        self.offload = offload

    def _admin(self, request: Request) -> None:
        principal = self.access.principal(request.headers.get("authorization"))
        self.access.authorize(principal, TOKENS, ServerAction.ADMINISTER)

    async def list_tokens(self, request: Request) -> Response:
        self._admin(request)
        sub = request.query_params.get("sub") or None
        rows = await self.offload.run(self.services.tokens.list, sub)
        return json_response(TokenList(tokens=[TokenRecord.model_validate(asdict(r))
                                               for r in rows]))

    async def mint(self, request: Request) -> Response:
        self._admin(request)
        body = await read_json(request, MintTokenRequest)
        try:
            grants = Grants.from_request(body.caches, body.admin, body.workspaces)
            validity = parse_duration(body.validity)
        except ValueError as e:
            raise Invalid(str(e)) from None
        token, claims = await self.offload.run(self.services.issue_token, body.sub, grants,
                                               validity)
        return json_response(MintTokenResponse(token=token, id=str(claims.jti),
                                               expires_at=claims.expires_at), 201)

    async def revoke(self, request: Request) -> Response:
        self._admin(request)
        body = await read_json(request, RevokeTokenRequest)
        revoked = await self.offload.run(
            lambda: self.services.tokens.revoke(jti=body.id, sub=body.sub))
        if body.id is not None and revoked == 0:
            raise NotFound(f"no token with id {body.id!r}")
        return json_response(RevokeTokenResponse(revoked=revoked))

    def routes(self) -> list[Route]:
        return [route(LIST, self.list_tokens), route(MINT, self.mint), route(REVOKE, self.revoke)]
