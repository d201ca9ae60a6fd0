"""The Redis-stream bus against a real Redis, 7.x and 6.2: capping, expiry, groups, reclaiming,
and the one consumer loop every group runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from shared import bus
from shared.keys import MESSAGE_FIELD, REPLY_STREAM_PREFIX
from tests.integration.stack import Stack

pytestmark = pytest.mark.redis_flavours

STREAM, GROUP = "test:requests", "workers"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_server_is_the_flavour_asked_for(redis_client: Redis, redis_flavour: str) -> None:
    version = (await redis_client.info("server"))["redis_version"]
    assert version.startswith("6.2.") if redis_flavour == "6.2" else version.startswith("7.")


async def test_streams_are_capped(redis_client: Redis) -> None:
    for i in range(1000):
        await bus.publish(redis_client, STREAM, str(i).encode(), maxlen=100)
    # Approximate trimming works in whole radix-tree nodes (100 entries by default).
    assert 100 <= await redis_client.xlen(STREAM) <= 200


@pytest.fixture
async def replies(redis_client: Redis) -> str:
    """A reply stream as its reader creates it: with one (empty) entry."""
    await redis_client.xadd("test:replies", {MESSAGE_FIELD: b""})
    return "test:replies"


async def test_replies_push_back_the_streams_expiry_and_report_its_length(redis_client: Redis, replies: str) -> None:
    written = await bus.reply(redis_client, replies, [b"a", b"b"], ttl_s=30)
    assert written.length == await redis_client.xlen(replies) == 3
    assert 0 < await redis_client.ttl(replies) <= 30


async def test_replies_are_never_trimmed_by_their_writer(redis_client: Redis, replies: str) -> None:
    for _ in range(300):
        await bus.reply(redis_client, replies, [b"x"] * 10, ttl_s=30)
    assert await redis_client.xlen(replies) == 3001


async def test_a_missing_reply_stream_is_not_recreated_by_a_writer(redis_client: Redis) -> None:
    """Only its reader creates a reply stream, so the reader can tell Redis lost it."""
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.publish(redis_client, STREAM, b"request", maxlen=100)
    ((entry_id, _),) = await bus.read_group(redis_client, STREAM, GROUP, "a", count=10, block_ms=100)
    with pytest.raises(bus.StreamGone):
        await bus.reply(redis_client, "test:gone", [b"answer"], ttl_s=30, ack=bus.Ack(STREAM, GROUP, entry_id))
    assert not await redis_client.exists("test:gone")


async def test_the_reader_trims_only_what_it_read_and_notices_its_stream_is_gone(redis_client: Redis) -> None:
    ids = [await redis_client.xadd("test:own", {MESSAGE_FIELD: str(i).encode()}) for i in range(500)]
    exists, entries = await bus.read_own(redis_client, "test:own", "0-0", count=300, block_ms=10, ttl_s=30)
    assert exists and len(entries) == 300
    last = entries[-1][0]
    exists, rest = await bus.read_own(redis_client, "test:own", last, count=1000, block_ms=10, ttl_s=30,
                                      trim_below=last)
    assert exists and [entry_id for entry_id, _ in rest] == ids[300:]
    remaining = [entry_id for entry_id, _ in await redis_client.xrange("test:own")]
    assert remaining == ids[299:], "only what was read (but the last entry read) is trimmed"
    assert 0 < await redis_client.ttl("test:own") <= 30
    await redis_client.delete("test:own")
    exists, _ = await bus.read_own(redis_client, "test:own", last, count=10, block_ms=10, ttl_s=30)
    assert not exists


async def test_the_last_reply_acks_its_request_and_carries_side_writes(redis_client: Redis, replies: str) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.publish(redis_client, STREAM, b"request", maxlen=100)
    ((entry_id, _),) = await bus.read_group(redis_client, STREAM, GROUP, "a", count=10, block_ms=100)
    written = await bus.reply(redis_client, "test:replies", [b"answer"], ttl_s=30,
                              ack=bus.Ack(STREAM, GROUP, entry_id),
                              also=[bus.Publication("test:side", b"remember", maxlen=100)])
    assert written.failures == []
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0
    assert [fields[MESSAGE_FIELD] for _, fields in await redis_client.xrange("test:side")] == [b"remember"]


async def test_acking_into_a_vanished_group_is_not_an_error(redis_client: Redis, replies: str) -> None:
    written = await bus.reply(redis_client, replies, [b"answer"], ttl_s=30, ack=bus.Ack("test:gone", GROUP, b"1-1"))
    assert written.length == 2


async def test_a_failed_side_write_does_not_cost_the_reply(redis_client: Redis, replies: str) -> None:
    await redis_client.set("test:not-a-stream", "x")
    written = await bus.reply(redis_client, replies, [b"answer"], ttl_s=30,
                              also=[bus.Publication("test:not-a-stream", b"lost", maxlen=100)])
    assert len(written.failures) == 1 and "WRONGTYPE" in str(written.failures[0])
    assert await redis_client.xlen(replies) == 2


async def test_a_silent_consumers_entries_are_reclaimed_but_kept_ones_are_not(redis_client: Redis) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.ensure_group(redis_client, STREAM, GROUP)  # idempotent
    for payload in (b"kept", b"abandoned"):
        await bus.publish(redis_client, STREAM, payload, maxlen=100)
    entries = await bus.read_group(redis_client, STREAM, GROUP, "a", count=10, block_ms=100)
    assert [payload for _, payload in entries] == [b"kept", b"abandoned"]
    await asyncio.sleep(0.3)
    await bus.keep_claimed(redis_client, STREAM, GROUP, "a", [entries[0][0]])
    reclaimed = await bus.reclaim(redis_client, STREAM, GROUP, "b", min_idle_ms=200, count=10)
    assert [payload for _, payload in reclaimed.entries] == [b"abandoned"]
    assert reclaimed.cursor == b"0-0"
    await bus.ack(redis_client, STREAM, GROUP, *(entry_id for entry_id, _ in entries))
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0


async def test_the_reclaim_cursor_moves_on_through_a_long_pending_list(redis_client: Redis) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    for i in range(30):
        await bus.publish(redis_client, STREAM, str(i).encode(), maxlen=1000)
    await bus.read_group(redis_client, STREAM, GROUP, "dead", count=100, block_ms=100)
    seen: list[bytes] = []
    cursor: bytes = b"0-0"
    for _ in range(3):
        found = await bus.reclaim(redis_client, STREAM, GROUP, "b", min_idle_ms=0, count=10, cursor=cursor)
        seen += [payload for _, payload in found.entries]
        cursor = found.cursor
    assert seen == [str(i).encode() for i in range(30)]


async def test_handed_back_entries_are_reclaimed_at_once(redis_client: Redis) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.publish(redis_client, STREAM, b"not started", maxlen=100)
    ((entry_id, _),) = await bus.read_group(redis_client, STREAM, GROUP, "leaving", count=10, block_ms=100)
    assert (await bus.reclaim(redis_client, STREAM, GROUP, "b", min_idle_ms=60_000, count=10)).entries == []
    await bus.hand_back(redis_client, STREAM, GROUP, "leaving", [entry_id])
    found = await bus.reclaim(redis_client, STREAM, GROUP, "b", min_idle_ms=60_000, count=10)
    assert found.entries == [(entry_id, b"not started")]


class Collector:
    """A consumer's handler that remembers what it got and acks it."""

    def __init__(self, redis: Redis, stream: str = STREAM, group: str = GROUP) -> None:
        self.redis, self.stream, self.group = redis, stream, group
        self.got: list[tuple[bytes, bool]] = []

    async def handle(self, entries: list[bus.Entry], reclaimed: bool) -> None:
        self.got += [(payload, reclaimed) for _, payload in entries]
        await bus.ack(self.redis, self.stream, self.group, *(entry_id for entry_id, _ in entries))


def consumer(redis: Redis, handler: Collector, **options: object) -> bus.Consumer:
    return bus.Consumer(redis, STREAM, GROUP, "me", handler.handle, reclaim_idle_ms=200, reclaim_interval_s=0.05,
                        block_ms=50, **options)


async def test_the_consumer_loop_reads_reclaims_and_recreates_a_vanished_group(redis_client: Redis) -> None:
    collector = Collector(redis_client)
    me = consumer(redis_client, collector)
    await me.step()  # creates the group
    await bus.publish(redis_client, STREAM, b"one", maxlen=100)
    await bus.read_group(redis_client, STREAM, GROUP, "dead", count=10, block_ms=10)  # and never acked
    await bus.publish(redis_client, STREAM, b"two", maxlen=100)

    async def got(*payloads: tuple[bytes, bool]) -> bool:
        await me.step()
        return all(p in collector.got for p in payloads)

    await eventually(lambda: got((b"two", False), (b"one", True)))
    await redis_client.flushdb()  # as after a restart with nothing persisted
    await me.step()
    await bus.publish(redis_client, STREAM, b"after", maxlen=100)
    await eventually(lambda: got((b"after", False)))
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0


async def test_a_stopping_consumer_hands_back_what_it_read_without_running_it(redis_client: Redis) -> None:
    collector = Collector(redis_client)
    me = consumer(redis_client, collector)
    await me.step()
    await bus.publish(redis_client, STREAM, b"late", maxlen=100)
    me.stopping = True
    await me.step()
    await me.step()
    assert collector.got == []
    found = await bus.reclaim(redis_client, STREAM, GROUP, "other", min_idle_ms=60_000, count=10)
    assert [payload for _, payload in found.entries] == [b"late"]


async def test_a_full_consumer_waits_for_room(redis_client: Redis) -> None:
    collector = Collector(redis_client)
    room = [0]
    me = consumer(redis_client, collector, capacity=lambda: room[0])
    await me.step()
    await bus.publish(redis_client, STREAM, b"queued", maxlen=100)
    for _ in range(3):
        await me.step()
    assert collector.got == []
    room[0] = 1
    me.wake()
    await eventually(lambda: _stepped(me, collector))
    assert collector.got == [(b"queued", False)]


async def _stepped(me: bus.Consumer, collector: Collector) -> bool:
    await me.step()
    return bool(collector.got)


async def test_entries_trimmed_while_pending_are_cleared_not_reclaimed_forever(redis_client: Redis) -> None:
    collector = Collector(redis_client)
    await bus.ensure_group(redis_client, STREAM, GROUP)
    ids = [await bus.publish(redis_client, STREAM, p, maxlen=100) for p in (b"trimmed", b"alive")]
    await bus.read_group(redis_client, STREAM, GROUP, "dead", count=10, block_ms=10)
    await redis_client.xdel(STREAM, ids[0])
    await asyncio.sleep(0.25)
    me = consumer(redis_client, collector)
    await eventually(lambda: _stepped(me, collector))
    assert collector.got == [(b"alive", True)]
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0


def test_a_gateways_reply_stream_expires(stack: Stack) -> None:
    stack.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    client = sync_redis.Redis.from_url(stack.redis_url)
    (stream,) = client.keys(f"{REPLY_STREAM_PREFIX}*")
    assert 0 < client.ttl(stream) <= 300
