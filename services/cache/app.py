"""create_app(config): the cache service — HTTP routes, the stores, the write consumer, the purger."""

from __future__ import annotations

import asyncio
import dataclasses
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

from services.cache import handlers, writer
from services.cache.chain import open_chain
from services.cache.core import Cache
from services.cache.embeddings import EmbedderClient
from services.cache.exact import ExactTier
from services.cache.semantic import STORE_ERRORS, SemanticTier
from services.cache.state import CACHE, CONFIG, METRICS
from services.cache.stats import CacheMetrics, CacheStats, Recorder
from services.cache.vectors.base import VectorStore
from services.cache.vectors.edge import EdgeStore
from services.cache.vectors.migrate import set_aside_local_mode
from services.cache.vectors.server import ServerStore
from shared.config import Config, cache_write_timeout_s
from shared.http import error_middleware
from shared.metrics import add_metrics_route
from shared.redis_client import connect
from shared.supervise import Loops, Step

log = structlog.get_logger(__name__)

LOOPS = web.AppKey("loops", Loops)
WRITES, PURGE = "cache_writes", "purge"


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
    app.router.add_get("/ready", ready)
    return app


async def ready(request: web.Request) -> web.Response:
    """503 while the write loop is down (Redis unreachable, a crash being retried): answers are
    not being stored. Lookups still answer (misses at worst)."""
    loops = request.app[LOOPS]
    down = loops.down()
    return web.json_response({"status": "unavailable" if down else "ready", "loops": loops.report()},
                             status=503 if down else 200)


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open Redis, the vector store and the embedder session; run the writer and purger while serving."""
    config = app[CONFIG]
    redis = connect(config.redis)
    semantic = SemanticTier(_vector_store(config))
    try:
        await semantic.open()
    except STORE_ERRORS as exc:
        log.warning("vector store unavailable at start; the semantic tier will retry", error=repr(exc))
    try:
        async with aiohttp.ClientSession() as session, open_chain(config, os.environ) as chain:
            embedder = EmbedderClient(session, config.cache.embedder_url, config.embedder.model,
                                      config.cache.embedder_timeout_s)
            cache_config = dataclasses.replace(config.cache, embedder_write_timeout_s=cache_write_timeout_s(config))
            cache = Cache(cache_config, ExactTier(redis), semantic, embedder, Recorder(CacheStats(), app[METRICS]),
                          chain)
            app[CACHE] = cache
            name = f"cache-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            app[LOOPS] = loops = Loops()
            loops.start(WRITES, writer.consumer(redis, cache, name, config.bus).step)
            loops.start(PURGE, _purger(cache, _purge_interval_s(config.cache.ttl_s)), essential=False)
            yield
            await loops.cancel()
    finally:
        await semantic.close()  # the Edge worker flushes and lets go of its directory
        await redis.aclose()


def _vector_store(config: Config) -> VectorStore:
    """A Qdrant server when cache.qdrant_url is set; otherwise Qdrant Edge embedded, on disk at
    cache.qdrant_path/<collection>, where a search still queued when the gateway has stopped
    waiting for the lookup (gateway.cache_timeout_s) is dropped unanswered."""
    if config.cache.qdrant_url:
        # No version probe at construction: it would block start-up and only warn when Qdrant is down.
        client = AsyncQdrantClient(url=config.cache.qdrant_url, timeout=5, check_compatibility=False)
        return ServerStore(client, config.cache.collection)
    root = Path(config.cache.qdrant_path)
    set_aside_local_mode(root)
    return EdgeStore(root / config.cache.collection, search_budget_s=config.gateway.cache_timeout_s)


def _purge_interval_s(ttl_s: int) -> float:
    """Often enough that expired points never outnumber live ones by much, at most once a minute."""
    return min(60.0, max(1.0, ttl_s / 10))


def _purger(cache: Cache, interval_s: float) -> Step:
    async def purge() -> None:
        await asyncio.sleep(interval_s)
        try:
            await cache.purge()
        except STORE_ERRORS as exc:
            log.warning("purging expired semantic entries failed", error=repr(exc))
    return purge
