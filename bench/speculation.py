"""Serial versus speculative escalation on a mixed workload (70% confident, 30% uncertain)
through fake upstreams with realistic speeds; 200 requests each, streamed.

`python -m bench.speculation`; results in bench/results/speculation.json.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import draftgate, fake_upstream, redis_server, summarize, write_result
from bench.speculation_upstream import BLIP, CONFIDENT, UNSURE

REQUESTS = 200
CLIENTS = 8
SEED = 7


def workload() -> list[str]:
    """140 confident prompts (30 of them with a recoverable blip) and 60 uncertain ones, shuffled."""
    prompts = [f"{CONFIDENT} q{i}" for i in range(110)] + [f"{BLIP} q{i}" for i in range(30)] + \
              [f"{UNSURE} q{i}" for i in range(60)]
    random.Random(SEED).shuffle(prompts)
    return prompts


async def one(session: aiohttp.ClientSession, url: str, prompt: str) -> dict[str, Any]:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    started = time.perf_counter()
    first_token = None
    async with session.post(url, json=body) as response:
        decision = response.headers.get("X-Routing-Decision")
        speculation = response.headers.get("X-Speculation")
        async for line in response.content:
            if first_token is None and line.startswith(b"data: {") and b'"content":"' in line:
                data = json.loads(line[6:])
                if data["choices"] and data["choices"][0]["delta"].get("content"):
                    first_token = time.perf_counter()
    finished = time.perf_counter()
    return {"decision": decision, "speculation": speculation, "total_ms": (finished - started) * 1000,
            "ttft_ms": ((first_token or finished) - started) * 1000}


async def run_workload(gateway_url: str) -> list[dict[str, Any]]:
    prompts = workload()
    results: list[dict[str, Any]] = []
    url = f"{gateway_url}/v1/chat/completions"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def client() -> None:
            while prompts:
                results.append(await one(session, url, prompts.pop()))

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return results


def router_counter(metrics: str, name: str, label: str = "") -> float:
    """Sum a counter's samples (those carrying `label`, when given) from a /metrics page."""
    pattern = rf"^{name}(\{{[^}}]*\}})? (\S+)$"
    return sum(float(value) for labels, value in re.findall(pattern, metrics, re.MULTILINE) if label in labels)


async def router_metrics(router_url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{router_url}/metrics") as response:
        return await response.text()


def describe(results: list[dict[str, Any]], metrics: str) -> dict[str, Any]:
    escalated = [r for r in results if r["decision"] == "escalate"]
    decisions = {r["decision"] for r in results}
    if not escalated or "accept" not in decisions:
        raise RuntimeError("INVALID run: the workload needs accepted and escalated answers, got "
                           f"{sorted(map(str, decisions))}")
    served = router_counter(metrics, "draftgate_upstream_completion_tokens_total", 'tier="heavyweight"')
    wasted = router_counter(metrics, "draftgate_speculation_wasted_tokens_total")
    return {
        "requests": len(results),
        "escalated": len(escalated),
        "speculation_headers": {k: sum(1 for r in results if r["speculation"] == k)
                                for k in ("none", "cancelled", "used")},
        "escalated_total": summarize([r["total_ms"] for r in escalated]),
        "escalated_ttft": summarize([r["ttft_ms"] for r in escalated]),
        "accepted_total": summarize([r["total_ms"] for r in results if r["decision"] == "accept"]),
        "heavyweight_tokens_served": served,
        "heavyweight_tokens_wasted": wasted,
        "speculations_skipped": router_counter(metrics, "draftgate_speculations_skipped_total"),
    }


def run_mode(redis_url: str, drafter_url: str, heavy_url: str, logs: Path, **env: str) -> dict[str, Any]:
    with draftgate(redis_url, drafter_url, heavy_url, logs, **env) as deployment:
        results = asyncio.run(run_workload(deployment.gateway))
        metrics = asyncio.run(router_metrics(deployment.routers[0]))
    return describe(results, metrics)


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as redis_url, \
                fake_upstream("drafter", module="bench.speculation_upstream") as drafter_url, \
                fake_upstream("heavyweight", module="bench.speculation_upstream") as heavy_url:
            # Buffered streams: what this compares is escalation (serial or speculative); progressive
            # streaming, the default since #16, decides in the last chunk and is bench/progressive.py's.
            serial = run_mode(redis_url, drafter_url, heavy_url, workdir, DRAFTGATE_ROUTING_STREAM_MODE="buffered",
                              DRAFTGATE_ROUTING_SPECULATION_THRESHOLD="null")
            speculative = run_mode(redis_url, drafter_url, heavy_url, workdir, DRAFTGATE_ROUTING_STREAM_MODE="buffered")
    serial_p50 = serial["escalated_total"]["p50_ms"]
    result = {
        "serial": serial,
        "speculative": speculative,
        "escalated_p50_reduction": round(1 - speculative["escalated_total"]["p50_ms"] / serial_p50, 3),
        "escalated_ttft_p50_reduction": round(
            1 - speculative["escalated_ttft"]["p50_ms"] / serial["escalated_ttft"]["p50_ms"], 3),
        "wasted_fraction": round(speculative["heavyweight_tokens_wasted"]
                                 / max(speculative["heavyweight_tokens_served"], 1), 3),
        "targets": {"escalated_p50_reduction_min": 0.30, "wasted_fraction_max": 0.10},
    }
    path = write_result("speculation", result)
    print(f"speculation: escalated p50 {serial_p50:.0f} ms serial -> {speculative['escalated_total']['p50_ms']:.0f} ms "
          f"speculative ({result['escalated_p50_reduction']:.0%} lower; TTFT "
          f"{result['escalated_ttft_p50_reduction']:.0%} lower); wasted heavyweight tokens "
          f"{result['wasted_fraction']:.1%} of served -> {path}")
    return result


if __name__ == "__main__":
    main()
