"""Cache hits as clients see them: latency through the gateway of exact hits and of semantic
hits (the embedding of the question included), with real MiniLM, Redis and embedded Qdrant.

`python -m bench.cache_hit`; results in bench/results/cache_hit.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import draftgate, fake_upstream, redis_server, summarize, write_result
from tests.support import Service, free_port

REQUESTS = 300
WARMUP = 30
SYSTEM = "You are a concise geography assistant."
STORED = "what's the capital city of France"
PARAPHRASE = "What is the capital of France?"


def chat(question: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}


@contextlib.contextmanager
def cache_services(redis_url: str, workdir: Path) -> Iterator[str]:
    cache_port, embedder_port = free_port(), free_port()
    env = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_CACHE_PORT": str(cache_port),
           "DRAFTGATE_EMBEDDER_PORT": str(embedder_port), "DRAFTGATE_LOGGING_LEVEL": "warning",
           "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{embedder_port}",
           "DRAFTGATE_CACHE_QDRANT_PATH": str(workdir / "qdrant")}
    embedder = Service("services.embedder", env, embedder_port, workdir / "embedder.log").start(timeout_s=180)
    cache = Service("services.cache", env, cache_port, workdir / "cache.log").start(timeout_s=60)
    try:
        yield cache.url
    finally:
        cache.stop()
        embedder.stop()


async def timed(session: aiohttp.ClientSession, url: str, body: dict[str, Any], expected: str) -> float:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        if response.headers.get("X-Cache") != expected:
            raise RuntimeError(f"expected an {expected} hit, got {response.headers.get('X-Routing-Decision')}")
    return (time.perf_counter() - started) * 1000


async def measure(gateway_url: str) -> dict[str, Any]:
    url = f"{gateway_url}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=chat(STORED)) as response:
            await response.read()
        await _until_stored(session, gateway_url)
        results = {}
        for name, question in (("exact", STORED), ("semantic", PARAPHRASE)):
            for _ in range(WARMUP):
                await timed(session, url, chat(question), name)
            results[f"{name}_hit"] = summarize([await timed(session, url, chat(question), name)
                                                for _ in range(REQUESTS)])
    return {**results, "targets": {"semantic_hit_p50_ms_max": 15.0, "exact_hit_p50_ms_max": 3.0}}


async def _until_stored(session: aiohttp.ClientSession, gateway_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(f"{gateway_url}/cache/stats") as response:
            if (await response.json())["exact"]["entries"] >= 1:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the accepted draft never reached the cache")


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as redis_url, cache_services(redis_url, workdir) as cache_url, \
                fake_upstream("--port", "0", "--tokens", "8") as upstream_url, \
                draftgate(redis_url, upstream_url, upstream_url, workdir,
                          DRAFTGATE_GATEWAY_CACHE_URL=cache_url) as deployment:
            result = asyncio.run(measure(deployment.gateway))
    path = write_result("cache_hit", result)
    print(f"cache_hit: through the gateway, exact hit p50 {result['exact_hit']['p50_ms']} ms "
          f"(p99 {result['exact_hit']['p99_ms']}), semantic hit p50 {result['semantic_hit']['p50_ms']} ms "
          f"(p99 {result['semantic_hit']['p99_ms']}) -> {path}")
    return result


if __name__ == "__main__":
    main()
