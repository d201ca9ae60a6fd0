"""Routers share the work, and a router that dies mid-request loses nothing."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from services.gateway.replies import ReplyReader
from shared.keys import MESSAGE_FIELD, reply_stream
from shared.messages import Reply, ReplyBatch, ReplyKind, encode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import ask, start_stack

FAST_RECLAIM = {"DRAFTGATE_BUS_RECLAIM_IDLE_MS": "800", "DRAFTGATE_BUS_RECLAIM_INTERVAL_MS": "100"}


def decisions_served(router_url: str) -> float:
    metrics = httpx.get(f"{router_url}/metrics").text
    return sum(float(value) for value in re.findall(r"^draftgate_router_decisions_total\{[^}]*\} (\S+)$", metrics,
                                                      re.MULTILINE))


async def test_two_routers_share_the_load(redis_server: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.script_model("fake-drafter", confident("shared work", ttft_s=0.2))
    stack = start_stack(redis_server, tmp_path, fake, routers=2)
    try:
        client = stack.async_client()
        answers = await asyncio.gather(*(client.chat.completions.create(model="auto", messages=ask(f"q{i}"))
                                         for i in range(16)))
        assert all(a.choices[0].message.content == "shared work" for a in answers)
        served = [decisions_served(router.url) for router in stack.routers]
        assert sum(served) == 16
        assert all(count > 0 for count in served), served
    finally:
        stack.stop()


def post_in_background(url: str, content: str) -> Future[httpx.Response]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(httpx.post, f"{url}/v1/chat/completions", json={"model": "auto", "messages": ask(content)},
                         timeout=30)
    pool.shutdown(wait=False)
    return future


def test_a_router_killed_mid_request_is_replaced_and_answers_once(redis_server: str, fake: FakeUpstream,
                                                                  tmp_path: Path) -> None:
    fake.script_model("fake-drafter", confident("survived the crash", ttft_s=1.0))
    stack = start_stack(redis_server, tmp_path, fake, **FAST_RECLAIM)
    try:
        pending = post_in_background(stack.url, "crash test")
        # The first router is working on it: kill it without a chance to clean up.
        fake.wait_for(lambda seen: len(seen) == 1)
        stack.routers[0].kill()
        stack.add_router(**FAST_RECLAIM)
        response = pending.result(timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "survived the crash"
        seen = fake.wait_for(lambda s: len(s) == 2)
        assert [s.model for s in seen] == ["fake-drafter", "fake-drafter"]
        assert seen[0].closed_early
        assert "reclaimed a request" in stack.routers[1].logs()
    finally:
        stack.stop()


def test_a_gracefully_stopped_router_finishes_its_work(redis_server: str, fake: FakeUpstream,
                                                       tmp_path: Path) -> None:
    fake.script_model("fake-drafter", confident("finished before leaving", ttft_s=1.0))
    stack = start_stack(redis_server, tmp_path, fake)
    try:
        pending = post_in_background(stack.url, "graceful")
        fake.wait_for(lambda seen: len(seen) == 1)
        assert stack.routers[0].stop() == 0
        response = pending.result(timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "finished before leaving"
        assert len(fake.seen) == 1 and fake.seen[0].completed
    finally:
        stack.stop()


async def test_reply_reader_drops_replies_a_retry_repeats(redis_client, redis_url: str) -> None:
    stream = reply_stream("dedupe-test")
    reader = ReplyReader(redis_client, stream)
    waiter = reader.expect("r1")
    task = asyncio.create_task(reader.run())
    try:
        first_attempt = [Reply("r1", 1, ReplyKind.HEAD, decision="escalate"),
                         Reply("r1", 2, ReplyKind.CHUNK, data={"a": 1}), Reply("r1", 3, ReplyKind.CHUNK, data={"a": 2})]
        retry = [Reply("r1", 1, ReplyKind.HEAD, decision="escalate"), Reply("r1", 2, ReplyKind.CHUNK, data={"b": 1}),
                 Reply("r1", 3, ReplyKind.CHUNK, data={"b": 2}), Reply("r1", 4, ReplyKind.CHUNK, data={"b": 3}),
                 Reply("r1", 5, ReplyKind.END)]
        for batch in (first_attempt, retry):
            await redis_client.xadd(stream, {MESSAGE_FIELD: encode(ReplyBatch(replies=[encode(r) for r in batch]))})
        received = [await asyncio.wait_for(waiter.queue.get(), 5) for _ in range(5)]
        assert [(r.seq, r.kind) for r in received] == [(1, "head"), (2, "chunk"), (3, "chunk"), (4, "chunk"),
                                                       (5, "end")]
        assert received[3].data == {"b": 3}
        assert "r1" not in reader.waiters
    finally:
        task.cancel()
