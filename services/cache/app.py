"""create_app(config): the cache service — HTTP routes, the stores, the write consumer, the purger."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from qdrant_client import AsyncQdrantClient
from redis.asyncio import Redis

from services.cache import handlers
from services.cache.core import QDRANT_ERRORS, Cache
from services.cache.embeddings import EmbedderClient
from services.cache.exact import ExactTier
from services.cache.semantic import SemanticTier
from services.cache.state import CACHE, CONFIG, METRICS
from services.cache.stats import CacheMetrics, CacheStats, Recorder
from services.cache.writer import Writer
from shared.config import Config
from shared.http import error_middleware
from shared.metrics import add_metrics_route

log = structlog.get_logger(__name__)

REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_SOCKET_TIMEOUT_S = 5.0  # above the writer's blocking read


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    registry = CollectorRegistry()
    app[METRICS] = CacheMetrics(registry)
    add_metrics_route(app, registry)
    app.cleanup_ctx.append(_cache_ctx)
    app.router.add_post("/lookup", handlers.lookup)
    app.router.add_get("/cache/stats", handlers.stats)
    app.router.add_post("/cache/flush", handlers.flush)
    app.router.add_get("/health", handlers.health)
    return app


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open Redis, Qdrant and the embedder session; run the writer and purger while serving."""
    config = app[CONFIG]
    redis = Redis.from_url(config.redis.url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                           socket_timeout=REDIS_SOCKET_TIMEOUT_S)
    qdrant = _qdrant_client(config)
    semantic = SemanticTier(qdrant, config.cache.collection, indexed=config.cache.qdrant_url is not None)
    try:
        await semantic.open()
    except QDRANT_ERRORS as exc:
        log.warning("qdrant unavailable at start; the semantic tier will retry", error=repr(exc))
    async with aiohttp.ClientSession() as session:
        embedder = EmbedderClient(session, config.cache.embedder_url, config.embedder.model,
                                  config.cache.embedder_timeout_s)
        cache = Cache(config.cache, ExactTier(redis), semantic, embedder, Recorder(CacheStats(), app[METRICS]))
        app[CACHE] = cache
        consumer = f"cache-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tasks = [asyncio.create_task(Writer(redis, cache, consumer, config.bus).run()),
                 asyncio.create_task(_purge_forever(cache, _purge_interval_s(config.cache.ttl_s)))]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await qdrant.close()
    await redis.aclose()


def _qdrant_client(config: Config) -> AsyncQdrantClient:
    if config.cache.qdrant_url:
        # No version probe at construction: it would block start-up and only warn when Qdrant is down.
        return AsyncQdrantClient(url=config.cache.qdrant_url, timeout=5, check_compatibility=False)
    Path(config.cache.qdrant_path).mkdir(parents=True, exist_ok=True)
    return AsyncQdrantClient(path=config.cache.qdrant_path)


def _purge_interval_s(ttl_s: int) -> float:
    """Often enough that expired points never outnumber live ones by much, at most once a minute."""
    return min(60.0, max(1.0, ttl_s / 10))


async def _purge_forever(cache: Cache, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await cache.purge()
        except QDRANT_ERRORS as exc:
            log.warning("purging expired semantic entries failed", error=repr(exc))
