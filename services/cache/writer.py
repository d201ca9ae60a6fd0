"""Store the router's cache writes from the Redis stream, off every request's path.

The shared consumer loop (shared.bus.Consumer) reads and reclaims; this is its handler. An entry
is acked once stored; if a store fails mid-way the entries stay pending and are reclaimed later
(by this or another cache instance). Undecodable entries are logged, acked and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from services.cache.core import Cache
from shared import bus
from shared.config import BusConfig
from shared.keys import CACHE_WRITE_GROUP, CACHE_WRITE_STREAM
from shared.messages import CacheWrite, WireError, decode

log = structlog.get_logger(__name__)

BATCH = 64


@dataclass
class Writer:
    redis: Redis
    cache: Cache

    async def handle(self, entries: list[bus.Entry], reclaimed: bool) -> None:
        writes = []
        for entry_id, payload in entries:
            try:
                writes.append(decode(CacheWrite, payload))
            except WireError as exc:
                log.warning("dropping an undecodable cache write", entry_id=entry_id, error=str(exc))
                self.cache.record.write("invalid")
        await self.cache.store(writes)
        await bus.ack(self.redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP, *(entry_id for entry_id, _ in entries))


def consumer(redis: Redis, cache: Cache, name: str, config: BusConfig) -> bus.Consumer:
    """The cache writers' member of their group, storing what it reads."""
    return bus.Consumer(redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP, name, Writer(redis, cache).handle,
                        reclaim_idle_ms=config.reclaim_idle_ms, reclaim_interval_s=config.reclaim_interval_ms / 1000,
                        batch=BATCH)
