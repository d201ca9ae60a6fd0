"""Operator endpoints are closed by default: every gateway route outside the client API (`/v1/...`)
and the public probes needs an admin key, so a new admin endpoint is protected without asking.
A handler marked `tenant_scoped` also admits client keys and confines itself to `request[CALLER].tenant`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from services.gateway.auth import authorize_operator
from services.gateway.state import ACCESS, CALLER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Liveness, readiness and scraping carry no secrets and must work without keys (probes, Prometheus).
PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})
CLIENT_PREFIX = "/v1/"  # the OpenAI API: its handlers check client keys themselves

_tenant_scoped: set[Handler] = set()


def tenant_scoped(handler: Handler) -> Handler:
    """Let client keys call this operator endpoint; the handler must act on their tenant only."""
    _tenant_scoped.add(handler)
    return handler


def is_operator_path(path: str) -> bool:
    return path not in PUBLIC_PATHS and not path.startswith(CLIENT_PREFIX)


@web.middleware
async def operator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is None and is_operator_path(request.path):
        request[CALLER] = authorize_operator(request.headers, request.app[ACCESS],
                                             clients_allowed=match.handler in _tenant_scoped)
    return await handler(request)
