"""Redis faults under running services, through the real processes and the official client:
Redis killed and restarted empty while clients keep sending, connections killed, memory full.
Nothing may answer 500 or hang; everything recovers with no manual action."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from shared.keys import CACHE_WRITE_STREAM, MESSAGE_FIELD, REQUEST_STREAM, ROUTERS_ALIVE
from shared.messages import CacheWrite, encode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.cache_helpers import chat, completion
from tests.integration.stack import Stack, ask, start_stack
from tests.redis_servers import RedisServer
from tests.support import Service, free_port

CLIENTS = 8
ANSWER = "Redis came and went and this answer still arrived whole."
RECOVERY_S = 5.0  # requests sent this long after Redis is back must all succeed
# Quick reclaims and heartbeats, so the services notice and recover at test speed.
FAST = {"DRAFTGATE_BUS_RECLAIM_IDLE_MS": "1000", "DRAFTGATE_BUS_RECLAIM_INTERVAL_MS": "200",
        "DRAFTGATE_BUS_ROUTER_HEARTBEAT_S": "0.5", "DRAFTGATE_BUS_ROUTER_ALIVE_S": "3"}


@pytest.fixture
def private_redis(redis_flavour: str) -> Iterator[RedisServer]:
    """A Redis of the test's own, to kill and restart."""
    server = RedisServer(redis_flavour).start()
    yield server
    server.close()


@pytest.fixture
def chaos_stack(private_redis: RedisServer, fake: FakeUpstream, tmp_path: Path) -> Iterator[Stack]:
    fake.script_model("fake-drafter", confident(ANSWER, ttft_s=0.05, tokens_per_s=200))
    stack = start_stack(private_redis.url, tmp_path, fake, routers=2, **FAST)
    yield stack
    stack.stop()


@dataclass
class Outcome:
    sent: float
    done: float
    stream: bool
    status: int  # the HTTP status, or that of the error event that ended a stream; 0: no HTTP answer
    code: str | None = None
    content: str = ""


async def call(client: openai.AsyncOpenAI, prompt: str, stream: bool) -> Outcome:
    sent = time.monotonic()
    outcome = Outcome(sent, sent, stream, 200)
    try:
        if stream:
            chunks = await client.chat.completions.create(model="auto", messages=ask(prompt), stream=True)
            outcome.content = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            completion = await client.chat.completions.create(model="auto", messages=ask(prompt))
            outcome.content = completion.choices[0].message.content or ""
    except openai.APIStatusError as exc:
        outcome.status = exc.status_code
        outcome.code = (exc.body or {}).get("code") if isinstance(exc.body, dict) else None
    except openai.APIConnectionError:
        outcome.status = 0
    except openai.APIError as exc:  # an error event that ended a stream already under way
        body = exc.body if isinstance(exc.body, dict) else {}
        outcome.status = 503 if str(body.get("code", "")).startswith("bus_") else 502
        outcome.code = body.get("code")
    outcome.done = time.monotonic()
    return outcome


async def load(stack: Stack, until: Callable[[], bool]) -> list[Outcome]:
    """CLIENTS clients, half of them streaming, each sending one request after another."""
    client = stack.async_client(timeout=60)
    outcomes: list[Outcome] = []

    async def one_client(i: int) -> None:
        n = 0
        while not until():
            outcomes.append(await call(client, f"client {i} request {n}", stream=i % 2 == 1))
            n += 1

    await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    await client.close()
    return outcomes


def ready(url: str) -> int:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code
    except httpx.HTTPError:
        return 0


async def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds it took; fails the test past timeout_s."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def no_tracebacks(stack: Stack) -> None:
    for service in [stack.gateway, *stack.routers]:
        assert service is not None
        assert "Traceback" not in service.logs(), service.logs()[-3000:]


@pytest.mark.redis_flavours
async def test_redis_restarted_empty_under_load(chaos_stack: Stack, private_redis: RedisServer) -> None:
    """8 clients send (half streaming) while Redis is SIGKILLed and restarted with nothing in it,
    twice: at once (every pooled connection is dead: the case that answered 500), then after
    2 s down. No 500 and no hang; requests caught in it end 503 (or succeed); everything sent
    once Redis has been back RECOVERY_S is answered in full."""
    stack = chaos_stack
    stop = asyncio.Event()
    load_task = asyncio.create_task(load(stack, stop.is_set))
    restarts: list[tuple[float, float]] = []  # (killed, back)
    recovered: list[float] = []
    for down_s in (0.1, 2.0):
        await asyncio.sleep(2.0)
        killed = time.monotonic()
        private_redis.kill()
        await asyncio.sleep(down_s)
        private_redis.start()
        restarts.append((killed, time.monotonic()))
        recovered.append(await wait_until(lambda: ready(stack.url) == 200, 15, "gateway /ready after a restart"))
        await asyncio.sleep(RECOVERY_S + 2)
    stop.set()
    outcomes = await load_task

    statuses = sorted({o.status for o in outcomes})
    assert set(statuses) <= {200, 503}, [o for o in outcomes if o.status not in (200, 503)]
    assert all(o.code in ("bus_unavailable", "bus_restarted") for o in outcomes if o.status == 503)
    assert all(o.content == ANSWER for o in outcomes if o.status == 200)
    slowest = max(o.done - o.sent for o in outcomes)
    assert slowest < 10, f"a request took {slowest:.1f} s"
    for (_, back), (next_killed, _) in zip(restarts, [*restarts[1:], (float("inf"), 0.0)], strict=True):
        after = [o for o in outcomes if back + RECOVERY_S <= o.sent and o.done < next_killed]
        assert len(after) >= CLIENTS and all(o.status == 200 for o in after), [o for o in after if o.status != 200]
    first_ok = [min(o.done for o in outcomes if o.status == 200 and o.sent >= back) - back for _, back in restarts]
    print(f"\nRedis {private_redis.version()}: {len(outcomes)} requests, statuses {statuses}, "
          f"{sum(o.status == 503 for o in outcomes)} x 503, slowest {slowest:.2f} s; after each restart "
          f"/ready again in {', '.join(f'{r:.2f}' for r in recovered)} s, "
          f"first answer in {', '.join(f'{r:.2f}' for r in first_ok)} s")
    for router in stack.routers:
        assert ready(router.url) == 200
    no_tracebacks(stack)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def answered(stack: Stack, prompt: str = "hello") -> bool:
    completion = stack.client(timeout=30).chat.completions.create(model="auto", messages=ask(prompt))
    return completion.choices[0].message.content == ANSWER


async def test_killed_connections_are_retried_unnoticed(chaos_stack: Stack, private_redis: RedisServer) -> None:
    """CLIENT KILL drops every service's connections, blocked reads and the cancel subscription
    included: redis-py reconnects and resends, and the next requests succeed at once."""
    stack = chaos_stack
    admin = private_redis.client()
    assert answered(stack)
    for _ in range(3):
        killed = admin.client_kill_filter(_type="normal", skipme=True) + admin.client_kill_filter(_type="pubsub")
        assert killed >= 6
        assert answered(stack)
        outcomes = await asyncio.gather(*(call(stack.async_client(), f"q{i}", stream=i % 2 == 1) for i in range(8)))
        assert all(o.status == 200 and o.content == ANSWER for o in outcomes), outcomes
    no_tracebacks(stack)


async def test_full_memory_is_a_503_and_recovers(chaos_stack: Stack, private_redis: RedisServer) -> None:
    """maxmemory too small with noeviction: requests are refused with a 503 (never a 500), the
    routers' heartbeats fail so they report themselves not ready, and once memory is available
    again everything comes back on its own."""
    stack = chaos_stack
    admin = private_redis.client()
    assert answered(stack)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            stack.client().chat.completions.create(model="auto", messages=ask("no room"))
        assert refused.value.status_code == 503
        await wait_until(lambda: all(ready(r.url) == 503 for r in stack.routers), 10, "routers not ready")
        await wait_until(lambda: ready(stack.url) == 503, 10, "gateway not ready")
    finally:
        admin.config_set("maxmemory", "0")
    await wait_until(lambda: all(ready(r.url) == 200 for r in stack.routers), 10, "routers ready again")
    await wait_until(lambda: ready(stack.url) == 200, 10, "gateway ready again")
    assert answered(stack)
    assert "Traceback" not in "".join(r.logs() for r in stack.routers)


def remember(server: RedisServer, question: str, answer: str) -> None:
    """A cache write, published the way the router publishes it."""
    write = CacheWrite(request_id=question, body=chat(question), completion=completion(answer), tenant="",
                       created=time.time())
    server.client().xadd(CACHE_WRITE_STREAM, {MESSAGE_FIELD: encode(write)}, maxlen=1000)


def cached(cache: Service, question: str) -> bool:
    found = httpx.post(f"{cache.url}/lookup", json={"tenant": "", "body": chat(question)}, timeout=10)
    assert found.status_code == 200, found.text
    return found.json()["hit"]


@pytest.mark.redis_flavours
async def test_the_cache_service_rides_out_a_redis_restart(private_redis: RedisServer, tmp_path: Path) -> None:
    """Its writer loop is down (and /ready 503) while Redis is, lookups are misses meanwhile, and
    once Redis is back writes are stored again with no restart of the service."""
    port = free_port()
    env = {"DRAFTGATE_CACHE_PORT": str(port), "DRAFTGATE_REDIS_URL": f"{private_redis.url}/0",
           "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{free_port()}",
           "DRAFTGATE_CACHE_QDRANT_PATH": str(tmp_path / "q"), "DRAFTGATE_BUS_RECLAIM_INTERVAL_MS": "200"}
    cache = Service("services.cache", env, port, tmp_path / "cache.log").start()
    try:
        remember(private_redis, "before", "Stored before the restart.")
        await wait_until(lambda: cached(cache, "before"), 15, "the first write stored")
        assert ready(cache.url) == 200
        private_redis.kill()
        await wait_until(lambda: ready(cache.url) == 503, 15, "cache /ready 503 without Redis")
        assert not cached(cache, "before")
        private_redis.start()
        await wait_until(lambda: ready(cache.url) == 200, 15, "cache /ready again")
        remember(private_redis, "after", "Stored after the restart.")
        await wait_until(lambda: cached(cache, "after"), 15, "a write after the restart stored")
    finally:
        assert cache.stop() == 0
    assert "Traceback" not in cache.logs(), cache.logs()[-3000:]


async def test_a_router_whose_request_loop_fails_stops_beating_and_comes_back(chaos_stack: Stack,
                                                                               private_redis: RedisServer) -> None:
    """The request stream replaced by a string (every read fails with WRONGTYPE): the routers' request
    loops fail and retry, their heartbeats stop so the gateway is not ready (no router), clients get
    a 503; once the key is repaired everything recovers by itself."""
    stack = chaos_stack
    db = private_redis.client(db=int(stack.redis_url.rsplit("/", 1)[1]))
    assert answered(stack)
    db.delete(REQUEST_STREAM)
    db.set(REQUEST_STREAM, "not a stream")
    try:
        await wait_until(lambda: all(ready(r.url) == 503 for r in stack.routers), 10, "routers not ready")
        await wait_until(lambda: ready(stack.url) == 503, 10, "gateway without a live router")
        assert db.zcard(ROUTERS_ALIVE) == 0
        with pytest.raises(openai.APIStatusError) as refused:
            stack.client().chat.completions.create(model="auto", messages=ask("broken"))
        assert refused.value.status_code == 503
    finally:
        db.delete(REQUEST_STREAM)
    await wait_until(lambda: all(ready(r.url) == 200 for r in stack.routers), 10, "routers ready again")
    await wait_until(lambda: ready(stack.url) == 200, 10, "gateway ready again")
    assert answered(stack)
    for router in stack.routers:
        assert "loop step failed" in router.logs() and "loop recovered" in router.logs()
