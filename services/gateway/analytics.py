"""The ledger's analytics through the gateway: `GET /v1/system/analytics`,
`GET /v1/prompts/{template_id}/stats` and `GET /admin/spend`, proxied to the ledger service
(gateway.ledger_url), which computes them in SQL.

An admin key (or open loopback mode without a key) sees every tenant and may filter by `tenant`.
Any other caller, with a static or a virtual key, sees its own tenant only (and its sub-tenants,
`<tenant>:<X-Tenant-ID>`): naming another tenant is a 403. `from`, `to` and `group_by` are checked
here, so a bad one is a 400 naming it even when the ledger is down; the ledger unreachable is a 503.
/admin/spend is for admin keys only (the operator middleware checks).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from aiohttp import web

from services.gateway import limits
from services.gateway.auth import bearer_token
from services.gateway.state import ACCESS, CONFIG, HTTP
from services.ledger.params import Window, check_name, parse_window
from shared.errors import PermissionDenied, Unavailable

LEDGER_TIMEOUT_S = 10.0


async def caller_scope(request: web.Request) -> str | None:
    """None for an admin (every tenant); else the tenant the caller's key belongs to."""
    access = request.app[ACCESS]
    token = bearer_token(request.headers)
    if token and token in access.admin_keys:
        return None
    if access.operators_open and not token:
        return None
    found = limits.identify_request(request.app, request.headers)
    principal = await limits.admit(request.app, found, None, bool(token))  # authenticates; charges nothing
    if access.operators_open and not principal.key_id:
        return None  # open mode: a token that is no key is the machine's own user, like no token
    return principal.tenant


def scoped(window: Window, tenant: str | None) -> Window:
    """The window a caller may see: its own tenant unless it is an admin."""
    if tenant is None:
        return window
    if window.tenant is not None and window.tenant != tenant:
        raise PermissionDenied("A client key sees only its own tenant's analytics: leave out `tenant`.",
                               param="tenant", code="admin_key_required")
    return window.scoped(tenant)


async def system_analytics(request: web.Request) -> web.Response:
    """GET /v1/system/analytics?from&to&group_by=key|tenant|template|model|day&tenant"""
    window = parse_window(request.query)
    return await to_ledger(request, "/analytics", scoped(window, await caller_scope(request)))


async def template_stats(request: web.Request) -> web.Response:
    """GET /v1/prompts/{template_id}/stats?from&to&group_by&tenant"""
    window = parse_window(request.query)
    path = f"/templates/{quote(check_name(request.match_info['template_id'], 'template_id'), safe='')}/stats"
    return await to_ledger(request, path, scoped(window, await caller_scope(request)))


async def admin_spend(request: web.Request) -> web.Response:
    """GET /admin/spend?from&to&tenant: spend per key and per tenant (admin keys only)."""
    return await to_ledger(request, "/spend", parse_window(request.query, grouping=False))


async def to_ledger(request: web.Request, path: str, window: Window) -> web.Response:
    """The ledger's answer, passed back as it is (its errors are OpenAI-shaped already)."""
    base_url = request.app[CONFIG].gateway.ledger_url
    if not base_url:
        raise Unavailable("The ledger is not configured (gateway.ledger_url is null).", code="ledger_disabled")
    url = base_url.rstrip("/") + path
    try:
        async with request.app[HTTP].get(url, params=window.to_params(),
                                         timeout=aiohttp.ClientTimeout(total=LEDGER_TIMEOUT_S)) as answer:
            return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable("The ledger service is unavailable; try again shortly.", code="ledger_unavailable") from exc
