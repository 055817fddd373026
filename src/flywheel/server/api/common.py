"""What every JSON API route shares: the endpoint declaration, reading a bounded JSON body,
and turning any refusal into the error body with its status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.errors import Invalid, TooLarge
from flywheel.server import metrics
from flywheel.server.access import Endpoint
from flywheel.server.errors import answer, error_body

MAX_JSON_BODY = 4 << 20
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(error_body(status, message), status, media_type="application/json",
                    headers={k.decode(): v.decode() for k, v in headers or []})


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status, media_type="application/json")


def route(endpoint: Endpoint, handler: Handler) -> Route:
    """A Starlette route for ``endpoint``; every refusal becomes the error body, and every
    outcome is counted."""

    async def wrapped(request: Request) -> Response:
        try:
            response = await handler(request)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            response = error_response(400, f"{where}: {first['msg']}")
        except Exception as e:  # every failure gets an answer; ``answer`` logs the unforeseen
            status, message, headers = answer(e)
            response = error_response(status, message, headers)
        metrics.count(metrics.REQUESTS, endpoint.label, metrics.method_label(request.method),
                      str(response.status_code))
        return response

    return Route(endpoint.path, wrapped, methods=list(endpoint.methods))


async def read_json(request: Request, model: type[M]) -> M:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise TooLarge(f"request body larger than {MAX_JSON_BODY} bytes")
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise Invalid("request body is not valid JSON") from None
        raise
