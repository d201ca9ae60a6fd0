"""Semantic-store lookups as the cache grows: 1,000, 10,000 and 100,000 entries, for each engine.

`python -m bench.cache_scale [--sizes 1000,10000,100000] [--server-queries 200,50,10] [--engines edge,server]` fills a
store with random unit vectors (384 dimensions, MiniLM's size), all in one tenant's partition: the
worst case, since a filter that keeps everything leaves the whole search to the vector index.
Queries are stored vectors moved to cosine ~0.9, so each has exactly one answer above the floor
(recall is reported). For each engine and size: build and index time, search p50/p99, CPU ms per
search (this process plus the Edge worker), and the longest stall of this process's event loop
while searching and while indexing. Engines:

- edge: Qdrant Edge in its worker process, as the cache runs it, indexed (HNSW) after each fill;
- server: qdrant-client against a stand-in for a Qdrant server (its local mode, in this process:
  there is no server binary here), so its numbers are local mode's, the embedded store until now.
  Its searches are slow, so it gets fewer queries (--server-queries).

Then, through the cache service (real embedder, Redis and cache processes): cache_lookup's reworded
questions (semantic hits the verifier passes) on POST /lookup over the Edge store at the smallest and
the largest size, with the cache's CPU (service and worker) per lookup.
Writes bench/results/cache_scale.json.
Target (issue 17): search p50 <= 5 ms at 100,000 entries on the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from qdrant_client import AsyncQdrantClient

from bench.cache_lookup import TENANT, chat, populate, scenarios, time_lookups
from bench.harness import redis_server, summarize, usage, write_result
from services.cache.keys import request_keys
from services.cache.vectors.base import Point, Scope, VectorStore
from services.cache.vectors.edge import EdgeStore
from services.cache.vectors.server import ServerStore
from shared.config import CacheConfig
from tests.support import Service, free_port

DIMENSIONS = 384
FLOOR, LIMIT = CacheConfig().similarity_floor, CacheConfig().candidates
EDGE_QUERIES = 300
TOP_UP = 6_000  # new entries past the indexing threshold (8 MB of vectors)
BATCH = 1_000
KEYS = request_keys(chat("any question"), TENANT)  # the partition the service's bench lookups search
SCOPE = Scope(KEYS.tenant, KEYS.partition, live_at=0.0)


class LoopWatch:
    """The longest gap between wake-ups of a 1 ms ticker on this event loop: how long it was blocked."""

    def __init__(self) -> None:
        self.longest_ms = 0.0
        self._last = 0.0

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopWatch]:
        self.longest_ms, self._last = 0.0, time.perf_counter()
        task = asyncio.create_task(self._tick())
        try:
            yield self
        finally:
            task.cancel()
            self._mark()  # a call that never yields never lets the ticker run: its whole length is a stall

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            self._mark()

    def _mark(self) -> None:
        now = time.perf_counter()
        self.longest_ms = max(self.longest_ms, (now - self._last) * 1000)
        self._last = now


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def batch_points(start: int, count: int) -> tuple[list[Point], np.ndarray]:
    vectors = unit(np.random.default_rng(start).standard_normal((count, DIMENSIONS)).astype(np.float32))
    points = [Point(str(uuid.UUID(int=start + i)), vector.tolist(),
                    {"tenant": KEYS.tenant, "partition": KEYS.partition, "expires_at": 1e12, "text": "filler",
                     "completion": {"id": start + i}}) for i, vector in enumerate(vectors)]
    return points, vectors


def near(vector: np.ndarray, rng: np.random.Generator) -> list[float]:
    """A unit vector at cosine ~0.9 from vector."""
    noise = rng.standard_normal(DIMENSIONS).astype(np.float32)
    noise -= noise.dot(vector) * vector
    return unit(vector + 0.48 * unit(noise)).tolist()


def cpu_s(processes: list[psutil.Process]) -> float:
    return sum(usage(p).cpu_s for p in processes)


async def fill(store: VectorStore, start: int, stop: int, samples: dict[int, np.ndarray]) -> float:
    """Upsert points start..stop in batches; keeps one stored vector per batch to query near."""
    began = time.perf_counter()
    for first in range(start, stop, BATCH):
        points, vectors = batch_points(first, min(BATCH, stop - first))
        await store.upsert(points)
        samples[first] = vectors[0]
    return time.perf_counter() - began


async def time_searches(store: VectorStore, samples: dict[int, np.ndarray], queries: int,
                        processes: list[psutil.Process]) -> dict[str, Any]:
    rng = np.random.default_rng(queries)
    ids = list(samples)
    picks = [ids[i % len(ids)] for i in range(queries)]
    latencies: list[float] = []
    found = 0
    watch = LoopWatch()
    cpu_before = cpu_s(processes)
    async with watch.watching():
        for source in picks:
            query = near(samples[source], rng)
            began = time.perf_counter()
            hits = await store.search(query, SCOPE, floor=FLOOR, limit=LIMIT, fields=["completion"])
            latencies.append((time.perf_counter() - began) * 1000)
            found += bool(hits) and hits[0].payload["completion"]["id"] == source
            await asyncio.sleep(0)  # the ticker's turn, as other requests get theirs in the service
    return {**summarize(latencies), "cpu_ms_per_search": round((cpu_s(processes) - cpu_before) * 1000 / queries, 3),
            "recall": round(found / queries, 3), "loop_stall_max_ms": round(watch.longest_ms, 1)}


async def grow(name: str, store: VectorStore, start: int, size: int, samples: dict[int, np.ndarray],
               queries: int) -> dict[str, Any]:
    """Open the store, add entries up to size, index, time searches, close: one row of the results."""
    if start == 0:
        await store.recreate(DIMENSIONS)
    else:
        await store.size()  # opened (the Edge worker loaded its shard) before anything is timed
    row: dict[str, Any] = {"engine": name, "entries": size,
                           "fill_s": round(await fill(store, start, size, samples), 2)}
    watch = LoopWatch()
    async with watch.watching():
        began = time.perf_counter()
        await store.maintain()
        row["index_s"] = round(time.perf_counter() - began, 2)
    row["index_loop_stall_max_ms"] = round(watch.longest_ms, 1)
    processes = [psutil.Process()]
    if isinstance(store, EdgeStore) and store.pid is not None:
        processes.append(psutil.Process(store.pid))
    row["search"] = await time_searches(store, samples, queries, processes)
    await store.close()
    print(f"  {name} {size:>7,}: fill {row['fill_s']} s, index {row['index_s']} s, search p50 "
          f"{row['search']['p50_ms']} ms p99 {row['search']['p99_ms']} ms, "
          f"{row['search']['cpu_ms_per_search']} CPU ms, recall {row['search']['recall']}", flush=True)
    return row


async def top_up(store: EdgeStore, start: int, count: int, samples: dict[int, np.ndarray]) -> dict[str, Any]:
    """Index a few thousand new entries on a full store: the stall a steady cache sees now and then
    (a bulk fill indexes everything at once and says little about that)."""
    await store.size()
    fill_s = await fill(store, start, start + count, samples)
    watch = LoopWatch()
    async with watch.watching():
        began = time.perf_counter()
        await store.maintain()
        index_s = time.perf_counter() - began
    await store.close()
    print(f"  edge +{count:,} on {start:,}: index {index_s:.2f} s (searches wait for it)", flush=True)
    return {"entries_before": start, "added": count, "fill_s": round(fill_s, 2), "index_s": round(index_s, 2),
            "index_loop_stall_max_ms": round(watch.longest_ms, 1)}


def through_service(redis_url: str, embedder: Service, qdrant_path: Path, workdir: Path) -> dict[str, Any]:
    """Semantic hits on POST /lookup over the store at qdrant_path, and the cache's CPU per lookup."""
    port = free_port()
    cache = Service("services.cache", {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_LOGGING_LEVEL": "warning",
                                       "DRAFTGATE_CACHE_PORT": str(port), "DRAFTGATE_CACHE_EMBEDDER_URL": embedder.url,
                                       "DRAFTGATE_CACHE_QDRANT_PATH": str(qdrant_path)},
                    port, workdir / "cache.log").start(timeout_s=120)
    bodies = scenarios()["semantic_hit"]  # rewordings, each asked once: every lookup searches the store
    try:
        asyncio.run(populate(redis_url))
        assert cache.proc is not None
        service = psutil.Process(cache.proc.pid)
        workers = service.children()
        before = cpu_s([service]), cpu_s(workers)
        timed = asyncio.run(time_lookups(f"{cache.url}/lookup", bodies))
        cpu = cpu_s([service]) - before[0], cpu_s(workers) - before[1]
        semantic = httpx.get(f"{cache.url}/cache/stats").json()["semantic"]
    finally:
        cache.stop()
    latencies, outcomes = [ms for ms, _ in timed], Counter(outcome for _, outcome in timed)
    if "exact" in outcomes or semantic["errors"]:
        raise RuntimeError(f"expected semantic searches, got {dict(outcomes)}, semantic tier {semantic}:\n"
                           + cache.logs()[-3000:])
    return {**summarize(latencies), "outcomes": dict(outcomes), "semantic_tier": semantic,
            "cache_cpu_ms_per_lookup": round(sum(cpu) * 1000 / len(bodies), 3),
            "of_which_edge_worker_ms": round(cpu[1] * 1000 / len(bodies), 3)}


def run(workdir: Path, sizes: list[int], server_queries: list[int], engines: set[str]) -> dict[str, Any]:
    rows = measure_edge(workdir, sizes) if "edge" in engines else {}
    if "server" in engines:
        samples: dict[int, np.ndarray] = {}
        rows.setdefault("engines", [])
        for start, size, queries in zip([0, *sizes], sizes, server_queries, strict=False):
            store = ServerStore(AsyncQdrantClient(path=str(workdir / "server")), CacheConfig().collection)
            rows["engines"].append(asyncio.run(grow("server", store, start, size, samples, queries)))
    return rows


def measure_edge(workdir: Path, sizes: list[int]) -> dict[str, Any]:
    edge_path = workdir / "edge"
    rows: list[dict[str, Any]] = []
    service: dict[str, Any] = {}
    with redis_server(workdir) as redis_url:
        port = free_port()
        embedder = Service("services.embedder", {"DRAFTGATE_EMBEDDER_PORT": str(port),
                                                 "DRAFTGATE_LOGGING_LEVEL": "warning"},
                           port, workdir / "embedder.log").start(timeout_s=300)
        try:
            samples: dict[int, np.ndarray] = {}
            for start, size in zip([0, *sizes], sizes, strict=False):
                store = EdgeStore(edge_path / CacheConfig().collection, search_budget_s=60.0)
                rows.append(asyncio.run(grow("edge", store, start, size, samples, EDGE_QUERIES)))
                if size in (sizes[0], sizes[-1]):
                    service[str(size)] = found = through_service(redis_url, embedder, edge_path, workdir)
                    print(f"  POST /lookup over {size:,} entries ({found['outcomes']}): p50 {found['p50_ms']} ms "
                          f"p99 {found['p99_ms']} ms, cache {found['cache_cpu_ms_per_lookup']} CPU ms "
                          f"({found['of_which_edge_worker_ms']} in the worker)", flush=True)
        finally:
            embedder.stop()
    store = EdgeStore(edge_path / CacheConfig().collection, search_budget_s=60.0)
    step = asyncio.run(top_up(store, sizes[-1], TOP_UP, samples))
    return {"engines": rows, "lookup_through_service": service, "edge_index_step": step}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_scale")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--server-queries", default="200,50,10")
    parser.add_argument("--engines", default="edge,server")
    args = parser.parse_args(argv or [])
    sizes = [int(n) for n in args.sizes.split(",")]
    server_queries = [int(n) for n in args.server_queries.split(",")]
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-scale-") as tmp:
        results = run(Path(tmp), sizes, server_queries, set(args.engines.split(",")))
    edge = {row["entries"]: row["search"] for row in results["engines"] if row["engine"] == "edge"}
    server = {row["entries"]: row["search"] for row in results["engines"] if row["engine"] == "server"}
    ratios = {str(n): round(server[n]["p50_ms"] / edge[n]["p50_ms"], 1) for n in sizes if n in server and n in edge}
    largest = edge[sizes[-1]]["p50_ms"] if edge else None
    result = {"dimensions": DIMENSIONS, "one_partition": True, "floor": FLOOR, "limit": LIMIT,
              "edge_queries": EDGE_QUERIES, "cpus": os.cpu_count(), **results,
              "server_over_edge_p50": ratios,
              "target": {"edge_p50_ms_at_largest": largest, "at_most_ms": 5.0,
                         "met": largest is not None and largest <= 5.0},
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    write_result("cache_scale", result)
    print(f"cache scale: edge p50 {largest} ms at {sizes[-1]:,} entries (target <= 5 ms); "
          f"local mode / edge p50: {ratios}")
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
