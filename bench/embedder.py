"""Embedder throughput: micro-batched versus one model call per input, 32 concurrent callers.

`python -m bench.embedder` starts the embedder twice as a real process on the local MiniLM:
once as configured (max_batch 64, max_wait 2 ms) and once with max_batch 1, which forces one model
call per input. Each time 32 callers send one string per request, back to back, over HTTP.
Writes bench/results/embedder.json; the target is batched >= 3.5x one-per-input.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import summarize, write_result
from shared.config import load_config
from tests.support import Service, free_port

CALLERS = 32
TARGET_RATIO = 3.5
SUBJECTS = ["the weather in Lisbon", "a recipe for bread", "the capital of Peru", "how tides work",
            "the history of the violin", "a good name for a cat", "sorting algorithms", "the price of gold",
            "how vaccines work", "the rules of chess", "a poem about autumn", "the speed of light"]


def texts(count: int) -> list[str]:
    """Short, distinct questions of chat-prompt length (about 10-15 tokens)."""
    return [f"Could you tell me something about {SUBJECTS[i % len(SUBJECTS)]}, question number {i}?"
            for i in range(count)]


async def drive(url: str, inputs: list[str], callers: int) -> dict[str, Any]:
    """`callers` workers send one input per request until all inputs are embedded."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in inputs:
        queue.put_nowait(text)
    latencies: list[float] = []

    async def caller(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            text = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, json={"input": text, "model": "all-MiniLM-L6-v2",
                                               "encoding_format": "base64"}) as response:
                assert response.status == 200, await response.text()
                await response.read()
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(callers)))
        elapsed = time.perf_counter() - started
    return {"inputs": len(inputs), "seconds": round(elapsed, 3), "inputs_per_s": round(len(inputs) / elapsed, 1),
            "request_latency": summarize(latencies)}


def measure(workdir: Path, name: str, max_batch: int, inputs: int) -> dict[str, Any]:
    port = free_port()
    env = {"DRAFTGATE_EMBEDDER_PORT": str(port), "DRAFTGATE_EMBEDDER_MAX_BATCH": str(max_batch),
           "DRAFTGATE_LOGGING_LEVEL": "warning"}
    service = Service("services.embedder", env, port, workdir / f"embedder-{name}.log").start(timeout_s=300)
    try:
        url = f"{service.url}/v1/embeddings"
        asyncio.run(drive(url, texts(CALLERS), CALLERS))  # warm-up: connections, allocator, caches
        result = asyncio.run(drive(url, texts(inputs), CALLERS))
    finally:
        service.stop()
    return {"max_batch": max_batch, **result}


def main() -> dict[str, Any]:
    settings = load_config().embedder
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-embedder-") as tmp:
        one_per_input = measure(Path(tmp), "one-per-input", 1, inputs=320)
        batched = measure(Path(tmp), "batched", settings.max_batch, inputs=1280)
    ratio = round(batched["inputs_per_s"] / one_per_input["inputs_per_s"], 2)
    result = {"model": settings.model, "backend": settings.backend, "callers": CALLERS,
              "max_wait_ms": settings.max_wait_ms, "cpus": os.cpu_count(),
              "batched": batched, "one_per_input": one_per_input, "speedup": ratio, "target_speedup": TARGET_RATIO,
              "meets_target": ratio >= TARGET_RATIO,
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    write_result("embedder", result)
    print(f"embedder: batched {batched['inputs_per_s']} inputs/s, one per input {one_per_input['inputs_per_s']} "
          f"inputs/s at {CALLERS} callers: {ratio}x (target >= {TARGET_RATIO}x)")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
