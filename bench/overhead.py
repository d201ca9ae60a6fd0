"""What draftgate adds: gateway -> Redis -> router -> fake upstream, against the fake called
directly, at 1 client (added latency p50/p99) and at 32 clients (requests/s), accept path.

The 32-client figures come from wrk when it is installed (bench/wrk.py says why), and always
also from the Python load generator.

`python -m bench.overhead`; results in bench/results/overhead.json.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench import wrk
from bench.harness import draftgate, fake_upstream, redis_server, summarize, write_result
from services.router.upstream import create_tier, open_chunks, stream_params
from shared.config import UpstreamConfig

SEQUENTIAL_REQUESTS = 1000
CONCURRENT_CLIENTS = 32
ROUTERS = 2  # one per core, as a deployment on this 2-core machine would run them
WRK_SECONDS = 10
CONCURRENT_REQUESTS = 4000
WARMUP_REQUESTS = 100
ANSWER_TOKENS = "16"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


async def one(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return (time.perf_counter() - started) * 1000


async def sequential(session: aiohttp.ClientSession, url: str, body: dict[str, Any], count: int) -> list[float]:
    return [await one(session, url, body) for _ in range(count)]


async def concurrent(session: aiohttp.ClientSession, url: str, body: dict[str, Any], clients: int,
                     total: int) -> dict[str, float]:
    remaining = total
    latencies: list[float] = []

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            latencies.append(await one(session, url, body))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests_per_s": round(len(latencies) / elapsed, 1), **summarize(latencies)}


async def sdk_stream_calls(upstream_url: str, count: int) -> list[float]:
    """The router's own upstream call (its transport, streamed with log-probs) made directly: the
    share of the added latency that the mandated client costs by itself."""
    tier = create_tier("drafter", UpstreamConfig(base_url=upstream_url, model="fake-drafter"), {})
    params = stream_params({"messages": MESSAGES}, tier.model, min_top_logprobs=5)
    latencies = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            async with open_chunks(tier, params) as chunks:
                async for _chunk in chunks:
                    pass
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await tier.client.close()
    return latencies


async def measure(upstream_url: str, gateway_url: str) -> dict[str, Any]:
    direct = (f"{upstream_url}/chat/completions", {"model": "fake-drafter", "messages": MESSAGES})
    through = (f"{gateway_url}/v1/chat/completions", {"model": "auto", "messages": MESSAGES})
    connector = aiohttp.TCPConnector(limit=CONCURRENT_CLIENTS * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url, body in (direct, through):
            await sequential(session, url, body, WARMUP_REQUESTS)
        direct_one = summarize(await sequential(session, *direct, SEQUENTIAL_REQUESTS))
        await sdk_stream_calls(upstream_url, WARMUP_REQUESTS)
        sdk_one = summarize(await sdk_stream_calls(upstream_url, SEQUENTIAL_REQUESTS))
        through_one = summarize(await sequential(session, *through, SEQUENTIAL_REQUESTS))
        direct_many = await concurrent(session, *direct, CONCURRENT_CLIENTS, CONCURRENT_REQUESTS)
        through_many = await concurrent(session, *through, CONCURRENT_CLIENTS, CONCURRENT_REQUESTS)
    return {
        "one_client": {"direct": direct_one, "draftgate": through_one, "upstream_call_direct": sdk_one,
                       "added_p50_ms": round(through_one["p50_ms"] - direct_one["p50_ms"], 3),
                       "added_p99_ms": round(through_one["p99_ms"] - direct_one["p99_ms"], 3)},
        f"{CONCURRENT_CLIENTS}_clients_python_load_generator": {"direct": direct_many, "draftgate": through_many},
        "targets": {"added_p50_ms_max": 2.0, "draftgate_requests_per_s_min": 1500},
    }


def many_clients(upstream_url: str, gateway_url: str, result: dict[str, Any]) -> dict[str, Any]:
    """The headline 32-client figures: wrk's if it is installed, else the Python generator's."""
    if not wrk.available():
        return {"load_generator": "python", **result[f"{CONCURRENT_CLIENTS}_clients_python_load_generator"]}
    return {"load_generator": "wrk",
            "direct": wrk.post_load(f"{upstream_url}/chat/completions", {"model": "fake-drafter", "messages": MESSAGES},
                                    CONCURRENT_CLIENTS, WRK_SECONDS),
            "draftgate": wrk.post_load(f"{gateway_url}/v1/chat/completions", {"model": "auto", "messages": MESSAGES},
                                       CONCURRENT_CLIENTS, WRK_SECONDS)}


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as redis_url, \
                fake_upstream("--port", "0", "--tokens", ANSWER_TOKENS) as upstream_url, \
                draftgate(redis_url, upstream_url, upstream_url, workdir, routers=ROUTERS) as deployment:
            # The load generator on uvloop too: the less CPU it takes, the more is left to measure.
            result = uvloop.run(measure(upstream_url, deployment.gateway))
            result[f"{CONCURRENT_CLIENTS}_clients"] = many_clients(upstream_url, deployment.gateway, result)
    path = write_result("overhead", result)
    one_client, many = result["one_client"], result[f"{CONCURRENT_CLIENTS}_clients"]
    python_many = result[f"{CONCURRENT_CLIENTS}_clients_python_load_generator"]
    print(f"overhead: added latency p50 {one_client['added_p50_ms']} ms, p99 {one_client['added_p99_ms']} ms "
          f"(1 client; the router's streamed upstream call alone: p50 "
          f"{one_client['upstream_call_direct']['p50_ms']} ms); "
          f"{many['draftgate']['requests_per_s']} req/s through draftgate vs "
          f"{many['direct']['requests_per_s']} direct ({CONCURRENT_CLIENTS} clients, {many['load_generator']}; "
          f"Python load generator: {python_many['draftgate']['requests_per_s']}) -> {path}")
    return result


if __name__ == "__main__":
    main()
