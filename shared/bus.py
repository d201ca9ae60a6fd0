"""Redis-stream helpers: publish, consume in a group, ack, reclaim, reply.

Payloads are opaque bytes under one field (keys.MESSAGE_FIELD); shared.messages
encodes and decodes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shared.keys import MESSAGE_FIELD

Entry = tuple[bytes, bytes]  # (stream entry id, payload)


@dataclass(frozen=True)
class Ack:
    """The group entry a reply answers: acknowledged in the same round trip as the last reply."""

    stream: str
    group: str
    entry_id: bytes


@dataclass(frozen=True)
class Publication:
    """A best-effort append to another stream that rides along with the replies."""

    stream: str
    payload: bytes
    maxlen: int


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it already exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish(redis: Redis, stream: str, payload: bytes, maxlen: int) -> bytes:
    return await redis.xadd(stream, {MESSAGE_FIELD: payload}, maxlen=maxlen, approximate=True)


async def reply(redis: Redis, stream: str, payloads: Sequence[bytes], maxlen: int, ttl_s: int,
                ack: Ack | None = None, also: Sequence[Publication] = ()) -> list[RedisError]:
    """Append replies to a gateway's stream and push back its expiry, in one round trip; with
    `ack`, acknowledge the request they finish, and append `also` to their streams, in it too.

    Raises if a reply or the ack was not written. `also` is best effort: its failures are
    returned, not raised, so a side write never costs the client its answer. A gateway that
    died stops reading; its stream then expires ttl_s after the last reply.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.xadd(stream, {MESSAGE_FIELD: payload}, maxlen=maxlen, approximate=True)
        pipe.expire(stream, ttl_s)
        if ack is not None:
            pipe.xack(ack.stream, ack.group, ack.entry_id)
        for publication in also:
            pipe.xadd(publication.stream, {MESSAGE_FIELD: publication.payload}, maxlen=publication.maxlen,
                      approximate=True)
        results = await pipe.execute(raise_on_error=False)
    required = len(payloads) + 1 + (ack is not None)
    for result in results[:required]:
        if isinstance(result, Exception):
            raise result
    return [result for result in results[required:] if isinstance(result, RedisError)]


async def read_group(redis: Redis, stream: str, group: str, consumer: str, count: int,
                     block_ms: int) -> list[Entry]:
    response = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return _entries(response)


async def read(redis: Redis, stream: str, last_id: bytes | str, count: int, block_ms: int) -> list[Entry]:
    response = await redis.xread({stream: last_id}, count=count, block=block_ms)
    return _entries(response)


async def ack(redis: Redis, stream: str, group: str, *entry_ids: bytes) -> None:
    if entry_ids:
        await redis.xack(stream, group, *entry_ids)


async def reclaim(redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int,
                  count: int) -> list[Entry]:
    """Take over entries another consumer left pending for longer than min_idle_ms."""
    _, claimed, _ = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    return [(entry_id, fields[MESSAGE_FIELD]) for entry_id, fields in claimed if fields]


async def keep_claimed(redis: Redis, stream: str, group: str, consumer: str, entry_ids: Sequence[bytes]) -> None:
    """Reset the idle time of entries still being worked on, so no one reclaims them."""
    if entry_ids:
        await redis.xclaim(stream, group, consumer, 0, list(entry_ids), justid=True)


def _entries(response: list | dict | None) -> list[Entry]:
    if not response:
        return []
    streams = response.items() if isinstance(response, dict) else response
    return [(entry_id, fields[MESSAGE_FIELD]) for _, entries in streams for entry_id, fields in entries
            if fields and MESSAGE_FIELD in fields]
