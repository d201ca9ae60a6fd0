"""GET /status: this router's view of its upstream pools, and the same JSON published in Redis.

Routers do not publish their URL (they only take work from the bus), so the gateway cannot ask them.
Instead each router writes its status under shared/keys.router_status(consumer) every heartbeat
interval, with a TTL of the bus's router_alive_s: a router that died disappears from the gateway's
GET /status as it does from the alive set, and nobody has to clean up after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.router.upstreams.pool import Pool
from shared.aio import being_cancelled
from shared.keys import router_status

log = structlog.get_logger(__name__)


def status(consumer: str, pools: Sequence[Pool]) -> dict[str, Any]:
    """Deployments (breaker, in flight, EWMA TTFT, rate-limited for), fallbacks, per tier."""
    return {"router": consumer, "at": round(time.time(), 3), "tiers": {pool.name: pool.status() for pool in pools}}


async def publish(redis: Redis, consumer: str, pools: Sequence[Pool], every_s: float, ttl_s: float) -> None:
    """Write this router's status to Redis every `every_s`, until cancelled. A failed write is
    logged and tried again next time: the status is for operators, never worth stopping for."""
    key, ttl_ms = router_status(consumer), max(1, int(ttl_s * 1000))
    try:
        while not being_cancelled():  # redis-py may absorb the cancel that lands mid-SET (shared/aio.py)
            try:
                await redis.set(key, json.dumps(status(consumer, pools)), px=ttl_ms)
            except RedisError as exc:
                log.warning("router status not published", error=repr(exc))
            await asyncio.sleep(every_s)
    finally:
        with contextlib.suppress(RedisError):
            await redis.delete(key)  # leaving: gone at once rather than at its TTL
