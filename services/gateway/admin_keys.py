"""The virtual keys' admin API: POST /admin/keys, GET /admin/keys, GET and DELETE /admin/keys/{id}.

Admin keys only: the operator middleware (operator.py) guards every path outside /v1/. The key
itself is in POST's answer alone; Redis keeps its SHA-256.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway.chat import served_models
from services.gateway.keys import store
from services.gateway.keys.model import parse_spec
from services.gateway.state import CONFIG, REDIS
from shared.errors import InvalidRequest, NotFound, Unavailable


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/keys", create_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_get("/admin/keys/{key_id}", get_key)
    app.router.add_delete("/admin/keys/{key_id}", revoke_key)


async def create_key(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        fields = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from None
    now = time.time()
    spec = parse_spec(fields, [name for name in served_models(request.app[CONFIG]) if name], now)
    try:
        key, secret = await store.create(request.app[REDIS], spec, now)
    except RedisError as exc:
        raise _unavailable() from exc
    return web.json_response({**key.public(now=now), "key": secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    try:
        keys = await store.list_keys(request.app[REDIS], time.time())
    except RedisError as exc:
        raise _unavailable() from exc
    tenant = request.query.get("tenant")
    return web.json_response({"object": "list", "data": [key for key in keys if tenant is None
                                                         or key["tenant"] == tenant]})


async def get_key(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"]
    try:
        found = await store.show(request.app[REDIS], key_id, time.time())
    except RedisError as exc:
        raise _unavailable() from exc
    if found is None:
        raise _not_found(key_id)
    return web.json_response(found)


async def revoke_key(request: web.Request) -> web.Response:
    """Revoked at once on every gateway; the record stays, listed as revoked."""
    key_id = request.match_info["key_id"]
    now = time.time()
    try:
        key = await store.revoke(request.app[REDIS], key_id, now)
    except RedisError as exc:
        raise _unavailable() from exc
    if key is None:
        raise _not_found(key_id)
    return web.json_response({**key.public(now=now), "deleted": True})


def _not_found(key_id: str) -> NotFound:
    return NotFound(f"No virtual key has the id `{key_id}`.", param="key_id", code="key_not_found")


def _unavailable() -> Unavailable:
    return Unavailable("Redis is unavailable; virtual keys cannot be read or changed.", code="keys_unavailable")
