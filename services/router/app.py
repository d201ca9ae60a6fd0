"""create_app(config): the router process — the stream worker plus /health and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.router import status
from services.router.audit.auditor import Auditor, embedder
from services.router.audit.metrics import create_audit_metrics
from services.router.audit.sampling import AuditSampler
from services.router.drafting import RoutingContext
from services.router.metrics import BreakerCollector, create_metrics, pool_observer
from services.router.policy import RiskRuntime, load_router_policy, open_risk_runtime
from services.router.queue import ClusterQueue, cluster_bounds, keep_leases
from services.router.speculation import SpeculationBudget
from services.router.upstream import create_tier, link_fallbacks
from services.router.upstreams.pool import Pool
from services.router.upstreams.ratelimit import RateLimiter
from services.router.upstreams.transport import create_session
from services.router.worker import Worker
from shared.aio import stop
from shared.config import Config
from shared.http import error_middleware
from shared.metrics import add_metrics_route
from shared.redis_client import connect

log = structlog.get_logger(__name__)

CONFIG = web.AppKey("config", Config)
REDIS = web.AppKey("redis", Redis)
WORKER = web.AppKey("worker", Worker)
STARTED = web.AppKey("started", float)
RISK = web.AppKey("risk", RiskRuntime)
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
POOLS = web.AppKey("pools", list[Pool])
AUDITOR = web.AppKey("auditor", Auditor)
AUDIT_EMBED_TIMEOUT_S = 10.0  # off the request path: the audit can wait for a busy embedder


def create_app(config: Config, env: Mapping[str, str] | None = None) -> web.Application:
    """Raises ConfigError when routing.risk_model cannot be loaded (routing.policy: learned)."""
    policy = load_router_policy(config)
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    app[STARTED] = time.time()
    registry = CollectorRegistry()
    add_metrics_route(app, registry)
    metrics = create_metrics(registry)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = connect(config.redis)
        yield
        await app[REDIS].aclose()

    async def risk_ctx(app: web.Application) -> AsyncIterator[None]:
        """The learned policy and its embedder client, open while the worker runs."""
        async with open_risk_runtime(config, policy) as runtime:
            if runtime is not None:
                app[RISK] = runtime
            yield

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        """The one pooled HTTP session every upstream call of this process goes through; closed
        after the worker has drained, so no call outlives it."""
        app[UPSTREAM_SESSION] = create_session()
        yield
        await app[UPSTREAM_SESSION].close()

    async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
        environ = os.environ if env is None else env
        session = app[UPSTREAM_SESSION]
        redis = app[REDIS]
        limiter = await _rate_limiter(config, redis)
        observe = pool_observer(metrics)
        drafter = create_tier("drafter", config.drafter, environ, session, limiter, observe)
        heavyweight = create_tier("heavyweight", config.heavyweight, environ, session, limiter, observe)
        link_fallbacks({"drafter": config.drafter, "heavyweight": config.heavyweight},
                       {"drafter": drafter, "heavyweight": heavyweight})
        pools = [tier.pool for tier in (drafter, heavyweight) if tier.pool is not None]
        app[POOLS] = pools
        breakers = BreakerCollector(pools)
        registry.register(breakers)

        audit_metrics = create_audit_metrics(registry, config.audit.alert_disagreement_rate)
        ctx = RoutingContext(drafter=drafter, heavyweight=heavyweight, routing=config.routing, metrics=metrics,
                             budget=SpeculationBudget(config.routing.max_concurrent_speculations),
                             cache_write_maxlen=config.bus.request_stream_maxlen, risk=app.get(RISK),
                             audit=AuditSampler(config.audit, config.routing.top_logprobs, audit_metrics.sampled))
        worker = Worker(redis=redis, ctx=ctx, config=config.bus, consumer=_consumer_name(),
                        max_in_flight=config.router.max_in_flight,
                        cancel_ttl_s=config.gateway.request_timeout_s)
        bounds = cluster_bounds(config)
        if bounds:  # the tiers' cluster_max_concurrent: leases in Redis, kept alive while held
            ctx.queue = ClusterQueue(redis, bounds, worker.consumer, lease_s=config.bus.router_alive_s)
            leasing = asyncio.create_task(keep_leases(ctx.queue, config.bus.router_heartbeat_s))
        app[WORKER] = worker
        worker.start()
        auditor = Auditor(redis, heavyweight, config.audit, config.bus, worker.consumer, audit_metrics,
                          embedder(session, config.cache.embedder_url, config.embedder.model, AUDIT_EMBED_TIMEOUT_S)
                          if config.cache.embedder_url else None, queue=ctx.queue)
        app[AUDITOR] = auditor
        auditor.start()
        publishing = asyncio.create_task(status.publish(redis, worker.consumer, pools, config.bus.router_heartbeat_s,
                                                        config.bus.router_alive_s))
        log.info("router started", consumer=worker.consumer, drafter=f"{drafter.model} @ {config.drafter.base_url}",
                 heavyweight=f"{heavyweight.model} @ {config.heavyweight.base_url}")
        yield
        # Each phase is logged with its duration, and the ones after the answers' grace period are
        # bounded: a router told to stop exits, whatever one of its tasks does.
        with shutdown_phase("worker"):
            await worker.shutdown(config.router.shutdown_grace_s)
        if bounds:
            with shutdown_phase("leases"):
                await stop(leasing, SHUTDOWN_STEP_S)
        with shutdown_phase("auditor"), contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_STEP_S):
                await auditor.shutdown()
        with shutdown_phase("status"):
            await stop(publishing, SHUTDOWN_STEP_S)
        if limiter is not None:  # the rate-limit shares this router holds go back to the other routers
            with shutdown_phase("rate limits"), contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_STEP_S):
                    await limiter.close()
        registry.unregister(breakers)

    app.cleanup_ctx.extend([redis_ctx, risk_ctx, session_ctx, worker_ctx])
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status", pool_status)
    return app


async def _rate_limiter(config: Config, redis: Redis) -> RateLimiter | None:
    """The shared rate limiter, its script loaded, when any deployment has an rpm or tpm limit."""
    deployments = [*config.drafter.deployments, *config.heavyweight.deployments]
    if not any(deployment.rpm or deployment.tpm for deployment in deployments):
        return None
    limiter = RateLimiter(redis)
    await limiter.prepare()
    return limiter


async def health(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    return web.json_response({"status": "ok", "consumer": worker.consumer, "in_flight": len(worker.in_flight),
                              "uptime_s": round(time.time() - request.app[STARTED], 3)})


async def pool_status(request: web.Request) -> web.Response:
    """GET /status: this router's upstream deployments (breakers, in flight, EWMA TTFT, rate limits)."""
    return web.json_response(status.status(request.app[WORKER].consumer, request.app[POOLS]))


async def ready(request: web.Request) -> web.Response:
    """503 while draining or while any of the worker's loops is down (Redis unreachable, a crash
    being retried): a router that cannot take work is not ready for it."""
    worker = request.app[WORKER]
    down = worker.loops.down()
    ok = not down and not worker.stopping
    status = "ready" if ok else ("stopping" if worker.stopping else "unavailable")
    # The audit's loops are shown but never make a router unready: answering comes first.
    return web.json_response({"status": status, "loops": worker.loops.report(),
                              "audit_loops": request.app[AUDITOR].loops.report()}, status=200 if ok else 503)


SHUTDOWN_STEP_S = 5.0  # the most any shutdown step after the worker's may take


@contextlib.contextmanager
def shutdown_phase(name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        log.info("shutdown step done", step=name, took_s=round(time.monotonic() - started, 3))


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
