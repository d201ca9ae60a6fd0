"""When Redis, Qdrant or the embedder is down, the cache answers misses instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from services.embedder.app import create_app as create_embedder
from shared.config import load_config
from tests.fakes.embedding_backend import CountingBackend
from tests.integration.cache_helpers import PARAPHRASE, PARIS, cache_app, chat, remember, written
from tests.integration.minilm import embedder_app
from tests.support import Service, free_port


@pytest.fixture
async def embedder_url(aiohttp_server) -> str:
    server: TestServer = await aiohttp_server(embedder_app())
    return str(server.make_url("")).rstrip("/")


def nowhere() -> str:
    """A URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


async def lookup(cache: TestClient, body: dict[str, Any], **options: Any) -> dict[str, Any]:
    response = await cache.post("/lookup", json={"tenant": "", "body": body, **options})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_embedder_down_semantic_misses_while_the_exact_tier_still_works(
        aiohttp_client, redis_url: str, redis_client: Redis, tmp_path: Path) -> None:
    cache = await aiohttp_client(cache_app(redis_url, embedder_url=nowhere(), qdrant_path=str(tmp_path / "q")))
    served = await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    assert (await lookup(cache, chat(PARIS)))["completion"] == served
    assert await lookup(cache, chat(PARAPHRASE)) == {"hit": False}
    stats = await (await cache.get("/cache/stats")).json()
    assert stats["semantic"]["errors"] == 1
    assert (stats["exact"]["entries"], stats["semantic"]["entries"]) == (1, 0)
    metrics = await (await cache.get("/metrics")).text()
    assert 'draftgate_cache_writes_total{result="semantic_error"} 1.0' in metrics
    assert 'draftgate_cache_lookups_total{result="error",tier="semantic"} 1.0' in metrics


async def test_a_write_waits_for_a_busy_embedder_longer_than_a_lookup_would(
        aiohttp_client, aiohttp_server, redis_url: str, redis_client: Redis, tmp_path: Path) -> None:
    """The soak's 2,294 semantic_error writes: a batch of 64 texts behind a burst of lookups took
    longer than the lookups' embedder timeout, and the whole batch went to the exact tier only."""
    config = load_config(env={})
    backend = CountingBackend()
    backend.model = config.embedder.model
    embedder = await aiohttp_server(create_embedder(config, backend=backend))
    cache = await aiohttp_client(cache_app(redis_url, embedder_url=str(embedder.make_url("")).rstrip("/"),
                                           embedder_timeout_s=0.2, embedder_write_timeout_s=5.0,
                                           qdrant_path=str(tmp_path / "q")))
    backend.hold()
    await remember(redis_client, chat(PARIS), "Paris.")
    await asyncio.wait_for(backend.started.wait(), 10)
    await asyncio.sleep(0.5)  # busy for longer than a lookup waits
    backend.release()
    await written(redis_client)

    stats = await (await cache.get("/cache/stats")).json()
    assert (stats["exact"]["entries"], stats["semantic"]["entries"]) == (1, 1)
    metrics = await (await cache.get("/metrics")).text()
    assert "semantic_error" not in metrics
    assert backend.call_sizes == [1]  # one embedding, for the write


async def test_qdrant_down_semantic_misses_while_the_exact_tier_still_works(
        aiohttp_client, redis_url: str, redis_client: Redis, embedder_url: str) -> None:
    cache = await aiohttp_client(cache_app(redis_url, embedder_url=embedder_url, qdrant_url=nowhere()))
    await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    assert (await lookup(cache, chat(PARIS)))["tier"] == "exact"
    assert await lookup(cache, chat(PARAPHRASE)) == {"hit": False}
    assert (await (await cache.get("/cache/stats")).json())["semantic"]["errors"] == 1


async def test_redis_down_lookups_miss_stats_answer_and_flush_says_unavailable(
        aiohttp_client, embedder_url: str, tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    cache = await aiohttp_client(cache_app(dead_redis, embedder_url=embedder_url, qdrant_path=str(tmp_path / "q")))

    # Given time, the Redis client gives up after its reconnect retries (about 1.2 s): an error.
    assert await lookup(cache, chat(PARIS), timeout_s=30) == {"hit": False}
    # The gateway waits 0.5 s: the lookup stops before that, a counted miss, not a gateway timeout.
    assert await lookup(cache, chat(PARIS)) == {"hit": False}
    stats = await cache.get("/cache/stats")
    assert stats.status == 200
    exact = (await stats.json())["exact"]
    assert (exact["errors"], exact["timeouts"], exact["misses"]) == (1, 1, 2)
    flushed = await cache.post("/cache/flush")
    assert flushed.status == 503
    assert (await flushed.json())["error"]["code"] == "cache_store_unavailable"


def test_the_cache_runs_as_a_process_and_degrades_without_an_embedder(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"DRAFTGATE_CACHE_PORT": str(port), "DRAFTGATE_REDIS_URL": redis_url,
           "DRAFTGATE_CACHE_EMBEDDER_URL": nowhere(), "DRAFTGATE_CACHE_QDRANT_PATH": str(tmp_path / "q")}
    service = Service("services.cache", env, port, tmp_path / "cache.log").start()
    try:
        health = httpx.get(service.url + "/health")
        found = httpx.post(service.url + "/lookup", json={"tenant": "", "body": chat(PARAPHRASE)})
        metrics = httpx.get(service.url + "/metrics").text
    finally:
        assert service.stop() == 0, service.logs()
    assert health.json()["status"] == "ok"
    assert (found.status_code, found.json()) == (200, {"hit": False})
    assert "draftgate_cache_lookups_total" in metrics
