"""create_app(config): the embedder — POST /v1/embeddings through the micro-batcher."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.embedder import handlers
from services.embedder.backends import EmbeddingBackend, create_backend
from services.embedder.batcher import MicroBatcher
from services.embedder.metrics import EmbedderMetrics
from services.embedder.state import BACKEND, BATCHER, CONFIG, METRICS
from shared.config import Config
from shared.http import error_middleware
from shared.metrics import add_metrics_route


def create_app(config: Config, backend: EmbeddingBackend | None = None,
               env: Mapping[str, str] | None = None) -> web.Application:
    """backend: an already loaded backend the caller owns (tests share one model); None loads one."""
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    registry = CollectorRegistry()
    app[METRICS] = EmbedderMetrics(registry)
    add_metrics_route(app, registry)

    async def backend_ctx(app: web.Application) -> AsyncIterator[None]:
        if backend is not None:
            app[BACKEND] = backend
            yield
            return
        app[BACKEND] = await create_backend(config.embedder, os.environ if env is None else env)
        yield
        await app[BACKEND].close()

    app.cleanup_ctx.extend([backend_ctx, _batcher_ctx])
    app.router.add_post("/v1/embeddings", handlers.embeddings)
    app.router.add_get("/health", handlers.health)
    return app


async def _batcher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONFIG].embedder
    batcher = MicroBatcher(app[BACKEND], settings.max_batch, settings.max_wait_ms / 1000,
                           observe=app[METRICS].observe_batch)
    app[BATCHER] = batcher
    task = asyncio.create_task(batcher.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
