"""create_app(config): the ledger service — two write loops (records, feedback) and the analytics API."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from services.ledger import handlers
from services.ledger.database import create_engine
from services.ledger.metrics import create_metrics
from services.ledger.state import CONFIG, ENGINE, LOOPS, METRICS, REDIS, SCHEMA
from services.ledger.writer import FEEDBACK, RECORDS, Schema, writer
from shared.config import Config
from shared.http import error_middleware
from shared.metrics import add_metrics_route
from shared.redis_client import connect
from shared.supervise import Loops

RECORDS_LOOP, FEEDBACK_LOOP = "ledger_records", "ledger_feedback"


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    registry = CollectorRegistry()
    app[METRICS] = create_metrics(registry)
    add_metrics_route(app, registry)
    app.cleanup_ctx.append(_ledger_ctx)
    app.router.add_get("/analytics", handlers.get_analytics)
    app.router.add_get("/templates/{template_id}/stats", handlers.template_stats)
    app.router.add_get("/spend", handlers.get_spend)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/ready", handlers.ready)
    return app


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the engine and Redis, and run the write loops while serving. Nothing here touches the
    database: the loops migrate it and write, retrying while it is down, so the service starts
    (and /ready says why it is not ready) without one."""
    config = app[CONFIG]
    engine = app[ENGINE] = create_engine(config.ledger.database_url)
    redis = app[REDIS] = connect(config.redis)
    schema = app[SCHEMA] = Schema(engine)
    name = f"ledger-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    app[LOOPS] = loops = Loops()
    members = [writer(redis, engine, schema, sink, name, config.bus, app[METRICS], config.ledger.batch,
                      config.ledger.linger_ms / 1000)
               for sink in (RECORDS, FEEDBACK)]
    for loop, member in zip((RECORDS_LOOP, FEEDBACK_LOOP), members, strict=True):
        loops.start(loop, member.step)
    try:
        yield
    finally:
        await loops.cancel()
        for member in members:
            with contextlib.suppress(RedisError):
                await member.hand_back()
        await redis.aclose()
        await engine.dispose()
