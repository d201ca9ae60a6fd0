"""The micro-batcher: who shares a model call, and that everyone gets exactly their own rows back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.embedder.batcher import BatcherClosed, MicroBatcher
from tests.fakes.embedding_backend import CountingBackend, vector_of

HOUR_S = 3600.0


@asynccontextmanager
async def running(batcher: MicroBatcher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(batcher.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def rows(batch: object) -> list[list[float]]:
    return batch.vectors.tolist()  # type: ignore[attr-defined]


async def test_a_full_batch_goes_at_once_and_each_caller_gets_its_own_vector() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=8, max_wait_s=HOUR_S)
    async with running(batcher):
        texts = [f"question {i}" for i in range(8)]
        results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    assert backend.call_sizes == [8]
    assert [rows(r) for r in results] == [[vector_of(t)] for t in texts]
    assert [r.tokens for r in results] == [[2]] * 8


async def test_callers_queued_at_once_are_cut_into_batches_of_at_most_max_batch() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=4, max_wait_s=0)
    async with running(batcher):
        texts = [f"t{i}" for i in range(10)]
        results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    assert backend.call_sizes == [4, 4, 2]
    assert [rows(r)[0] for r in results] == [vector_of(t) for t in texts]


async def test_a_request_larger_than_max_batch_is_embedded_in_slices_and_answered_whole() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=4, max_wait_s=0)
    texts = [f"t{i}" for i in range(10)]
    async with running(batcher):
        result = await batcher.embed(texts)
    assert backend.call_sizes == [4, 4, 2]
    assert rows(result) == [vector_of(t) for t in texts]


async def test_a_request_is_never_split_to_fill_a_batch() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=4, max_wait_s=0)
    async with running(batcher):
        first, second = await asyncio.gather(batcher.embed(["a", "b", "c"]), batcher.embed(["d", "e", "f"]))
    assert backend.history == [["a", "b", "c"], ["d", "e", "f"]]
    assert rows(first) == [vector_of(t) for t in "abc"]
    assert rows(second) == [vector_of(t) for t in "def"]


async def test_requests_arriving_while_the_model_is_busy_share_the_next_call() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0)
    async with running(batcher):
        backend.hold()
        first = asyncio.create_task(batcher.embed(["first"]))
        await backend.started.wait()
        later = [asyncio.create_task(batcher.embed([f"later {i}"])) for i in range(5)]
        await asyncio.sleep(0)
        backend.release()
        await asyncio.gather(first, *later)
    assert backend.call_sizes == [1, 5]
    assert [rows(t.result())[0] for t in later] == [vector_of(f"later {i}") for i in range(5)]


async def test_under_concurrent_traffic_a_request_waits_for_company_within_max_wait() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0.5)
    async with running(batcher):
        await asyncio.gather(batcher.embed(["a"]), batcher.embed(["b"]))
        first = asyncio.create_task(batcher.embed(["early"]))
        await asyncio.sleep(0.01)
        await asyncio.gather(first, batcher.embed(["late"]))
    assert backend.history == [["a", "b"], ["early", "late"]]


async def test_a_lone_caller_on_a_quiet_service_is_not_held_for_company() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=HOUR_S)
    async with running(batcher):
        for text in ("one", "two"):
            await asyncio.wait_for(batcher.embed([text]), timeout=5)
    assert backend.history == [["one"], ["two"]]


async def test_a_backend_failure_reaches_that_batch_only() -> None:
    backend = CountingBackend()
    backend.fail_next(RuntimeError("model exploded"))
    batcher = MicroBatcher(backend, max_batch=8, max_wait_s=0)
    async with running(batcher):
        failed = await asyncio.gather(batcher.embed(["a"]), batcher.embed(["b"]), return_exceptions=True)
        after = await batcher.embed(["c"])
    assert [str(f) for f in failed] == ["model exploded", "model exploded"]
    assert rows(after) == [vector_of("c")]


async def test_a_caller_that_gave_up_is_skipped_and_the_others_are_served() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0)
    async with running(batcher):
        backend.hold()
        busy = asyncio.create_task(batcher.embed(["busy"]))
        await backend.started.wait()
        gone = asyncio.create_task(batcher.embed(["gone"]))
        kept = asyncio.create_task(batcher.embed(["kept"]))
        await asyncio.sleep(0)
        gone.cancel()
        backend.release()
        await asyncio.gather(busy, kept)
    assert backend.history == [["busy"], ["kept"]]
    assert rows(kept.result()) == [vector_of("kept")]


async def test_stopping_fails_every_waiting_caller() -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0)
    async with running(batcher) as task:
        backend.hold()
        in_model = asyncio.create_task(batcher.embed(["in the model"]))
        await backend.started.wait()
        queued = asyncio.create_task(batcher.embed(["queued"]))
        await asyncio.sleep(0)
        task.cancel()
        results = await asyncio.gather(in_model, queued, return_exceptions=True)
    assert all(isinstance(r, BatcherClosed) for r in results)


async def test_every_model_call_is_observed_with_its_size() -> None:
    seen: list[int] = []

    def observe(size: int, seconds: float) -> None:
        seen.append(size)

    batcher = MicroBatcher(CountingBackend(), max_batch=3, max_wait_s=0, observe=observe)
    async with running(batcher):
        await asyncio.gather(*(batcher.embed([str(i)]) for i in range(7)))
    assert seen == [3, 3, 1]


@pytest.mark.parametrize("callers", [1, 50])
async def test_many_concurrent_multi_input_callers_get_their_rows_in_order(callers: int) -> None:
    backend = CountingBackend()
    batcher = MicroBatcher(backend, max_batch=16, max_wait_s=0.002)
    requests = [[f"caller {c} input {i}" for i in range(1 + c % 4)] for c in range(callers)]
    async with running(batcher):
        results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    for texts, result in zip(requests, results, strict=True):
        assert rows(result) == [vector_of(t) for t in texts]
    assert max(backend.call_sizes) <= 16
    assert sum(backend.call_sizes) == sum(len(texts) for texts in requests)
