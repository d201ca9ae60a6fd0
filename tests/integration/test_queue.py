"""The cluster queue (services/router/queue.py) against a real Redis, 7.x and 6.2: slots shared by
every router, a bounded wait with a visible queued count, leases that come back when their router
stops refreshing them; and through real routers: in flight never above the limit across two routers,
a router killed while holding a slot gives it back, GET /queue/status."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.asyncio import Redis

from services.router.queue import Bound, ClusterQueue, TierFull, keep_leases
from services.router.upstreams.pool import REQUEST_DEADLINE
from shared.keys import queue_slots, queue_waiting
from tests.fakes.scripts import Script, confident
from tests.fakes.state import Seen
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack

ADMIN = "queue-admin-key"
HEAVY = "heavyweight"


def queue(redis: Redis, owner: str, limit: int = 2, timeout_s: float = 5.0, lease_s: float = 10.0) -> ClusterQueue:
    return ClusterQueue(redis, {HEAVY: Bound(limit, timeout_s)}, owner, lease_s=lease_s)


async def eventually(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.redis_flavours
async def test_slots_are_shared_by_every_router_up_to_the_limit(redis_client: Redis) -> None:
    one, two = queue(redis_client, "router-1"), queue(redis_client, "router-2")
    first = await one.acquire(HEAVY, wait=False)
    second = await two.acquire(HEAVY, wait=False)
    with pytest.raises(TierFull):
        await one.acquire(HEAVY, wait=False)
    assert await redis_client.zcard(queue_slots(HEAVY)) == 2
    await two.release(second)
    assert await one.acquire(HEAVY, wait=False) is not None
    await one.release(first)
    assert await redis_client.zcard(queue_slots(HEAVY)) == 1


@pytest.mark.redis_flavours
async def test_a_waiter_is_counted_as_queued_and_takes_the_slot_freed(redis_client: Redis) -> None:
    one, two = queue(redis_client, "router-1", limit=1), queue(redis_client, "router-2", limit=1)
    held = await one.acquire(HEAVY)
    waiting = asyncio.create_task(two.acquire(HEAVY))

    async def queued() -> bool:
        return await redis_client.zcard(queue_waiting(HEAVY)) == 1

    await eventually(queued)
    assert not waiting.done()
    await one.release(held)
    lease = await asyncio.wait_for(waiting, 10)
    assert lease is not None and lease.id.startswith("router-2:")
    assert await redis_client.zcard(queue_waiting(HEAVY)) == 0
    assert [m.decode() for m in await redis_client.zrange(queue_slots(HEAVY), 0, -1)] == [lease.id]


@pytest.mark.redis_flavours
async def test_a_wait_that_times_out_is_tier_full_and_leaves_no_trace(redis_client: Redis) -> None:
    one, two = queue(redis_client, "router-1", limit=1), queue(redis_client, "router-2", limit=1, timeout_s=0.2)
    await one.acquire(HEAVY)
    with pytest.raises(TierFull) as full:
        await two.acquire(HEAVY)
    assert full.value.status == 503 and full.value.retry_after_s is not None
    assert await redis_client.zcard(queue_waiting(HEAVY)) == 0
    assert await redis_client.zcard(queue_slots(HEAVY)) == 1


@pytest.mark.redis_flavours
async def test_a_lease_nobody_refreshes_expires_and_the_slot_comes_back(redis_client: Redis) -> None:
    dead = queue(redis_client, "dead-router", limit=1, lease_s=0.3)
    await dead.acquire(HEAVY)  # and never refreshed, never released: its router died
    alive = queue(redis_client, "router-2", limit=1, timeout_s=10)
    lease = await alive.acquire(HEAVY)  # waits for the dead lease to expire
    assert lease is not None
    assert [m.decode() for m in await redis_client.zrange(queue_slots(HEAVY), 0, -1)] == [lease.id]


@pytest.mark.redis_flavours
async def test_a_refreshed_lease_outlives_its_length(redis_client: Redis) -> None:
    owner = queue(redis_client, "router-1", limit=1, lease_s=0.3)
    lease = await owner.acquire(HEAVY)
    assert lease is not None
    first_expiry = await redis_client.zscore(queue_slots(HEAVY), lease.id)
    refreshing = asyncio.create_task(keep_leases(owner, 0.05))
    try:
        async def pushed_past_the_first_expiry() -> bool:
            score = await redis_client.zscore(queue_slots(HEAVY), lease.id)
            return score is not None and score > first_expiry + 400  # ms: beyond its first lifetime
        await eventually(pushed_past_the_first_expiry)
        with pytest.raises(TierFull):
            await queue(redis_client, "router-2", limit=1).acquire(HEAVY, wait=False)
    finally:
        refreshing.cancel()
    await owner.release(lease)
    assert await redis_client.zcard(queue_slots(HEAVY)) == 0


# Through real routers.

SLOW = Script(tokens=[f" h{i}" for i in range(6)], tokens_per_s=10)  # about half a second per answer


def max_overlap(seen: list[Seen], model: str) -> int:
    """The most calls to `model` the fake had open at one instant."""
    events = sorted([(s.started, 1) for s in seen if s.model == model]
                    + [(s.ended, -1) for s in seen if s.model == model and s.ended is not None])
    open_, most = 0, 0
    for _, step in events:
        open_ += step
        most = max(most, open_)
    return most


@pytest.fixture(scope="module")
def bounded(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("queue"), fake,
                       DRAFTGATE_HEAVYWEIGHT_CLUSTER_MAX_CONCURRENT="2", DRAFTGATE_HEAVYWEIGHT_QUEUE_TIMEOUT_S="30",
                       DRAFTGATE_BUS_ROUTER_ALIVE_S="2", DRAFTGATE_BUS_ROUTER_HEARTBEAT_S="0.3",
                       DRAFTGATE_ROUTER_MAX_IN_FLIGHT="2",
                       DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_ADMIN_KEYS", DG_ADMIN_KEYS=ADMIN) as stack:
        stack.add_router()
        yield stack


def queue_status(stack: Stack) -> dict:
    response = httpx.get(f"{stack.url}/queue/status", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["tiers"][HEAVY]


def test_in_flight_never_exceeds_the_limit_across_two_routers(bounded: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", SLOW)
    results: list[str] = []
    statuses: list[dict] = []

    def one(i: int) -> None:
        reply = bounded.client(timeout=60).chat.completions.create(model="heavyweight", messages=ask(f"q{i}"))
        results.append(reply.choices[0].message.content or "")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        statuses.append(queue_status(bounded))
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert results == [SLOW.text] * 8
    assert max_overlap(fake.seen, "fake-heavy") == 2  # the limit reached, never passed
    assert all(status["in_flight"] <= 2 for status in statuses)
    assert any(status["queued"] > 0 for status in statuses)
    assert any(status["utilisation"] == 1.0 for status in statuses)
    assert queue_status(bounded) == {"limit": 2, "in_flight": 0, "queued": 0, "utilisation": 0.0,
                                     "queue_timeout_s": 30.0}
    # Both routers took part (each takes two requests at most): the limit is the cluster's, not each router's.
    assert all(answered(router.url) > 0 for router in bounded.routers)


def answered(router_url: str) -> float:
    text = httpx.get(f"{router_url}/metrics", timeout=10).text
    found = re.search(r'^draftgate_router_decisions_total\{decision="escalate",tier="heavyweight"\} (\S+)$', text,
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_router_killed_while_holding_a_slot_gives_it_back(bounded: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", Script(tokens=[f" k{i}" for i in range(100)], tokens_per_s=5))
    victim = bounded.add_router()
    for router in bounded.routers[:-1]:  # only the victim takes the request
        router.stop()
    def slow() -> None:
        with contextlib.suppress(Exception):  # the router dies under it
            bounded.client(timeout=60).chat.completions.create(model="heavyweight", messages=ask("killed"))

    threading.Thread(target=slow, daemon=True).start()
    deadline = time.monotonic() + 20
    while queue_status(bounded)["in_flight"] != 1:
        assert time.monotonic() < deadline, "the victim never took a slot"
        time.sleep(0.05)
    victim.kill()
    while queue_status(bounded)["in_flight"] != 0:  # its lease expires: bus.router_alive_s (2 s)
        assert time.monotonic() < deadline, "the dead router's slot never came back"
        time.sleep(0.1)
    fake.script_model("fake-heavy", confident("After the crash."))
    survivor = bounded.add_router()
    assert survivor is not None
    reply = bounded.client(timeout=60).chat.completions.create(model="heavyweight", messages=ask("after"))
    assert reply.choices[0].message.content == "After the crash."


def test_a_full_drafter_escalates_with_reason_drafter_full(redis_server: str, fake: FakeUpstream,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_stack(redis_server, tmp_path_factory.mktemp("drafter-full"), fake,
                       DRAFTGATE_DRAFTER_CLUSTER_MAX_CONCURRENT="1", DRAFTGATE_DRAFTER_QUEUE_TIMEOUT_S="0.2") as stack:
        client = redis.Redis.from_url(stack.redis_url)
        seconds, _ = client.time()
        client.zadd(queue_slots("drafter"), {"another-router:1": (seconds + 600) * 1000})  # its only slot, taken
        fake.script_model("fake-heavy", confident("The heavyweight answers."))
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("busy drafter"))
        assert raw.headers["X-Routing-Decision"] == "escalate"
        assert raw.headers["X-Escalation-Reason"] == "drafter_full"
        assert raw.parse().choices[0].message.content == "The heavyweight answers."
        assert not [seen for seen in fake.seen if seen.model == "fake-drafter"]


@pytest.mark.redis_flavours
async def test_a_wait_never_outlasts_the_request(redis_client: Redis) -> None:
    """queue_timeout_s of a minute, but the request's deadline is already past: refused after one look."""
    await queue(redis_client, "router-1", limit=1).acquire(HEAVY)
    late = queue(redis_client, "router-2", limit=1, timeout_s=60)

    async def expired_request() -> None:
        REQUEST_DEADLINE.set(time.time() - 1)  # this task's context only, as the worker sets it
        await late.acquire(HEAVY)

    with pytest.raises(TierFull):
        await asyncio.wait_for(expired_request(), 10)
