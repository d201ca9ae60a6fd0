"""The services' Redis client (shared/redis_client.connect), its commands packed by hiredis, against a
real Redis, 7.x and 6.2: values of every kind stored and read back as sent, one by one, pipelined, and
as a script's arguments."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from shared.config import RedisConfig
from shared.redis_client import HiredisPacking, connect, pipelined

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


async def test_pipelined_sends_every_command_and_puts_a_refusal_in_its_place(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        await client.set("text", "not a list")
        replies = await pipelined(client, [("RPUSH", "list", b"\xc0one"), ("LPUSH", "text", "x"),
                                           ("EXPIRE", "list", 60), ("LRANGE", "list", 0, -1)])
        assert replies[0] == 1 and replies[2] == 1 and replies[3] == [b"\xc0one"]
        assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
        assert await client.ttl("list") > 0  # the command after the refusal ran
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipelined(client, [("LPUSH", "text", "x"), ("EXPIRE", "list", 120)], raise_on_error=True)
        assert await client.ttl("list") > 60  # raised once every command had run
    finally:
        await client.aclose()


async def test_pipelined_resends_on_a_new_connection_when_the_server_dropped_the_old(redis_url: str) -> None:
    client, admin = connect(RedisConfig(url=redis_url)), connect(RedisConfig(url=redis_url))
    try:
        assert await pipelined(client, [("SET", "before", 1)]) == [b"OK"]  # as sent: no callbacks
        own = await client.client_id()
        await admin.client_kill_filter(_id=own)
        assert await pipelined(client, [("INCR", "counter"), ("GET", "counter")]) == [1, b"1"]
        assert await client.client_id() != own
    finally:
        await client.aclose()
        await admin.aclose()
