"""Virtual keys in Redis: make, list, revoke. The admin API and the CLI both come here.

A revoked key keeps its record (listed as revoked; its requests are 401s at once on every gateway,
which read the record on each request); nothing is ever deleted, so ids stay unique and spend stays
attributable.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.gateway.keys.model import KeySpec, VirtualKey, make_key, periods
from shared.keys import VIRTUAL_KEY_IDS, key_usage, virtual_key


async def create(redis: Redis, spec: KeySpec, now: float) -> tuple[VirtualKey, str]:
    """A new key, stored (hashed); returns it and its secret, which nothing keeps."""
    key, secret = make_key(spec, now)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(virtual_key(key.digest), mapping=key.to_redis())
        pipe.hset(VIRTUAL_KEY_IDS, key.id, key.digest)
        await pipe.execute()
    return key, secret


async def find(redis: Redis, key_id: str) -> VirtualKey | None:
    digest = await redis.hget(VIRTUAL_KEY_IDS, key_id)
    if digest is None:
        return None
    digest = _str(digest)
    fields = await redis.hgetall(virtual_key(digest))
    return VirtualKey.from_redis(digest, fields) if fields else None


async def list_keys(redis: Redis, now: float) -> list[dict[str, Any]]:
    """Every key as the admin sees it (no secret), with its spend today and this month (UTC), oldest first."""
    digests = [_str(digest) for digest in (await redis.hgetall(VIRTUAL_KEY_IDS)).values()]
    if not digests:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for digest in digests:
            pipe.hgetall(virtual_key(digest))
        records = await pipe.execute()
    keys = [VirtualKey.from_redis(digest, fields) for digest, fields in zip(digests, records, strict=True) if fields]
    shown = await _with_spend(redis, keys, now)
    return sorted(shown, key=lambda key: (key["created"], key["id"]))


async def show(redis: Redis, key_id: str, now: float) -> dict[str, Any] | None:
    """One key as the admin sees it, or None."""
    key = await find(redis, key_id)
    return None if key is None else (await _with_spend(redis, [key], now))[0]


async def _with_spend(redis: Redis, keys: list[VirtualKey], now: float) -> list[dict[str, Any]]:
    if not keys:
        return []
    day, month = periods(now)
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key_usage(key.id), "d", "ds", "m", "ms")
        usages = await pipe.execute()
    return [key.public(_spent(usage[0], usage[1], day), _spent(usage[2], usage[3], month), now)
            for key, usage in zip(keys, usages, strict=True)]


def _spent(period: bytes | None, usd: bytes | None, current: str) -> float:
    """A usage hash's spend in `current` (a day or a month): 0 when what it holds is another period's."""
    return float(usd or 0) if period is not None and _str(period) == current else 0.0


async def revoke(redis: Redis, key_id: str, now: float) -> VirtualKey | None:
    """Revoke a key (again: nothing changes); None when there is no such key."""
    key = await find(redis, key_id)
    if key is None:
        return None
    if key.revoked is None:
        await redis.hset(virtual_key(key.digest), "revoked", repr(now))
        key = await find(redis, key_id) or key
    return key


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
