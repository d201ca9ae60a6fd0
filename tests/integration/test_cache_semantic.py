"""The semantic tier on both vector stores, behind the same tests: Qdrant Edge (the embedded
default, in its worker process) and qdrant-client's server engine. There is no Qdrant server
binary here (none on PyPI), so the server engine talks to qdrant-client's on-disk local mode,
which speaks the same client API, as the stand-in for a server."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from services.cache.keys import RequestKeys, request_keys, tenant_hash
from services.cache.semantic import Candidate, SemanticEntry, SemanticTier
from services.cache.vectors.base import Scope, VectorStore
from services.cache.vectors.edge import EdgeStore
from services.cache.vectors.server import ServerStore
from tests.integration.cache_helpers import chat, completion

COLLECTION = "test_cache"


@dataclass
class Stores:
    """Opens a tier on this test's store directory; open again to reopen after closing."""

    open: Callable[[], Awaitable[SemanticTier]]
    latest: VectorStore | None = None  # the store under the last tier opened, to count what the tier hides

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


@pytest.fixture(params=["edge", "server"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    tiers: list[SemanticTier] = []

    async def open_tier() -> SemanticTier:
        store: VectorStore = (
            EdgeStore(tmp_path / "edge", search_budget_s=30.0) if request.param == "edge"
            else ServerStore(AsyncQdrantClient(path=str(tmp_path / "server")), COLLECTION))
        opened.latest = store
        tier = SemanticTier(store)
        tiers.append(tier)
        await tier.open()
        return tier

    opened = Stores(open_tier)
    yield opened
    for tier in tiers:
        await tier.close()


def keys(question: str, tenant: str = "", system: str = "You are terse.") -> RequestKeys:
    return request_keys(chat(question, system=system), tenant)


def entry(question: str, vector: list[float], expires_at: float, tenant: str = "",
          system: str = "You are terse.") -> SemanticEntry:
    return SemanticEntry(keys(question, tenant, system), vector, completion(question), expires_at)


def at_cosine(cosine: float) -> list[float]:
    """A unit vector at this cosine from [1, 0]."""
    return [cosine, math.sqrt(1 - cosine * cosine)]


def answer(candidate: Candidate) -> str:
    return candidate.completion["choices"][0]["message"]["content"]


async def test_a_search_sees_only_its_own_partition(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    await tier.put([entry("same words", [1.0, 0.0], now + 60, system="Answer in French."),
                    entry("same words", [1.0, 0.0], now + 60, system="Answer in German.")])

    [found] = await tier.search(keys("same words", system="Answer in German."), [1.0, 0.0], 0.9, 4, now)
    assert found.completion["choices"][0]["message"]["content"] == "same words"
    assert found.text == "same words"
    assert await tier.search(keys("same words", system="Answer in Dutch."), [1.0, 0.0], 0.9, 4, now) == []
    assert await tier.count(now) == 2


async def test_a_search_sees_only_its_own_tenant(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    await tier.put([entry("shared question", [0.0, 1.0], now + 60, tenant="tenant-a")])

    assert len(await tier.search(keys("shared question", "tenant-a"), [0.0, 1.0], 0.9, 4, now)) == 1
    assert await tier.search(keys("shared question", "tenant-b"), [0.0, 1.0], 0.9, 4, now) == []


async def test_candidates_come_best_first_at_or_above_the_floor_and_at_most_the_limit(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    cosines = {"far": 0.70, "fair": 0.85, "good": 0.90, "close": 0.95, "closest": 0.99}
    await tier.put([entry(name, at_cosine(c), now + 60) for name, c in cosines.items()])
    query = keys("anything")  # same system prompt, so the same partition as every entry

    everything = await tier.search(query, [1.0, 0.0], 0.80, 10, now)
    assert [answer(c) for c in everything] == ["closest", "close", "good", "fair"]
    assert [c.similarity for c in everything] == pytest.approx([0.99, 0.95, 0.90, 0.85], abs=1e-4)
    assert [answer(c) for c in await tier.search(query, [1.0, 0.0], 0.80, 2, now)] == ["closest", "close"]
    assert [answer(c) for c in await tier.search(query, [1.0, 0.0], 0.92, 10, now)] == ["closest", "close"]


async def test_expired_entries_are_never_found_even_before_the_purge(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    await tier.put([entry("soon gone", [1.0, 0.0], now + 1)])
    assert await tier.search(keys("soon gone"), [1.0, 0.0], 0.9, 1, now)
    assert await tier.search(keys("soon gone"), [1.0, 0.0], 0.9, 1, now + 2) == []
    assert await tier.count(now + 2) == 0


async def test_purge_deletes_expired_entries_and_keeps_live_ones(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    await tier.put([entry("old", [1.0, 0.0], now - 1), entry("new", [0.0, 1.0], now + 60)])
    assert stores.latest is not None
    assert await stores.latest.count(Scope()) == 2

    await tier.purge(now)

    assert await stores.latest.count(Scope()) == 1
    assert await tier.search(keys("new"), [0.0, 1.0], 0.9, 1, now)


async def test_the_count_is_of_live_entries_only(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    assert await tier.count(now) == 0
    await tier.put([entry("live", [1.0, 0.0], now + 60), entry("dead", [0.0, 1.0], now - 1)])
    assert await tier.count(now) == 1


async def test_flush_removes_a_partition_a_tenant_or_everything_and_counts_live_entries(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    french, german = "Answer in French.", "Answer in German."
    await tier.put([entry("q1", [1.0, 0.0], now + 60, "a", french), entry("q2", [0.0, 1.0], now + 60, "a", french),
                    entry("q3", [1.0, 0.0], now - 1, "a", french),  # expired: deleted, not counted
                    entry("q1", [1.0, 0.0], now + 60, "a", german), entry("q1", [1.0, 0.0], now + 60, "b", french),
                    entry("q4", [0.0, 1.0], now + 60, "b", german)])
    a, b = tenant_hash("a"), tenant_hash("b")

    assert await tier.flush(now, a, keys("q1", "a", french).partition) == 2
    assert await tier.count(now) == 3
    assert await tier.flush(now, b) == 2
    assert await tier.search(keys("q1", "b", french), [1.0, 0.0], 0.9, 4, now) == []
    assert await tier.count(now) == 1
    assert await tier.flush(now) == 1
    assert stores.latest is not None
    assert await stores.latest.count(Scope()) == 0


async def test_entries_survive_a_restart_on_the_same_directory(stores: Stores) -> None:
    first = await stores.open()
    now = time.time()
    await first.put([entry("kept", [0.6, 0.8], now + 60)])
    await first.close()

    [hit] = await (await stores.open()).search(keys("kept"), [0.6, 0.8], 0.99, 1, now)
    assert answer(hit) == "kept"


async def test_a_new_embedding_size_replaces_the_collection(stores: Stores) -> None:
    tier = await stores.open()
    now = time.time()
    await tier.put([entry("two dims", [1.0, 0.0], now + 60)])
    await tier.put([entry("three dims", [0.0, 0.0, 1.0], now + 60)])
    assert await tier.count(now) == 1
    assert await tier.search(keys("two dims"), [1.0, 0.0], 0.5, 1, now) == []
    await tier.close()

    again = await stores.open()  # the new size is what a restart finds
    assert [answer(c) for c in await again.search(keys("x"), [0.0, 0.0, 1.0], 0.9, 4, now)] == ["three dims"]
