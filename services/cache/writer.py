"""Consume the router's cache writes from the Redis stream, off every request's path.

An entry is acked once stored; if Redis fails mid-way it stays pending and is reclaimed
later (by this or another cache instance). Undecodable entries are logged, acked and dropped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.cache.core import Cache
from shared import bus
from shared.aio import being_cancelled
from shared.config import BusConfig
from shared.keys import CACHE_WRITE_GROUP, CACHE_WRITE_STREAM
from shared.messages import CacheWrite, WireError, decode

log = structlog.get_logger(__name__)

BATCH = 64
BLOCK_MS = 1000
RETRY_S = 1.0


@dataclass
class Writer:
    redis: Redis
    cache: Cache
    consumer: str
    bus: BusConfig

    async def run(self) -> None:
        """Read, store, ack until cancelled; Redis outages pause the loop instead of ending it."""
        await self._ensure_group()
        next_reclaim = 0.0
        while not being_cancelled():
            try:
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self.bus.reclaim_interval_ms / 1000
                    await self._handle(await bus.reclaim(self.redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP,
                                                         self.consumer, self.bus.reclaim_idle_ms, BATCH))
                await self._handle(await bus.read_group(self.redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP,
                                                        self.consumer, BATCH, BLOCK_MS))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("cache write group vanished; recreating it")
                await self._ensure_group()
            except (RedisError, OSError) as exc:
                log.warning("cache writer cannot reach Redis; retrying", error=repr(exc))
                await asyncio.sleep(RETRY_S)

    async def _ensure_group(self) -> None:
        while not being_cancelled():
            try:
                await bus.ensure_group(self.redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP)
                return
            except (RedisError, OSError) as exc:
                log.warning("cache writer cannot create its group; retrying", error=repr(exc))
                await asyncio.sleep(RETRY_S)

    async def _handle(self, entries: list[bus.Entry]) -> None:
        if not entries:
            return
        writes = []
        for entry_id, payload in entries:
            try:
                writes.append(decode(CacheWrite, payload))
            except WireError as exc:
                log.warning("dropping an undecodable cache write", entry_id=entry_id, error=str(exc))
                self.cache.record.write("invalid")
        await self.cache.store(writes)
        await bus.ack(self.redis, CACHE_WRITE_STREAM, CACHE_WRITE_GROUP, *(entry_id for entry_id, _ in entries))
