"""Exact tier: the served completion under a hash of the normalised request, in Redis.

Keys are `<prefix><tenant>:<partition>:<exact>` so a flush of one tenant or partition is a
pattern scan, and Redis expiry does the TTL.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from services.cache.keys import EXACT_PREFIX, RequestKeys

SCAN_COUNT = 1000


class ExactTier:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, keys: RequestKeys) -> dict[str, Any] | None:
        raw = await self._redis.get(keys.redis_key)
        return None if raw is None else json.loads(raw)

    async def put(self, keys: RequestKeys, completion: dict[str, Any], expires_at: float) -> None:
        await self._redis.set(keys.redis_key, json.dumps(completion, separators=(",", ":")),
                              pxat=int(expires_at * 1000))

    async def count(self) -> int:
        return sum([1 async for _ in self._redis.scan_iter(match=f"{EXACT_PREFIX}*", count=SCAN_COUNT)])

    async def flush(self, tenant_tag: str | None = None, partition: str | None = None) -> int:
        pattern = f"{EXACT_PREFIX}{tenant_tag or '*'}:{partition or '*'}:*"
        flushed = 0
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                flushed += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            flushed += await self._redis.unlink(*batch)
        return flushed
