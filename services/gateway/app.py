"""create_app(config): the gateway process — routes, shared resources and the reply reader."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from services.gateway import admin_keys, admin_templates, analytics, handlers, limits, template_store
from services.gateway.audit_api import get_audit
from services.gateway.auth import load_access
from services.gateway.chat import chat_completions
from services.gateway.feedback import FEEDBACK_METRICS, create_feedback_metrics, post_feedback
from services.gateway.ledger_out import LOOP as LEDGER_LOOP
from services.gateway.ledger_out import LedgerOut
from services.gateway.metrics import create_metrics
from services.gateway.openapi import openapi
from services.gateway.operator import operator_middleware
from services.gateway.queue_status import queue_status
from services.gateway.replies import ReplyReader
from services.gateway.state import (
    ACCESS,
    API_KEYS,
    CONFIG,
    HTTP,
    LEDGER_OUT,
    LOOPS,
    METRICS,
    REDIS,
    REPLIES,
    STARTED,
    TEMPLATES_CONFIGURED,
)
from shared.config import Config
from shared.http import error_middleware
from shared.keys import reply_stream
from shared.metrics import add_metrics_route
from shared.redis_client import connect
from shared.supervise import Loops


def create_app(config: Config, env: Mapping[str, str] | None = None) -> web.Application:
    """Raises ConfigError (StartRefused) when the keys are missing or the gateway would be open to all."""
    # aiohttp enforces the body limit itself; a little headroom lets the handler answer 413.
    app = web.Application(middlewares=[error_middleware, operator_middleware],
                          client_max_size=config.gateway.max_body_bytes + 1)
    app[CONFIG] = config
    app[STARTED] = time.time()
    app[ACCESS] = load_access(config.gateway, os.environ if env is None else env)
    app[API_KEYS] = app[ACCESS].client_keys
    app[TEMPLATES_CONFIGURED] = template_store.configured(config.gateway)
    registry = CollectorRegistry()
    app[METRICS] = create_metrics(registry)
    app[FEEDBACK_METRICS] = create_feedback_metrics(registry)
    add_metrics_route(app, registry)
    app.cleanup_ctx.extend([_redis_ctx, limits.limiter_ctx, _replies_ctx, _ledger_ctx, _http_ctx])
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/{deployment}/chat/completions", chat_completions)  # one deployment, no routing
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/v1/models/{model:.+}", handlers.retrieve_model)  # ids may hold "/" (org/model)
    app.router.add_post("/v1/feedback", post_feedback)  # a client's verdict on an answer (#14)
    app.router.add_get("/v1/system/audit", get_audit)  # the audit's verdicts and rates (a client: its tenant's)
    # The ledger's analytics, proxied to gateway.ledger_url (a client key: its own tenant's).
    app.router.add_get("/v1/system/analytics", analytics.system_analytics)
    app.router.add_get("/v1/prompts/{template_id}/stats", analytics.template_stats)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/ready", handlers.ready)
    # Operator endpoints: anything outside /v1/ and the probes needs an admin key (services/gateway/operator.py).
    app.router.add_get("/cache/stats", handlers.cache_stats)
    app.router.add_get("/status", handlers.router_status)
    app.router.add_get("/queue/status", queue_status)  # each tier's cluster queue: in flight, queued, utilisation
    app.router.add_post("/cache/flush", handlers.cache_flush)
    app.router.add_get("/admin/spend", analytics.admin_spend)  # spend per key and tenant, from the ledger
    admin_templates.add_routes(app)
    admin_keys.add_routes(app)  # virtual keys: POST/GET /admin/keys, GET/DELETE /admin/keys/{id}
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    app[REDIS] = connect(app[CONFIG].redis)
    yield
    await app[REDIS].aclose()


async def _replies_ctx(app: web.Application) -> AsyncIterator[None]:
    """One reader per gateway process, on a stream named after this process; its loops are
    supervised, and /ready is 503 while one is down."""
    bus = app[CONFIG].bus
    reader = ReplyReader(app[REDIS], reply_stream(uuid.uuid4().hex), ttl_s=bus.reply_stream_ttl_s,
                         outage_grace_s=bus.outage_grace_s, metrics=app[METRICS])
    app[REPLIES] = reader
    with contextlib.suppress(RedisError):  # Redis down at start: the reader creates it once it is back
        await reader.open()
    app[LOOPS] = loops = Loops()
    reader.start(loops)
    yield
    await loops.cancel()
    with contextlib.suppress(RedisError):
        await app[REDIS].delete(reader.stream)


LEDGER_DRAIN_S = 5.0  # at shutdown, buffered ledger records get this long to reach Redis


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ledger records (services/gateway/ledger_out.py): one supervised loop, not essential (a ledger
    that cannot write keeps the records buffered; the gateway still answers); flushed at shutdown."""
    config = app[CONFIG].ledger
    if not config.enabled:
        yield
        return
    out = app[LEDGER_OUT] = LedgerOut(app[REDIS], app[METRICS].ledger_records, maxlen=config.stream_maxlen,
                                      batch=config.batch, bound=config.gateway_buffer,
                                      linger_s=config.linger_ms / 1000)
    app[LOOPS].start(LEDGER_LOOP, out.step, essential=False)
    yield
    await app[LOOPS].cancel(LEDGER_LOOP)
    await out.drain(LEDGER_DRAIN_S)


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield
