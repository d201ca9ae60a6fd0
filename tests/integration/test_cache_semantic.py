"""The semantic tier on a real on-disk local Qdrant: expiry, purge, persistence, resizing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from services.cache.keys import RequestKeys, request_keys
from services.cache.semantic import SemanticEntry, SemanticTier
from tests.integration.cache_helpers import chat, completion

COLLECTION = "test_cache"


@pytest.fixture
async def qdrant(tmp_path: Path) -> AsyncIterator[AsyncQdrantClient]:
    client = AsyncQdrantClient(path=str(tmp_path / "qdrant"))
    yield client
    await client.close()


async def opened(client: AsyncQdrantClient) -> SemanticTier:
    tier = SemanticTier(client, COLLECTION, indexed=False)
    await tier.open()
    return tier


def entry(question: str, vector: list[float], expires_at: float) -> SemanticEntry:
    return SemanticEntry(request_keys(chat(question), ""), vector, completion(question), expires_at)


def keys(question: str) -> RequestKeys:
    return request_keys(chat(question), "")


async def test_purge_deletes_expired_points_and_keeps_live_ones(qdrant: AsyncQdrantClient) -> None:
    tier = await opened(qdrant)
    now = time.time()
    await tier.put([entry("old", [1.0, 0.0], now - 1), entry("new", [0.0, 1.0], now + 60)])
    assert (await qdrant.count(COLLECTION)).count == 2

    await tier.purge(now)

    assert (await qdrant.count(COLLECTION)).count == 1
    assert await tier.search(keys("new"), [0.0, 1.0], 0.9, 1, now)


async def test_expired_points_are_never_found_even_before_the_purge(qdrant: AsyncQdrantClient) -> None:
    tier = await opened(qdrant)
    now = time.time()
    await tier.put([entry("soon gone", [1.0, 0.0], now + 1)])
    assert await tier.search(keys("soon gone"), [1.0, 0.0], 0.9, 1, now)
    assert await tier.search(keys("soon gone"), [1.0, 0.0], 0.9, 1, now + 2) == []
    assert await tier.count(now + 2) == 0


async def test_entries_survive_a_restart_on_the_same_path(tmp_path: Path) -> None:
    now = time.time()
    first = AsyncQdrantClient(path=str(tmp_path / "qdrant"))
    await (await opened(first)).put([entry("kept", [0.6, 0.8], now + 60)])
    await first.close()

    second = AsyncQdrantClient(path=str(tmp_path / "qdrant"))
    try:
        [hit] = await (await opened(second)).search(keys("kept"), [0.6, 0.8], 0.99, 1, now)
    finally:
        await second.close()
    assert hit.completion["choices"][0]["message"]["content"] == "kept"


async def test_a_new_embedding_size_replaces_the_collection(qdrant: AsyncQdrantClient) -> None:
    tier = await opened(qdrant)
    now = time.time()
    await tier.put([entry("two dims", [1.0, 0.0], now + 60)])
    await tier.put([entry("three dims", [0.0, 0.0, 1.0], now + 60)])
    assert await tier.count(now) == 1
    assert await tier.search(keys("two dims"), [1.0, 0.0], 0.5, 1, now) == []
