"""Qdrant Edge as the cache's store: its worker process and what happens when processes die,
the old local-mode directory, the HNSW index, and a cache of 100,000 entries."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
import pytest
from aiohttp.test_utils import TestServer
from qdrant_client import AsyncQdrantClient, models
from redis.asyncio import Redis

from services.cache.keys import RequestKeys, request_keys
from services.cache.semantic import SemanticTier
from services.cache.vectors.base import Point, Scope, VectorStoreError
from services.cache.vectors.edge import WORKER, EdgeStore
from services.cache.vectors.edge_shard import ShardStore
from shared.config import CacheConfig
from tests.integration.cache_helpers import PARAPHRASE, PARIS, cache_app, chat, remember, written
from tests.integration.minilm import embedder_app
from tests.support import Service, free_port

T = TypeVar("T")
MINILM_SIZE = 384
COLLECTION = CacheConfig().collection


async def eventually(probe: Callable[[], Awaitable[T]], timeout_s: float = 60.0) -> T:
    """The probe's first answer that is not a store error, polling until the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await probe()
        except VectorStoreError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


def unit_vectors(count: int, size: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, size)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def points_in(keys: RequestKeys, vectors: np.ndarray, start: int, expires_at: float) -> list[Point]:
    """Points in the partition of keys, with ids start, start + 1, ..."""
    return [Point(str(uuid.UUID(int=start + i)), vector.tolist(),
                  {"tenant": keys.tenant, "partition": keys.partition, "expires_at": expires_at,
                   "text": f"filler {start + i}", "completion": {"filler": start + i}})
            for i, vector in enumerate(vectors)]


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(process: psutil.Process, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not gone(process):
        assert time.monotonic() < deadline, f"process {process.pid} still running"
        await asyncio.sleep(0.05)


async def test_a_search_still_queued_past_its_deadline_is_refused_not_answered(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "shard", search_budget_s=0.0)
    try:
        await store.recreate(2)
        await store.upsert([Point(str(uuid.UUID(int=1)), [1.0, 0.0], {"tenant": "t", "expires_at": 1e12})])
        with pytest.raises(VectorStoreError, match="deadline"):
            await store.search([1.0, 0.0], Scope(), floor=0.5, limit=1, fields=[])
        assert await store.count(Scope()) == 1  # the worker is still there: only that search was refused
    finally:
        await store.close()


async def test_a_killed_worker_fails_its_calls_and_the_next_one_keeps_every_acknowledged_write(
        tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "shard", search_budget_s=30.0, restart_after_s=0.1)
    keys = request_keys(chat("filler"), "")
    acknowledged = 0

    async def write_until_killed() -> None:
        nonlocal acknowledged
        for batch in range(10_000):
            await store.upsert(points_in(keys, unit_vectors(100, 8, batch), batch * 100, 1e12))
            acknowledged += 100

    try:
        await store.recreate(8)
        writer = asyncio.create_task(write_until_killed())
        while acknowledged < 2_000:
            assert not writer.done()
            await asyncio.sleep(0.01)
        assert store.pid is not None and store.pid != os.getpid()
        os.kill(store.pid, signal.SIGKILL)
        with pytest.raises(VectorStoreError):
            await writer

        stored = await eventually(lambda: store.count(Scope()))  # a new worker, replaying the write-ahead log
        assert stored >= acknowledged
        assert await store.size() == 8
    finally:
        await store.close()


async def test_indexing_builds_the_hnsw_graph_and_searches_still_find_their_points(tmp_path: Path) -> None:
    shard = ShardStore(tmp_path / "shard")  # the worker's code, run here to look inside
    keys = request_keys(chat("filler"), "")
    vectors = unit_vectors(6_000, MINILM_SIZE, seed=7)  # past the indexing threshold (8 MB of vectors)
    try:
        shard.recreate(MINILM_SIZE)
        for start in range(0, len(vectors), 1_000):
            shard.upsert(points_in(keys, vectors[start:start + 1_000], start, 1e12))
        assert shard.indexed() == 0

        assert shard.maintain() is True

        assert shard.indexed() == 6_000
        for i in (0, 2_999, 5_999):
            [hit] = shard.search(vectors[i].tolist(), Scope(keys.tenant, keys.partition, live_at=0.0), 0.99, 1,
                                 ["completion"])
            assert hit.payload == {"completion": {"filler": i}}
    finally:
        shard.close()


async def test_a_cache_of_100000_entries_in_one_partition_answers_a_semantic_lookup(
        aiohttp_client, aiohttp_server, redis_url: str, redis_client: Redis, tmp_path: Path) -> None:
    keys = request_keys(chat(PARIS), "")
    store = EdgeStore(tmp_path / "q" / COLLECTION, search_budget_s=30.0)
    try:
        await store.recreate(MINILM_SIZE)
        for batch in range(100):  # random unit vectors: all in the lookup's own partition, none near it
            await store.upsert(points_in(keys, unit_vectors(1_000, MINILM_SIZE, batch), batch * 1_000, 1e12))
    finally:
        await store.close()
    embedder: TestServer = await aiohttp_server(embedder_app())
    cache = await aiohttp_client(cache_app(redis_url, embedder_url=str(embedder.make_url("")).rstrip("/"),
                                           qdrant_path=str(tmp_path / "q")))
    served = await remember(redis_client, chat(PARIS), "Paris.")
    await written(redis_client)

    found = await (await cache.post("/lookup", json={"tenant": "", "body": chat(PARAPHRASE)})).json()

    assert (found["hit"], found["tier"], found["completion"]) == (True, "semantic", served)
    stats = await (await cache.get("/cache/stats")).json()
    assert stats["semantic"]["entries"] == 100_001


async def make_local_mode_dir(path: Path) -> None:
    """A cache directory as qdrant-client's local mode (the old embedded default) wrote it."""
    client = AsyncQdrantClient(path=str(path))
    await client.create_collection(COLLECTION, vectors_config=models.VectorParams(
        size=MINILM_SIZE, distance=models.Distance.COSINE))
    await client.upsert(COLLECTION, points=[models.PointStruct(id=str(uuid.UUID(int=1)), vector=[0.1] * MINILM_SIZE,
                                                               payload={"expires_at": 1e12})])
    await client.close()


def cache_service(embedder_url: str, redis_url: str, qdrant_path: Path, log: Path) -> Service:
    port = free_port()
    env = {"DRAFTGATE_CACHE_PORT": str(port), "DRAFTGATE_REDIS_URL": redis_url,
           "DRAFTGATE_CACHE_EMBEDDER_URL": embedder_url, "DRAFTGATE_CACHE_QDRANT_PATH": str(qdrant_path),
           "DRAFTGATE_CACHE_EMBEDDER_TIMEOUT_S": "10"}
    return Service("services.cache", env, port, log)


async def semantic_hit(service: Service, question: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        while True:
            found = (await client.post("/lookup", json={"tenant": "", "body": chat(question)})).json()
            if found.get("tier") == "semantic":
                return found
            assert time.monotonic() < deadline, f"no semantic hit: {found}\n{service.logs()}"
            await asyncio.sleep(0.1)


async def test_an_old_local_mode_directory_is_moved_aside_with_one_log_line_and_the_cache_starts_empty(
        aiohttp_server, redis_url: str, redis_client: Redis, tmp_path: Path) -> None:
    old = tmp_path / "qdrant"
    await make_local_mode_dir(old)
    embedder: TestServer = await aiohttp_server(embedder_app())
    service = cache_service(str(embedder.make_url("")).rstrip("/"), redis_url, old, tmp_path / "cache.log")
    await asyncio.to_thread(service.start)
    try:
        async with httpx.AsyncClient(base_url=service.url) as client:
            assert (await client.get("/cache/stats")).json()["semantic"]["entries"] == 0
        served = await remember(redis_client, chat(PARIS), "Paris.")
        await written(redis_client)
        assert (await semantic_hit(service, PARAPHRASE))["completion"] == served
    finally:
        assert await asyncio.to_thread(service.stop) == 0, service.logs()
    assert (tmp_path / "qdrant.local-mode" / "meta.json").exists()
    assert (old / COLLECTION / "edge_config.json").exists()
    assert service.logs().count("old local-mode format") == 1, service.logs()


async def test_a_cache_killed_while_writing_frees_its_store_and_the_next_one_serves_what_it_stored(
        aiohttp_server, redis_url: str, redis_client: Redis, tmp_path: Path) -> None:
    embedder: TestServer = await aiohttp_server(embedder_app())
    embedder_url = str(embedder.make_url("")).rstrip("/")
    first = cache_service(embedder_url, redis_url, tmp_path / "q", tmp_path / "first.log")
    await asyncio.to_thread(first.start)
    second = cache_service(embedder_url, redis_url, tmp_path / "q", tmp_path / "second.log")
    try:
        served = await remember(redis_client, chat(PARIS), "Paris.")
        await semantic_hit(first, PARAPHRASE)
        assert first.proc is not None
        [worker] = [p for p in psutil.Process(first.proc.pid).children() if WORKER in " ".join(p.cmdline())]
        for i in range(300):  # writes in flight when the cache dies
            await remember(redis_client, chat(f"question number {i}"), f"answer {i}")

        await asyncio.to_thread(first.kill)
        await wait_gone(worker)  # its stdin closed with the cache: it lets go of the shard
        await asyncio.to_thread(second.start)

        assert (await semantic_hit(second, PARAPHRASE))["completion"] == served
        await written(redis_client)  # the writes the first cache never acknowledged, redelivered
    finally:
        await asyncio.to_thread(first.kill)
        assert await asyncio.to_thread(second.stop) == 0, second.logs()


def segments_bytes(shard: Path) -> int:
    """What the shard's segments take on disk (allocated blocks: their files are sparse)."""
    return sum(f.stat().st_blocks * 512 for f in (shard / "segments").rglob("*") if f.is_file())


async def test_purging_under_churn_keeps_the_shards_storage_bounded(tmp_path: Path) -> None:
    """The soak's cache with a 60 s TTL: every round stores as many entries as expire. Deleted
    points keep their space until the purge's maintain() vacuums their segment; without it the
    segments grew by the same amount every round (0.65 MB per 3,000 points of 16 floats)."""
    shard = tmp_path / "edge" / COLLECTION
    store = EdgeStore(shard, search_budget_s=30.0)
    tier = SemanticTier(store)
    keys = request_keys(chat(PARIS), "")
    per_round, ttl_rounds, rounds = 300, 10, 40
    await store.recreate(16)
    await tier.open()
    sizes = {}
    try:
        for n in range(rounds):
            vectors = unit_vectors(per_round, 16, seed=n)
            await store.upsert(points_in(keys, vectors, n * per_round, expires_at=n + ttl_rounds))
            await tier.purge(now=n)
            sizes[n + 1] = segments_bytes(shard)
        assert await tier.count(now=rounds - 1) == per_round * ttl_rounds
    finally:
        await tier.close()
    assert sizes[rounds] <= sizes[rounds // 2] * 1.2, sizes
