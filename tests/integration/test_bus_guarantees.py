"""What the bus promises, through real processes and a real Redis: a cancel is never lost, a
draining router keeps what it runs (and hands back what it cannot finish), a lagging gateway
loses no reply, and a gateway ends the requests Redis lost instead of letting them hang."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.gateway.metrics import GatewayMetrics, create_metrics
from services.gateway.replies import ReplyReader
from services.router import replies as router_replies
from services.router.replies import ReplyWriter
from shared import bus
from shared.config import RedisConfig
from shared.keys import CANCELLED_PREFIX, MESSAGE_FIELD, REQUEST_STREAM, ROUTER_GROUP, reply_stream
from shared.messages import Reply, ReplyBatch, ReplyKind, decode, encode
from shared.redis_client import Command, connect
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, start_stack
from tests.integration.test_resilience import FAST_RECLAIM, post_in_background
from tests.redis_servers import RedisServer
from tests.support import Service


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def until(check: Callable[[], object], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)


async def eventually(check: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def leave_while_queued(url: str, prompt: str, db: redis.Redis, queued: int) -> None:
    """A client sends a request and goes away once it is queued on the request stream."""
    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            task = asyncio.create_task(client.post(f"{url}/v1/chat/completions",
                                                   json={"model": "auto", "messages": ask(prompt)}))
            await eventually(lambda: db.xlen(REQUEST_STREAM) >= queued)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(go())
    until(lambda: db.keys(f"{CANCELLED_PREFIX}*"), what="the gateway's cancel key")


def test_a_request_whose_client_left_while_queued_is_never_run(redis_server: str, fake: FakeUpstream,
                                                                 tmp_path: Path) -> None:
    """No router is running when the client leaves; the router that starts later finds the cancel
    key at pick-up and acks the request without calling any model."""
    stack = start_stack(redis_server, tmp_path, fake, routers=0)
    db = redis.Redis.from_url(stack.redis_url)
    try:
        leave_while_queued(stack.url, "nobody is waiting for this", db, queued=1)
        router = stack.add_router()
        until(lambda: metric(router.url, "draftgate_router_cancelled_before_start_total") == 1,
              what="the router dropping the request")
        assert db.xpending(REQUEST_STREAM, ROUTER_GROUP)["pending"] == 0
        assert fake.seen == []
        assert stack.client().chat.completions.create(model="auto", messages=ask("still works")).choices
        assert len(fake.seen) == 1
    finally:
        stack.stop()


def test_a_busy_router_that_heard_the_cancel_skips_the_request_when_it_gets_to_it(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """The only router is busy (max_in_flight 1) when the second client leaves: it heard the cancel
    on the channel and, even with the key gone, drops the request when a slot frees."""
    fake.script("first", confident("The first answer.", ttft_s=2.0))
    stack = start_stack(redis_server, tmp_path, fake, DRAFTGATE_ROUTER_MAX_IN_FLIGHT="1")
    db = redis.Redis.from_url(stack.redis_url)
    try:
        first = post_in_background(stack.url, "first")
        fake.wait_for(lambda seen: len(seen) == 1)
        leave_while_queued(stack.url, "second", db, queued=2)
        db.delete(*db.keys(f"{CANCELLED_PREFIX}*"))
        assert first.result(timeout=30).status_code == 200
        router = stack.routers[0]
        until(lambda: metric(router.url, "draftgate_router_cancelled_before_start_total") == 1,
              what="the router dropping the request")
        assert [s.body["messages"][-1]["content"] for s in fake.seen] == ["first"]
    finally:
        stack.stop()


def stop_in_background(stop: Callable[[], int | None]) -> Future[int | None]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(stop)
    pool.shutdown(wait=False)
    return future


def busy_and_idle(stack: Stack) -> tuple[Service, Service]:
    """Of two routers, the one answering the request in flight, then the other."""
    first, second = stack.routers
    return (first, second) if httpx.get(f"{first.url}/health").json()["in_flight"] else (second, first)


def test_a_draining_router_keeps_its_request_claimed_until_it_is_done(redis_server: str, fake: FakeUpstream,
                                                                       tmp_path: Path) -> None:
    """SIGTERM mid-request with another router reclaiming after 0.8 s: the request is answered by
    the router that started it and the model is called once, not twice at the same time."""
    fake.script_model("fake-drafter", confident("Finished while draining.", ttft_s=3.0))
    stack = start_stack(redis_server, tmp_path, fake, routers=2, **FAST_RECLAIM)
    try:
        pending = post_in_background(stack.url, "drain")
        fake.wait_for(lambda seen: len(seen) == 1)
        busy, idle = busy_and_idle(stack)
        stopped = stop_in_background(busy.stop)
        response = pending.result(timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Finished while draining."
        assert stopped.result(timeout=30) == 0
        assert len(fake.seen) == 1
        assert "reclaimed a request" not in idle.logs()
    finally:
        stack.stop()


def test_a_router_out_of_grace_hands_its_request_back_for_another_to_finish(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """Its grace over, a stopping router cancels what it still runs and hands it back: another
    router takes it over at its next pass, not after reclaim_idle_ms (a minute here)."""
    fake.script_model("fake-drafter", confident("Finished by the other router.", ttft_s=2.5))
    slow_reclaim = {"DRAFTGATE_BUS_RECLAIM_IDLE_MS": "60000", "DRAFTGATE_BUS_RECLAIM_INTERVAL_MS": "100"}
    stack = start_stack(redis_server, tmp_path, fake, routers=2, DRAFTGATE_ROUTER_SHUTDOWN_GRACE_S="0.3",
                        **slow_reclaim)
    try:
        pending = post_in_background(stack.url, "hand back")
        fake.wait_for(lambda seen: len(seen) == 1)
        busy, idle = busy_and_idle(stack)
        assert busy.stop() == 0
        assert "handing unfinished requests back" in busy.logs()
        response = pending.result(timeout=20)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Finished by the other router."
        seen = fake.wait_for(lambda s: len(s) == 2)
        assert seen[0].closed_early and seen[1].completed
        assert "reclaimed a request" in idle.logs()
    finally:
        stack.stop()


def test_a_gateway_that_stops_reading_loses_no_reply_and_the_router_stops_with_a_clear_error(
        redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    """The gateway is frozen (SIGSTOP) mid-stream: nothing trims its reply stream, and past
    bus.reply_stream_maxlen unread replies the router ends the answer with a 503 instead of
    writing on. Thawed, the client gets every chunk written, in order, then that error."""
    words = [f" w{i}" for i in range(600)]
    fake.script_model("fake-heavy", confident("".join(words), tokens_per_s=300))
    # Each chunk its own write (no coalescing), so the cap of 100 unread writes is reached quickly.
    stack = start_stack(redis_server, tmp_path, fake, DRAFTGATE_BUS_REPLY_STREAM_MAXLEN="100",
                        DRAFTGATE_BUS_REPLY_COALESCE_MS="0")
    assert stack.gateway is not None and stack.gateway.proc is not None
    lines: list[str] = []
    first = threading.Event()

    def read_stream() -> None:
        body = {"model": "heavyweight", "messages": ask("a long one"), "stream": True}
        with httpx.stream("POST", f"{stack.url}/v1/chat/completions", json=body, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
                    first.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    try:
        assert first.wait(15)
        stack.gateway.proc.send_signal(signal.SIGSTOP)
        try:
            until(lambda: metric(stack.routers[0].url, "draftgate_router_reply_overflows_total") == 1,
                  what="the router noticing the frozen gateway")
        finally:
            stack.gateway.proc.send_signal(signal.SIGCONT)
        reader.join(30)
        assert not reader.is_alive()
        *chunks, last = [json.loads(line) for line in lines]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert len(text) > 100 and "".join(words).startswith(text), "a chunk was lost or repeated"
        assert last["error"]["code"] == "reply_overflow"
        assert metric(stack.url, "draftgate_gateway_bus_failures_total") == 0
    finally:
        stack.stop()


async def next_reply(queue: asyncio.Queue[Reply], timeout_s: float = 10.0) -> Reply:
    return await asyncio.wait_for(queue.get(), timeout_s)


async def write(redis_client: Redis, stream: str, *replies: Reply) -> None:
    await redis_client.xadd(stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[encode(r) for r in replies]))})


@pytest.fixture
def reader_metrics() -> GatewayMetrics:
    return create_metrics(CollectorRegistry())


async def test_requests_redis_lost_end_503_at_once_and_others_wait_on(redis_client: Redis, redis_url: str,
                                                                       reader_metrics: GatewayMetrics) -> None:
    stream = reply_stream("flushed")
    reader = ReplyReader(redis_client, stream, metrics=reader_metrics)
    task = asyncio.create_task(reader.run())
    try:
        lost = reader.expect("lost")
        reader.published(lost, await bus.publish(redis_client, REQUEST_STREAM, b"request", maxlen=100))
        await eventually(lambda: redis.Redis.from_url(redis_url).exists(stream))
        await redis_client.flushdb()  # what a restart with nothing persisted leaves
        # A router answering another request writes at once: that must not hide the loss.
        busy = ReplyWriter(redis_client, stream, "busy", maxlen=100, ttl_s=30)
        answered = asyncio.create_task(busy.send(busy.head("accept", 0.1, "none", "drafter")))
        kept = reader.expect("kept")
        reader.published(kept, await bus.publish(redis_client, REQUEST_STREAM, b"request", maxlen=100))
        reply = await next_reply(lost.queue)
        assert (reply.kind, reply.status, reply.data["error"]["code"]) == (ReplyKind.ERROR, 503, "bus_restarted")
        await write(redis_client, stream, Reply("kept", 1, ReplyKind.HEAD, decision="accept"))
        assert (await next_reply(kept.queue)).kind == ReplyKind.HEAD
        assert reader_metrics.bus_failures.labels("bus_restarted")._value.get() == 1
        await answered  # and its reply went through once the gateway had made the stream again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_gap_in_the_replies_is_a_502(redis_client: Redis, reader_metrics: GatewayMetrics) -> None:
    stream = reply_stream("gap")
    reader = ReplyReader(redis_client, stream, metrics=reader_metrics)
    waiter = reader.expect("r1")
    task = asyncio.create_task(reader.run())
    try:
        await write(redis_client, stream, Reply("r1", 1, ReplyKind.HEAD, decision="escalate"))
        await write(redis_client, stream, Reply("r1", 3, ReplyKind.CHUNK, data={"c": 3}))
        assert (await next_reply(waiter.queue)).kind == ReplyKind.HEAD
        reply = await next_reply(waiter.queue)
        assert (reply.kind, reply.status, reply.data["error"]["code"]) == (ReplyKind.ERROR, 502, "reply_lost")
        assert "r1" not in reader.waiters
        assert reader_metrics.bus_failures.labels("reply_lost")._value.get() == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)



async def test_a_gap_after_redis_came_back_empty_is_the_restart_not_a_502(redis_client: Redis, redis_url: str,
                                                                         reader_metrics: GatewayMetrics) -> None:
    """A progressive stream's replies go out in several writes: Redis restarting empty between two of
    them loses the earlier ones. That is the bus restarting (503 bus_restarted), as for lost requests."""
    stream = reply_stream("gap-restart")
    reader = ReplyReader(redis_client, stream, metrics=reader_metrics)
    waiter = reader.expect("r1")
    task = asyncio.create_task(reader.run())
    try:
        await eventually(lambda: redis.Redis.from_url(redis_url).exists(stream))  # made by the reader, as at start
        await write(redis_client, stream, Reply("r1", 1, ReplyKind.HEAD, decision="progressive"))
        assert (await next_reply(waiter.queue)).kind == ReplyKind.HEAD
        await redis_client.flushdb()  # the restart: the reply with seq 2 was written and lost with it
        await eventually(lambda: redis.Redis.from_url(redis_url).exists(stream))  # the reader made it again
        await write(redis_client, stream, Reply("r1", 3, ReplyKind.CHUNK, data={"c": 3}))
        reply = await next_reply(waiter.queue)
        assert (reply.kind, reply.status, reply.data["error"]["code"]) == (ReplyKind.ERROR, 503, "bus_restarted")
        assert reader_metrics.bus_failures.labels("bus_restarted")._value.get() == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer("7").start()
    yield server
    server.close()


async def test_waiting_requests_end_503_when_redis_stays_unreachable(own_redis: RedisServer,
                                                                     reader_metrics: GatewayMetrics) -> None:
    client = connect(RedisConfig(url=own_redis.url))
    stream = reply_stream("outage")
    reader = ReplyReader(client, stream, outage_grace_s=0.5, metrics=reader_metrics)
    task = asyncio.create_task(reader.run())
    try:
        waiter = reader.expect("r1")
        reader.published(waiter, await bus.publish(client, REQUEST_STREAM, b"request", maxlen=100))
        await eventually(lambda: own_redis.client().exists(stream))
        own_redis.kill()
        started = time.monotonic()
        reply = await next_reply(waiter.queue)
        assert (reply.status, reply.data["error"]["code"]) == (503, "bus_unavailable")
        assert time.monotonic() - started < 5
        own_redis.start()
        again = reader.expect("r2")
        while True:  # the reader comes back by itself
            try:
                await write(client, stream, Reply("r2", 1, ReplyKind.HEAD, decision="accept"))
                break
            except redis.RedisError:
                await asyncio.sleep(0.1)
        assert (await next_reply(again.queue)).kind == ReplyKind.HEAD
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_a_router_waits_for_its_gateway_to_recreate_a_lost_reply_stream(redis_client: Redis,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a Redis restart a router's reply finds no stream until the gateway's reader has made
    it again (routers never create one, so the gateway can tell it was lost); the router waits for
    it, and gives up on a stream that does not come back (its gateway is gone)."""
    monkeypatch.setattr(router_replies, "STREAM_WAIT_S", 0.5)
    out = ReplyWriter(redis_client, "test:late", "r1", maxlen=100, ttl_s=30)

    async def gateway_comes_back() -> None:
        await asyncio.sleep(0.2)
        await redis_client.xadd("test:late", {MESSAGE_FIELD: b""})

    await asyncio.gather(out.send(out.head("accept", 0.1, "none", "drafter")), gateway_comes_back())
    assert await redis_client.xlen("test:late") == 2
    gone = ReplyWriter(redis_client, "test:gone", "r2", maxlen=100, ttl_s=30)
    with pytest.raises(bus.StreamGone):
        await gone.finish(gone.error(500, {}))
    assert not await redis_client.exists("test:gone")


async def replies_on(redis_client: Redis, stream: str) -> list[list[int]]:
    """The seq numbers of each entry written to a reply stream (the first, the gateway's, aside)."""
    entries = await redis_client.xrange(stream)
    return [[decode(Reply, raw).seq for raw in decode(ReplyBatch, fields[MESSAGE_FIELD]).replies]
            for _, fields in entries[1:]]


async def test_a_streamed_answer_s_chunks_are_coalesced_in_order_and_the_first_goes_at_once(
        redis_client: Redis) -> None:
    stream = reply_stream("coalesced")
    await redis_client.xadd(stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[]))})  # the gateway made it
    out = ReplyWriter(redis_client, stream, "r1", maxlen=100, ttl_s=30, coalesce_s=0.2)
    await out.send(out.head("progressive", None, "none", "drafter"), out.chunk({"c": 1}))
    assert await replies_on(redis_client, stream) == [[1, 2]]  # the first write is not held back
    for n in range(2, 6):
        await out.send(out.chunk({"c": n}))
    assert await replies_on(redis_client, stream) == [[1, 2]]  # the rest wait for the interval...
    await eventually_async(lambda: replies_on(redis_client, stream), lambda got: len(got) == 2)
    assert await replies_on(redis_client, stream) == [[1, 2], [3, 4, 5, 6]]  # ...and go in one write
    await out.send(out.chunk({"c": 6}))
    await out.finish(out.chunk({"c": 7}))  # what waits goes first, in the same write as the end
    assert await replies_on(redis_client, stream) == [[1, 2], [3, 4, 5, 6], [7, 8, 9]]


async def test_a_coalesced_write_that_fails_ends_the_answer_with_that_failure(redis_client: Redis,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's stream vanishes (Redis restarted) while chunks wait: the answer ends with the
    failure, and nothing is written after it (no stream is made again by a router)."""
    monkeypatch.setattr(router_replies, "STREAM_WAIT_S", 0.3)
    stream = reply_stream("vanishing")
    await redis_client.xadd(stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[]))})
    out = ReplyWriter(redis_client, stream, "r1", maxlen=100, ttl_s=30, coalesce_s=0.05)
    await out.send(out.head("progressive", None, "none", "drafter"))
    await redis_client.delete(stream)
    await out.send(out.chunk({"c": 1}))  # held for the interval, then its write finds no stream
    with pytest.raises(bus.StreamGone):
        await out.finish(out.chunk({"c": 2}))
    assert not await redis_client.exists(stream)


async def eventually_async(probe: Callable[[], Awaitable[object]], done: Callable[[object], bool],
                           timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done(await probe()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Push:
    """A side write: one RPUSH, as a session's turn is stored with an answer's last replies."""

    key: str

    def commands(self) -> list[Command]:
        return [("RPUSH", self.key, b"turn")]


async def test_a_last_write_that_waits_for_its_stream_acks_and_makes_its_side_writes_once(
        redis_client: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply stream is missing at the answer's end (Redis restarted): the first try's ack and side
    writes ran anyway (a pipeline is no transaction), so the tries after it carry the replies alone; a
    session's turn is stored once, not once per try."""
    monkeypatch.setattr(router_replies, "STREAM_WAIT_S", 5.0)
    stream = reply_stream("restarted")
    entry = await redis_client.xadd("test:requests", {MESSAGE_FIELD: b"request"})
    await redis_client.xgroup_create("test:requests", "routers", id="0")
    await redis_client.xreadgroup("routers", "router-1", {"test:requests": ">"})
    out = ReplyWriter(redis_client, stream, "r1", maxlen=100, ttl_s=30,
                      ack=bus.Ack("test:requests", "routers", entry))
    tries = 0
    real_reply = bus.reply

    async def counted(*args: object, **kwargs: object) -> bus.Written:
        nonlocal tries
        tries += 1
        if tries == 3:  # the gateway's reader makes its stream again between the second and third try
            await redis_client.xadd(stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[]))})
        return await real_reply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bus, "reply", counted)
    await out.finish(out.error(500, {}), also=[Push("test:session")])
    assert tries == 3
    assert await redis_client.lrange("test:session", 0, -1) == [b"turn"]
    assert await replies_on(redis_client, stream) == [[1, 2]]
    assert (await redis_client.xpending("test:requests", "routers"))["pending"] == 0
