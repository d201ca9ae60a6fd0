"""aiohttp pieces every service shares: OpenAI-style error middleware and the JSON error reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from shared import fastjson
from shared.errors import ApiError, error_body

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                     405: "invalid_request_error", 413: "invalid_request_error"}


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """web.json_response, serialised with orjson: for the bodies on the request path."""
    return web.Response(body=fastjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers={**exc.headers, **(headers or {})})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OpenAI error object; unexpected ones leak nothing."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = error_body(exc.reason, _HTTP_ERROR_TYPES.get(exc.status, "invalid_request_error"))
        return web.json_response(body, status=exc.status, headers={k: v for k, v in exc.headers.items()
                                                                     if k.lower() == "allow"})
    except Exception:
        log.exception("unhandled error", path=request.path)
        return web.json_response(error_body("The server had an error while processing your request.",
                                            "server_error"), status=500)
