"""GET /v1/system/audit: the audit's recent verdicts and disagreement rates, cluster-wide, from Redis.

An admin key (or open loopback mode) sees everything: the overall rate over the last `audit.window`
verdicts, each tenant's and each category's, the verdict totals (client feedback included), today's
spend against the budget, and the latest verdicts. A client key (static or virtual) sees its own
tenant only: its window, its rate and its verdicts. `?limit=N` (default 20, at most audit.window)
bounds the verdicts listed.
"""

from __future__ import annotations

import time

from aiohttp import web
from redis.exceptions import RedisError

from services.gateway import limits
from services.gateway.auth import bearer_token
from services.gateway.state import ACCESS, CONFIG, REDIS
from services.router.audit import store
from services.router.audit.budget import utc_day
from shared.errors import InvalidRequest, Unavailable
from shared.http import json_response
from shared.keys import audit_spend

DEFAULT_LIMIT = 20


def parse_limit(value: str | None, window: int) -> int:
    if value is None:
        return min(DEFAULT_LIMIT, window)
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if not 0 <= limit <= window:
        raise InvalidRequest(f"Invalid value for 'limit': expected an integer from 0 to {window} (audit.window).",
                             param="limit", code="invalid_value")
    return limit


async def tenant_of_caller(request: web.Request) -> str | None:
    """None for an operator (an admin key, or open loopback mode), else the client key's tenant: a
    static or virtual key, checked (401 for no key or a wrong one) but never charged."""
    access = request.app[ACCESS]
    token = bearer_token(request.headers)
    if access.operators_open or (token and token in access.admin_keys):
        return None
    found = limits.identify_request(request.app, request.headers)
    return (await limits.admit(request.app, found, None, bool(token))).tenant


async def get_audit(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG].audit
    tenant = await tenant_of_caller(request)
    limit = parse_limit(request.query.get("limit"), config.window)
    now = time.time()
    try:
        state = await store.snapshot(app[REDIS], tenant)
        spent = None
        if tenant is None:
            raw = await app[REDIS].get(audit_spend(utc_day(now)))
            spent = float(raw) if raw is not None else 0.0
    except RedisError as exc:
        raise Unavailable("The gateway cannot reach Redis, where the audit's state is; try again shortly.",
                          code="bus_unavailable") from exc
    body = {"object": "audit", "scope": "all" if tenant is None else "tenant", "window": config.window,
            "agree_similarity": config.agree_similarity, "alert_disagreement_rate": config.alert_disagreement_rate,
            **state.to_json(limit)}
    if tenant is None:
        body["budget"] = {"day": utc_day(now), "spent_usd": round(spent or 0.0, 6),
                          "max_usd_per_day": config.max_cost_usd_per_day}
        body["sample_rate"] = config.sample_rate
    else:
        body["tenant"] = tenant
        body.pop("counts", None)  # cluster-wide totals: not one tenant's to see
        body.pop("categories", None)
    return json_response(body)
