"""The whole stack as real processes, and what can be read from it while it runs.

Gateway, two routers, cache, embedder (the real MiniLM), Redis and the two fake upstreams of
bench/soak_upstream.py each run as their own process, so each one's CPU and memory can be read
with psutil. Shared by the soak and the mixed-load benchmark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bench.harness import Usage, child_process, fake_upstream, redis_server, tree_usage
from shared.keys import CACHE_WRITE_STREAM, REPLY_STREAM_PREFIX, REQUEST_STREAM
from tests.support import Service, free_port

SERVICES = ("gateway", "router-0", "router-1", "cache", "embedder")


@dataclass
class Stack:
    gateway: str
    routers: list[str]
    cache: str
    redis_url: str
    processes: dict[str, psutil.Process]  # the services, Redis and the fakes
    logs: dict[str, Path]  # each service's log file

    @property
    def metric_urls(self) -> dict[str, str]:
        """The services whose /metrics pages count what they did."""
        return {"gateway": self.gateway, "cache": self.cache,
                **{f"router-{i}": router for i, router in enumerate(self.routers)}}

    def usages(self) -> dict[str, Usage]:
        """Each process with its own workers (the cache's Qdrant Edge worker is the cache's cost)."""
        return {name: tree_usage(process) for name, process in self.processes.items()}


@contextlib.contextmanager
def full_stack(workdir: Path, **settings: str) -> Iterator[Stack]:
    """Starts everything; `settings` are more DRAFTGATE_* variables for every service."""
    with redis_server(workdir) as redis_url, \
            fake_upstream("drafter", module="bench.soak_upstream") as drafter_url, \
            fake_upstream("heavyweight", module="bench.soak_upstream") as heavy_url:
        ports = {name: free_port() for name in ("gateway", "cache", "embedder")}
        env = {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_LOGGING_LEVEL": "warning",
               "DRAFTGATE_DRAFTER_BASE_URL": drafter_url, "DRAFTGATE_DRAFTER_MODEL": "fake-drafter",
               "DRAFTGATE_HEAVYWEIGHT_BASE_URL": heavy_url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy",
               "DRAFTGATE_GATEWAY_PORT": str(ports["gateway"]),
               "DRAFTGATE_GATEWAY_CACHE_URL": f"http://127.0.0.1:{ports['cache']}",
               "DRAFTGATE_CACHE_PORT": str(ports["cache"]), "DRAFTGATE_EMBEDDER_PORT": str(ports["embedder"]),
               "DRAFTGATE_CACHE_EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
               "DRAFTGATE_CACHE_QDRANT_PATH": str(workdir / "qdrant"), **settings}
        services: dict[str, Service] = {}
        try:
            services["embedder"] = Service("services.embedder", env, ports["embedder"],
                                           workdir / "embedder.log").start(timeout_s=180)
            services["cache"] = Service("services.cache", env, ports["cache"], workdir / "cache.log").start(
                timeout_s=60)
            for index in range(2):
                port = free_port()
                services[f"router-{index}"] = Service("services.router", {**env, "DRAFTGATE_ROUTER_PORT": str(port)},
                                                      port, workdir / f"router-{index}.log").start()
            services["gateway"] = Service("services.gateway", env, ports["gateway"], workdir / "gateway.log").start(
                "/ready")
            processes = {name: psutil.Process(service.proc.pid) for name, service in services.items()
                         if service.proc is not None}
            processes["redis"] = psutil.Process(_redis_pid(redis_url))
            for role in ("drafter", "heavyweight"):
                processes[f"fake-{role}"] = child_process("bench.soak_upstream", role)
            yield Stack(gateway=services["gateway"].url, routers=[services[f"router-{i}"].url for i in range(2)],
                        cache=services["cache"].url, redis_url=redis_url, processes=processes,
                        logs={name: service.log_path for name, service in services.items()})
        finally:
            for service in reversed(services.values()):
                service.stop()


def _redis_pid(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


async def metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Every counter sample on a /metrics page, keyed `name{label="value",...}`."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def all_metrics(http: aiohttp.ClientSession, stack: Stack) -> dict[str, dict[str, float]]:
    return {name: await metrics(http, url) for name, url in stack.metric_urls.items()}


async def redis_sample(redis: Redis) -> dict[str, Any]:
    """Redis's memory, each stream's length, and the consumer groups' backlog (pending plus lag)."""
    replies = [key async for key in redis.scan_iter(match=f"{REPLY_STREAM_PREFIX}*", _type="stream")]
    lengths = {"requests": await redis.xlen(REQUEST_STREAM), "cache_writes": await redis.xlen(CACHE_WRITE_STREAM),
               "replies": sum([await redis.xlen(key) for key in replies])}
    backlog = {}
    for name, stream in (("requests", REQUEST_STREAM), ("cache_writes", CACHE_WRITE_STREAM)):
        backlog[name] = 0
        with contextlib.suppress(ResponseError):  # no such stream yet
            for group in await redis.xinfo_groups(stream):
                backlog[name] += int(group["pending"]) + int(group.get("lag") or 0)
    memory = await redis.info("memory")
    return {"used_memory_mb": round(memory["used_memory"] / 2**20, 2), "xlen": lengths,
            "group_backlog": sum(backlog.values()), "backlog": backlog, "reply_streams": len(replies)}
