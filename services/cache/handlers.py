"""HTTP glue of the cache service: parse, call the Cache, answer JSON."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from services.cache.protocol import FlushRequest, LookupRequest, parse
from services.cache.semantic import STORE_ERRORS
from services.cache.state import CACHE, CONFIG, METRICS
from shared import __version__
from shared.errors import InvalidRequest, Unavailable


async def lookup(request: web.Request) -> web.Response:
    """{"tenant", "body", "timeout_s"?} -> {"hit": false} or
    {"hit": true, "tier", "similarity", "completion", "partition", "verified" (semantic hits only)}."""
    started = time.perf_counter()
    data = await _json(request, allow_empty=False)
    parsed = parse(LookupRequest, data)
    wait_s = parsed.timeout_s or request.app[CONFIG].gateway.cache_timeout_s
    result = await request.app[CACHE].lookup(data["body"], parsed.tenant, wait_s)
    outcome = result.get("tier", "miss")
    request.app[METRICS].lookup_seconds.labels(outcome).observe(time.perf_counter() - started)
    return web.json_response(result)


async def stats(request: web.Request) -> web.Response:
    cache = request.app[CACHE]
    return web.json_response(cache.record.stats.report(await cache.entries()))


async def flush(request: web.Request) -> web.Response:
    """Empty body: everything; {"tenant"}: one tenant; {"partition"}: one partition."""
    parsed = parse(FlushRequest, await _json(request, allow_empty=True))
    try:
        result = await request.app[CACHE].flush(parsed.tenant, parsed.partition)
    except (RedisError, *STORE_ERRORS) as exc:
        raise Unavailable(f"The cache store is unavailable, nothing was flushed: {type(exc).__name__}",
                          code="cache_store_unavailable") from exc
    return web.json_response(result)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def _json(request: web.Request, *, allow_empty: bool) -> Any:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also nesting past 1024 levels, where json.loads would recurse
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None
