"""The gateway's small endpoints: models, health, readiness, and the cache operator proxy."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway.auth import authenticate
from services.gateway.state import API_KEYS, CONFIG, HTTP, REDIS, STARTED
from shared import __version__
from shared.errors import Unavailable
from shared.keys import ROUTERS_ALIVE


async def list_models(request: web.Request) -> web.Response:
    authenticate(request.headers, request.app[API_KEYS])
    config = request.app[CONFIG]
    created = int(request.app[STARTED])
    names = dict.fromkeys(["auto", "drafter", "heavyweight", config.drafter.model, config.heavyweight.model])
    data = [{"id": name, "object": "model", "created": created, "owned_by": "draftgate"} for name in names if name]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__,
                              "uptime_s": round(time.time() - request.app[STARTED], 3)})


async def ready(request: web.Request) -> web.Response:
    """Ready when Redis answers and at least one router has sent a heartbeat lately."""
    config = request.app[CONFIG]
    try:
        await request.app[REDIS].ping()
        routers = await request.app[REDIS].zcount(ROUTERS_ALIVE, time.time() - config.bus.router_alive_s, "+inf")
    except RedisError:
        return web.json_response({"status": "unavailable", "redis": False, "routers": 0}, status=503)
    status = 200 if routers else 503
    return web.json_response({"status": "ready" if routers else "no_router", "redis": True, "routers": routers},
                             status=status)


async def cache_proxy(request: web.Request) -> web.Response:
    """/cache/stats and /cache/flush, passed to the cache service for operators."""
    authenticate(request.headers, request.app[API_KEYS])
    base_url = request.app[CONFIG].gateway.cache_url
    if not base_url:
        raise Unavailable("The cache is not configured (gateway.cache_url is null).", code="cache_disabled")
    body = await request.read()
    try:
        async with request.app[HTTP].request(request.method, f"{base_url}{request.path}", data=body or None,
                                             headers={"Content-Type": "application/json"},
                                             timeout=aiohttp.ClientTimeout(total=10)) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable("The cache service is unavailable.", code="cache_unavailable") from exc
