"""The gateway's small endpoints: models, health, readiness, and the cache operator proxy."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway import limits
from services.gateway.chat import served_models
from services.gateway.operator import tenant_scoped
from services.gateway.state import CALLER, CONFIG, HTTP, LOOPS, REDIS, STARTED
from shared import __version__, keys
from shared.errors import InvalidRequest, NotFound, PermissionDenied, Unavailable
from shared.keys import ROUTERS_ALIVE


def _models(request: web.Request) -> list[dict[str, Any]]:
    """OpenAI's model objects for every name `model` accepts."""
    created = int(request.app[STARTED])
    return [{"id": name, "object": "model", "created": created, "owned_by": "draftgate"}
            for name in served_models(request.app[CONFIG]) if name]


async def list_models(request: web.Request) -> web.Response:
    await limits.authenticate(request)  # the keys chat completions take (a virtual key: nothing charged)
    return web.json_response({"object": "list", "data": _models(request)})


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: the SDKs' `models.retrieve`."""
    await limits.authenticate(request)
    model = request.match_info["model"]
    found = next((m for m in _models(request) if m["id"] == model), None)
    if found is None:
        raise NotFound(f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found")
    return web.json_response(found)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__,
                              "uptime_s": round(time.time() - request.app[STARTED], 3)})


async def ready(request: web.Request) -> web.Response:
    """Ready when Redis answers, at least one router has sent a heartbeat lately and the reply
    reader's loops are running."""
    config = request.app[CONFIG]
    loops = request.app[LOOPS]
    try:
        await request.app[REDIS].ping()
        routers = await request.app[REDIS].zcount(ROUTERS_ALIVE, time.time() - config.bus.router_alive_s, "+inf")
    except RedisError:
        return web.json_response({"status": "unavailable", "redis": False, "routers": 0, "loops": loops.report()},
                                 status=503)
    down = loops.down()
    status = "loops_down" if down else ("ready" if routers else "no_router")
    return web.json_response({"status": status, "redis": True, "routers": routers, "loops": loops.report()},
                             status=200 if status == "ready" else 503)


async def router_status(request: web.Request) -> web.Response:
    """GET /status: admins only. Every live router's view of its upstream deployments, as each one
    last published it in Redis (services/router/status.py); a live router that has not published
    (just started, or an older version) is named under `unreported`."""
    config = request.app[CONFIG]
    redis = request.app[REDIS]
    try:
        alive = await redis.zrangebyscore(ROUTERS_ALIVE, time.time() - config.bus.router_alive_s, "+inf")
        names = [name.decode() if isinstance(name, bytes) else name for name in alive]
        published = await redis.mget([keys.router_status(name) for name in names]) if names else []
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; router status cannot be read.") from exc
    routers = [orjson.loads(raw) for raw in published if raw is not None]
    unreported = [name for name, raw in zip(names, published, strict=True) if raw is None]
    return web.json_response({"routers": routers, "unreported": unreported})


async def cache_stats(request: web.Request) -> web.Response:
    """GET /cache/stats: admins only (the operator middleware checked the key)."""
    return await _to_cache(request, b"")


@tenant_scoped
async def cache_flush(request: web.Request) -> web.Response:
    """POST /cache/flush: an admin flushes anything; a client key only its own tenant's entries."""
    body = await request.read()
    caller = request[CALLER]
    if not caller.admin:
        body = scoped_flush(body, caller.tenant)
    return await _to_cache(request, body)


def scoped_flush(body: bytes, tenant: str) -> bytes:
    """A client's flush body with its own tenant filled in; naming any tenant is not allowed."""
    try:
        target = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:  # orjson also refuses nesting past 1024 levels
        raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from None
    if not isinstance(target, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    if "tenant" in target:
        raise PermissionDenied("A client key flushes only its own tenant's entries: leave out `tenant`.",
                               param="tenant", code="admin_key_required")
    return orjson.dumps({**target, "tenant": tenant})


async def _to_cache(request: web.Request, body: bytes) -> web.Response:
    """Pass an operator request on to the cache service and its answer back."""
    base_url = request.app[CONFIG].gateway.cache_url
    if not base_url:
        raise Unavailable("The cache is not configured (gateway.cache_url is null).", code="cache_disabled")
    try:
        async with request.app[HTTP].request(request.method, f"{base_url}{request.path}", data=body or None,
                                             headers={"Content-Type": "application/json"},
                                             timeout=aiohttp.ClientTimeout(total=10)) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable("The cache service is unavailable.", code="cache_unavailable") from exc
