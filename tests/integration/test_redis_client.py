"""The services' Redis client (shared/redis_client.connect), its commands packed by hiredis, against a
real Redis, 7.x and 6.2: values of every kind stored and read back as sent, one by one, pipelined, and
as a script's arguments."""

from __future__ import annotations

import pytest

from shared.config import RedisConfig
from shared.redis_client import HiredisPacking, connect

pytestmark = pytest.mark.redis_flavours

VALUES: list[bytes | str | int | float] = [b"\x00\xff\xc0binary", "é ü 日本", 12345678901234567890, -7, 0.1, 1e-7, "",
                                           "x" * 100_000]


def as_stored(value: bytes | str | int | float) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else repr(value).encode()


async def test_values_round_trip_one_by_one_and_pipelined(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        for index, value in enumerate(VALUES):
            await client.set(f"one:{index}", value)
        async with client.pipeline(transaction=False) as pipe:
            for index, value in enumerate(VALUES):
                pipe.set(f"piped:{index}", value)
            await pipe.execute()
        for index, value in enumerate(VALUES):
            assert await client.get(f"one:{index}") == as_stored(value)
            assert await client.get(f"piped:{index}") == as_stored(value)
        assert all(isinstance(connection, HiredisPacking)
                   for connection in client.connection_pool._available_connections)
    finally:
        await client.aclose()


async def test_a_scripts_keys_and_arguments_arrive_as_sent(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        script = client.register_script("return {KEYS[1], ARGV[1], ARGV[2], ARGV[3], #ARGV}")
        assert await script(keys=["k:é"], args=[b"\x00\xc0", 42, 2.5]) == [
            "k:é".encode(), b"\x00\xc0", b"42", b"2.5", 3]
        entry = await client.xadd("stream", {"m": b"\xc0payload"}, maxlen=10, approximate=True)
        assert await client.xrange("stream") == [(entry, {b"m": b"\xc0payload"})]
    finally:
        await client.aclose()
