"""GET /v1/system/audit: the audit's recent verdicts and disagreement rates, cluster-wide, from Redis.

An admin key (or open loopback mode) sees everything: the overall rate over the last `audit.window`
verdicts, each tenant's and each category's, the verdict totals (client feedback included), today's
spend against the budget, and the latest verdicts. A client key sees its own tenant only: its window,
its rate and its verdicts. `?limit=N` (default 20, at most audit.window) bounds the verdicts listed.
"""

from __future__ import annotations

import time

from aiohttp import web
from redis.exceptions import RedisError

from services.gateway.auth import authorize_operator
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


async def get_audit(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG].audit
    caller = authorize_operator(request.headers, app[ACCESS], clients_allowed=True)
    limit = parse_limit(request.query.get("limit"), config.window)
    now = time.time()
    try:
        state = await store.snapshot(app[REDIS], None if caller.admin else caller.tenant)
        spent = None
        if caller.admin:
            raw = await app[REDIS].get(audit_spend(utc_day(now)))
            spent = float(raw) if raw is not None else 0.0
    except RedisError as exc:
        raise Unavailable("The gateway cannot reach Redis, where the audit's state is; try again shortly.",
                          code="bus_unavailable") from exc
    body = {"object": "audit", "scope": "all" if caller.admin else "tenant", "window": config.window,
            "agree_similarity": config.agree_similarity, "alert_disagreement_rate": config.alert_disagreement_rate,
            **state.to_json(limit)}
    if caller.admin:
        body["budget"] = {"day": utc_day(now), "spent_usd": round(spent or 0.0, 6),
                          "max_usd_per_day": config.max_cost_usd_per_day}
        body["sample_rate"] = config.sample_rate
    else:
        body["tenant"] = caller.tenant
        body.pop("counts", None)  # cluster-wide totals: not one tenant's to see
        body.pop("categories", None)
    return json_response(body)
