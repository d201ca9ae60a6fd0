"""The ledger service's HTTP endpoints: analytics, per-template statistics, spend, and the probes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy.exc
from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger import analytics
from services.ledger.database import ping
from services.ledger.params import Window, check_name, parse_window
from services.ledger.state import ENGINE, LOOPS, REDIS, SCHEMA
from shared import __version__
from shared.errors import Unavailable
from shared.http import json_response

READY_DB_TIMEOUT_S = 2.0
# What a database that cannot be reached raises through SQLAlchemy and its drivers.
DATABASE_DOWN = (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InterfaceError, OSError, TimeoutError)


async def _query(request: web.Request, run: Callable[[AsyncConnection], Awaitable[dict[str, Any]]]) -> web.Response:
    try:
        async with request.app[ENGINE].connect() as conn:
            return json_response(await run(conn))
    except DATABASE_DOWN as exc:
        raise Unavailable("The ledger database is unavailable.", code="ledger_database_unavailable") from exc


async def get_analytics(request: web.Request) -> web.Response:
    """GET /analytics?from&to&group_by&tenant"""
    window = parse_window(request.query)
    return await _query(request, lambda conn: analytics.analytics(conn, window))


async def template_stats(request: web.Request) -> web.Response:
    """GET /templates/{template_id}/stats?from&to&group_by&tenant"""
    window = parse_window(request.query)
    template_id = check_name(request.match_info["template_id"], "template_id")
    return await _query(request, lambda conn: analytics.analytics(conn, window, template_id))


async def get_spend(request: web.Request) -> web.Response:
    """GET /spend?from&to&tenant: per key and per tenant."""
    window: Window = parse_window(request.query, grouping=False)
    return await _query(request, lambda conn: analytics.spend(conn, window))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    """Ready when the database and Redis answer, the schema is at head and the write loops run;
    otherwise 503 naming what is not (records wait in the stream meanwhile: nothing is lost)."""
    database = await ping(request.app[ENGINE], READY_DB_TIMEOUT_S)
    try:
        redis = bool(await request.app[REDIS].ping())
    except RedisError:
        redis = False
    loops = request.app[LOOPS]
    schema = request.app[SCHEMA].ready
    ok = database and redis and schema and not loops.down()
    return web.json_response({"status": "ready" if ok else "unavailable", "database": database, "redis": redis,
                              "schema": schema, "loops": loops.report(), "checked_at": time.time()},
                             status=200 if ok else 503)
