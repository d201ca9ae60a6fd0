"""The cache service over HTTP with the real MiniLM, real Redis and Qdrant in local mode.

Writes arrive the way the router sends them: CacheWrite messages on the Redis stream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from services.cache.keys import request_keys
from shared import bus
from shared.config import CacheConfig
from shared.keys import CACHE_WRITE_STREAM
from tests.integration.cache_helpers import PARAPHRASE, PARIS, cache_app, chat, remember, written
from tests.integration.minilm import embedder_app

# The writer runs the shared consumer loop, whose XAUTOCLAIM answers differ between Redis 6.2 and 7.x.
pytestmark = pytest.mark.redis_flavours

FLOOR = CacheConfig().similarity_floor  # the configured recall floor


@pytest.fixture
async def embedder_url(aiohttp_server) -> str:
    server: TestServer = await aiohttp_server(embedder_app())
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def cache(aiohttp_client, redis_url: str, embedder_url: str, tmp_path: Path) -> TestClient:
    return await aiohttp_client(cache_app(redis_url, embedder_url=embedder_url, qdrant_path=str(tmp_path / "q")))


async def lookup(cache: TestClient, body: dict[str, Any], tenant: str = "") -> dict[str, Any]:
    response = await cache.post("/lookup", json={"tenant": tenant, "body": body})
    assert response.status == 200, await response.text()
    return await response.json()


async def stats(cache: TestClient) -> dict[str, Any]:
    response = await cache.get("/cache/stats")
    assert response.status == 200
    return await response.json()


async def flush(cache: TestClient, **target: str) -> dict[str, Any]:
    response = await cache.post("/cache/flush", json=target) if target else await cache.post("/cache/flush")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_paraphrase_hits_the_semantic_tier(cache: TestClient, redis_client: Redis) -> None:
    served = await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    found = await lookup(cache, chat(PARAPHRASE))

    assert found["hit"] is True
    assert found["tier"] == "semantic"
    assert FLOOR <= found["similarity"] < 1.0
    assert found["completion"] == served


async def test_the_same_request_hits_the_exact_tier_whatever_its_delivery_options(
        cache: TestClient, redis_client: Redis) -> None:
    served = await remember(redis_client, chat(PARIS, stream=True, user="someone"), "Paris.")
    await written(redis_client)

    found = await lookup(cache, chat(PARIS))

    assert (found["tier"], found["similarity"], found["completion"]) == ("exact", 1.0, served)
    assert found["partition"] == request_keys(chat(PARIS), "").partition


async def test_a_different_question_misses(cache: TestClient, redis_client: Redis) -> None:
    await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    assert await lookup(cache, chat("What is the capital of Germany?")) == {"hit": False}
    assert await lookup(cache, chat("What is the population of France?")) == {"hit": False}


async def test_the_same_question_in_another_context_or_for_another_tenant_misses(
        cache: TestClient, redis_client: Redis) -> None:
    await remember(redis_client, chat(PARIS), "Paris.", tenant="tenant-a")
    await written(redis_client)

    assert (await lookup(cache, chat(PARAPHRASE), tenant="tenant-a"))["hit"] is True
    for question in (PARIS, PARAPHRASE):
        assert await lookup(cache, chat(question), tenant="tenant-b") == {"hit": False}
        assert await lookup(cache, chat(question), tenant="") == {"hit": False}
        assert await lookup(cache, chat(question, system="You answer like a pirate."), "tenant-a") == {"hit": False}
        assert await lookup(cache, {**chat(question), "model": "heavyweight"}, "tenant-a") == {"hit": False}
        assert await lookup(cache, chat(question, temperature=0.2), "tenant-a") == {"hit": False}


async def test_requests_hotter_than_max_temperature_are_neither_stored_nor_answered(
        aiohttp_client, redis_url: str, redis_client: Redis, embedder_url: str, tmp_path: Path) -> None:
    writer = await aiohttp_client(cache_app(redis_url, embedder_url=embedder_url, max_temperature=0.5,
                                            qdrant_path=str(tmp_path / "a")))
    await remember(redis_client, chat(PARIS, temperature=0.9), "Paris, hotly.")
    await remember(redis_client, chat(PARIS, temperature=0.4), "Paris.")
    await written(redis_client)
    assert (await stats(writer))["exact"]["entries"] == 1
    assert (await lookup(writer, chat(PARIS, temperature=0.4)))["hit"] is True

    stricter = await aiohttp_client(cache_app(redis_url, embedder_url=embedder_url, max_temperature=0.3,
                                              qdrant_path=str(tmp_path / "b")))
    assert await lookup(stricter, chat(PARIS, temperature=0.4)) == {"hit": False}
    assert (await stats(stricter))["total"]["bypassed"] == 1


async def test_entries_expire_after_the_ttl_in_both_tiers(
        aiohttp_client, redis_url: str, redis_client: Redis, embedder_url: str, tmp_path: Path) -> None:
    ttl_s = 5
    cache = await aiohttp_client(cache_app(redis_url, embedder_url=embedder_url, ttl_s=ttl_s,
                                           qdrant_path=str(tmp_path / "q")))
    created = time.time()
    await remember(redis_client, chat(PARIS), "Paris.", created=created)
    await written(redis_client)
    assert (await lookup(cache, chat(PARIS)))["tier"] == "exact"
    assert (await lookup(cache, chat(PARAPHRASE)))["tier"] == "semantic"

    await asyncio.sleep(created + ttl_s + 0.2 - time.time())

    assert await lookup(cache, chat(PARIS)) == {"hit": False}
    assert await lookup(cache, chat(PARAPHRASE)) == {"hit": False}
    current = await stats(cache)
    assert (current["exact"]["entries"], current["semantic"]["entries"]) == (0, 0)


async def test_a_write_older_than_the_ttl_is_not_stored(cache: TestClient, redis_client: Redis) -> None:
    await remember(redis_client, chat(PARIS), "Paris.", created=time.time() - CacheConfig().ttl_s - 1)
    await written(redis_client)
    assert (await stats(cache))["total"]["entries"] == 0


async def test_flush_one_partition_one_tenant_or_everything(cache: TestClient, redis_client: Redis) -> None:
    pirate = "You answer like a pirate."
    await remember(redis_client, chat(PARIS), "Paris.")
    await remember(redis_client, chat(PARIS, system=pirate), "Arr, Paris.")
    await remember(redis_client, chat(PARIS), "Paris.", tenant="tenant-b")
    await written(redis_client)
    assert (await stats(cache))["total"]["entries"] == 6

    partition = request_keys(chat(PARIS), "").partition
    assert await flush(cache, partition=partition) == {"flushed": 2, "exact": 1, "semantic": 1}
    assert await lookup(cache, chat(PARAPHRASE)) == {"hit": False}
    assert (await lookup(cache, chat(PARAPHRASE, system=pirate)))["hit"] is True

    assert (await flush(cache, tenant="tenant-b"))["flushed"] == 2
    assert await lookup(cache, chat(PARIS), tenant="tenant-b") == {"hit": False}

    assert (await flush(cache))["flushed"] == 2
    assert await lookup(cache, chat(PARAPHRASE, system=pirate)) == {"hit": False}
    assert (await stats(cache))["total"]["entries"] == 0


async def test_stats_count_entries_hits_and_misses_per_tier(cache: TestClient, redis_client: Redis) -> None:
    await remember(redis_client, chat(PARIS), "Paris.")
    await remember(redis_client, chat("How do I boil an egg?"), "Boil it for nine minutes.")
    await written(redis_client)

    await lookup(cache, chat(PARIS))  # exact hit
    await lookup(cache, chat(PARAPHRASE))  # exact miss, semantic hit
    await lookup(cache, chat("Who painted the Mona Lisa?"))  # miss in both
    await lookup(cache, chat(PARIS, temperature=1.7))  # too hot: bypassed

    current = await stats(cache)
    assert current["exact"] == {"entries": 2, "hits": 1, "misses": 2, "hit_rate": 1 / 3, "errors": 0, "timeouts": 0}
    assert current["semantic"] == {"entries": 2, "hits": 1, "misses": 1, "hit_rate": 0.5, "errors": 0,
                                   "timeouts": 0, "rejected": {}}
    assert current["total"] == {"entries": 4, "lookups": 4, "hits": 2, "misses": 2, "hit_rate": 0.5, "bypassed": 1}


async def test_undecodable_or_malformed_writes_are_dropped_and_later_ones_still_land(
        cache: TestClient, redis_client: Redis) -> None:
    await bus.publish(redis_client, CACHE_WRITE_STREAM, b"not msgpack at all", maxlen=1000)
    await remember(redis_client, {"messages": "not a list"}, "?")
    await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    assert (await stats(cache))["exact"]["entries"] == 1
    assert (await lookup(cache, chat(PARIS)))["hit"] is True


@pytest.mark.parametrize(("payload", "param"), [
    ({"tenant": "t"}, "body"),
    ({"body": {"messages": []}}, "body.messages"),
    ({"body": {"messages": [{"content": "no role"}]}}, "body.messages.0.role"),
    ({"body": {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}}, "body.temperature"),
    ({"tenant": 7, "body": {"messages": [{"role": "user", "content": "hi"}]}}, "tenant"),
])
async def test_bad_lookups_are_openai_style_400s(cache: TestClient, payload: dict[str, Any], param: str) -> None:
    response = await cache.post("/lookup", json=payload)
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


async def test_non_json_bodies_and_bad_flush_targets_are_400s(cache: TestClient) -> None:
    assert (await cache.post("/lookup", data=b"{nope")).status == 400
    assert (await cache.post("/cache/flush", json={"partition": "not-a-partition"})).status == 400
    assert (await cache.post("/cache/flush", json={"everything": True})).status == 400


async def test_flush_one_tenants_partition_leaves_the_same_partition_of_others(
        cache: TestClient, redis_client: Redis) -> None:
    """What a client key's flush with a partition becomes: the gateway adds the caller's tenant."""
    await remember(redis_client, chat(PARIS), "Paris.", tenant="tenant-a")
    await remember(redis_client, chat(PARIS), "Paris.", tenant="tenant-b")
    await written(redis_client)
    partition = request_keys(chat(PARIS), "tenant-a").partition
    assert await flush(cache, tenant="tenant-a", partition=partition) == {"flushed": 2, "exact": 1, "semantic": 1}
    assert await lookup(cache, chat(PARIS), tenant="tenant-a") == {"hit": False}
    assert (await lookup(cache, chat(PARIS), tenant="tenant-b"))["hit"] is True
    # Another tenant's partition id names nothing of this tenant's.
    other = request_keys(chat(PARIS), "tenant-b").partition
    assert await flush(cache, tenant="tenant-a", partition=other) == {"flushed": 0, "exact": 0, "semantic": 0}


async def test_deeply_nested_operator_bodies_are_400s(cache: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/cache/flush", "/lookup"):
        response = await cache.post(path, data=deep)
        assert response.status == 400, path
        assert (await response.json())["error"]["type"] == "invalid_request_error"
