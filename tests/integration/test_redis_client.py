"""The services' Redis client (shared/redis_client.connect), its commands packed by hiredis, against a
real Redis, 7.x and 6.2: values of every kind stored and read back as sent, one by one, pipelined, and
as a script's arguments."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.config import RedisConfig
from shared.redis_client import Coalescer, Command, HiredisPacking, connect, pipelined
from tests.support import free_port

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


async def test_pipelined_reads_one_reply_the_library_way_and_takes_the_rest_from_its_buffer(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        await pipelined(client, [("PING",)])
        connection = client.connection_pool._available_connections[0]
        reads = 0
        library_read = connection.read_response

        async def counted(*args: object, **kwargs: object) -> object:
            nonlocal reads
            reads += 1
            return await library_read(*args, **kwargs)

        connection.read_response = counted  # type: ignore[method-assign]
        replies = await pipelined(client, [("RPUSH", "list", "a"), ("LPUSH", "list", "b"), ("LLEN", "list"),
                                           ("HSET", "list", "f", "v"), ("EXPIRE", "list", 60),
                                           ("LRANGE", "list", 0, -1)])
        assert replies[:3] == [1, 2, 2] and replies[4:] == [1, [b"b", b"a"]]
        assert isinstance(replies[3], ResponseError) and "WRONGTYPE" in str(replies[3])
        assert reads == 1  # the first reply's read brought the other five
    finally:
        await client.aclose()


async def test_pipelined_replies_larger_than_one_read_arrive_whole_and_in_order(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        values = [bytes([index]) * 100_000 for index in range(12)]  # 1.2 MB: many reads of 64 KB
        await pipelined(client, [("SET", f"big:{index}", value) for index, value in enumerate(values)])
        replies = await pipelined(client, [command for index in range(12)
                                           for command in (("GET", f"big:{index}"), ("STRLEN", f"big:{index}"))])
        assert replies == [reply for value in values for reply in (value, len(value))]
    finally:
        await client.aclose()


async def test_a_push_message_between_pipelined_replies_is_skipped(redis_url: str) -> None:
    """RESP3 (redis-py's default): with client tracking on, changing a key this connection read sends it an
    invalidation push in the middle of its own pipeline's replies."""
    client = connect(RedisConfig(url=redis_url))
    try:
        assert await pipelined(client, [("CLIENT TRACKING", "ON"), ("SET", "tracked", "one")]) == [b"OK", b"OK"]
        for turn in range(3):
            replies = await pipelined(client, [("GET", "tracked"), ("SET", "tracked", f"v{turn}"), ("GET", "tracked"),
                                               ("ECHO", "after")])
            assert replies == [b"one" if turn == 0 else f"v{turn - 1}".encode(), b"OK", f"v{turn}".encode(), b"after"]
        assert await client.get("tracked") == b"v2"
    finally:
        await client.aclose()


def commands(client: Redis) -> Coalescer[Command]:
    """Redis commands coalesced: pipelined, each caller with its own reply."""
    return Coalescer(lambda items: pipelined(client, items))


async def test_commands_of_one_turn_share_one_round_trip_and_each_caller_gets_its_own_reply(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        await client.set("text", "not a list")
        sent: list[int] = []

        async def send(items: list[Command]) -> list[object]:
            sent.append(len(items))
            return await pipelined(client, items)

        coalescer: Coalescer[Command] = Coalescer(send)
        connections = (await client.info("stats"))["total_connections_received"]
        replies = await asyncio.gather(*(coalescer.call(("INCRBY", "counter", index)) for index in range(1, 21)),
                                       coalescer.call(("LPUSH", "text", "x")), coalescer.call(("GET", "text")),
                                       return_exceptions=True)
        assert sent == [22]  # one round trip for the turn's 22 commands
        assert (await client.info("stats"))["total_connections_received"] == connections  # on one connection
        assert replies[:20] == [sum(range(1, n + 1)) for n in range(1, 21)]  # each its own, in order
        assert isinstance(replies[20], ResponseError) and "WRONGTYPE" in str(replies[20])  # raised in its caller
        assert replies[21] == b"not a list"
        assert await coalescer.call(("GET", "counter")) == b"210" and sent == [22, 1]  # alone: at once
    finally:
        await client.aclose()


async def test_a_cancelled_caller_cuts_no_other_caller_s_round_trip_short(redis_url: str) -> None:
    """The first caller of a turn gathers the others; cancelled before it sends, its command is left out and the
    others' go. A caller that joined and is then cancelled leaves its command in the batch: sent all the same."""
    client = connect(RedisConfig(url=redis_url))
    try:
        for cancelled, sent in (("first", "second"), ("second", "first")):
            coalescer = commands(client)
            calls = {"first": asyncio.ensure_future(coalescer.call(("SET", f"{cancelled}:first", 1))),
                     "second": asyncio.ensure_future(coalescer.call(("SET", f"{cancelled}:second", 2)))}
            await asyncio.sleep(0)  # the first gathers, the second has joined it
            calls[cancelled].cancel()
            assert await calls[sent] == b"OK"
            with pytest.raises(asyncio.CancelledError):
                await calls[cancelled]
            await coalescer.drain()
            stored = {name: await client.get(f"{cancelled}:{name}") for name in ("first", "second")}
            assert stored == ({"first": None, "second": b"2"} if cancelled == "first" else
                              {"first": b"1", "second": b"2"}), cancelled
    finally:
        await client.aclose()


async def test_every_caller_of_a_failed_round_trip_hears_the_error() -> None:
    client = connect(RedisConfig(url=f"redis://127.0.0.1:{free_port()}", retries=0))  # nothing listens there
    try:
        coalescer = commands(client)
        replies = await asyncio.gather(coalescer.call(("PING",)), coalescer.call(("GET", "x")),
                                       return_exceptions=True)
        assert all(isinstance(reply, RedisConnectionError) for reply in replies)
    finally:
        await client.aclose()
