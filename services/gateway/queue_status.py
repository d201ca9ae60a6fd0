"""GET /queue/status (operator endpoint: an admin key): each tier's cluster queue as Redis holds it,
the same for every gateway. Per tier: its limit (`cluster_max_concurrent`, null: unbounded), the
calls in flight across every router, the calls waiting for a slot, and the utilisation (in flight
over the limit). Leases and waits that expired (a router that died) are not counted: the same rule
the routers apply (services/router/queue.py), on Redis's clock."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.gateway.state import CONFIG, REDIS
from shared.config import Config, UpstreamConfig
from shared.errors import Unavailable
from shared.keys import queue_slots, queue_waiting

# KEYS: slots, waiting of each tier in turn; returns their live members' counts, in the same order.
COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCOUNT', key, '(' .. now, '+inf')
end
return counts
"""


def tiers(config: Config) -> dict[str, UpstreamConfig]:
    return {"drafter": config.drafter, "heavyweight": config.heavyweight}


async def read_queues(redis: Redis, config: Config) -> dict[str, dict[str, Any]]:
    """Each tier's limit, in flight, queued and utilisation (None when unbounded), in one round trip."""
    names = list(tiers(config))
    keys = [key for name in names for key in (queue_slots(name), queue_waiting(name))]
    counts = await redis.eval(COUNT, len(keys), *keys)
    report: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        limit = tiers(config)[name].cluster_max_concurrent
        in_flight, queued = int(counts[2 * i]), int(counts[2 * i + 1])
        report[name] = {"limit": limit, "in_flight": in_flight, "queued": queued,
                        "utilisation": None if not limit else round(in_flight / limit, 4),
                        "queue_timeout_s": tiers(config)[name].queue_timeout_s}
    return report


async def queue_status(request: web.Request) -> web.Response:
    try:
        report = await read_queues(request.app[REDIS], request.app[CONFIG])
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; the queues cannot be read.") from exc
    return web.json_response({"tiers": report, "degraded_mode": request.app[CONFIG].routing.degraded_mode})
