"""Soak: the whole stack under mixed traffic for a long while, watched for leaks and drift.

Gateway, two routers, cache, embedder (the real MiniLM), Redis and the two fake upstreams each
run as their own process. First a short closed-loop ramp (8, 16, 32... clients, 10 s each,
until the rate stops growing) measures the maximum throughput of the traffic mix
(bench/soak_load.py); then the soak sends that mix open-loop at half of it for `--minutes` (10).
The first `--warmup-s` (120) are the warm-up: RSS, CPU and the p99 trend are judged from its end on.

The cache keeps entries for 60 s here (`cache.ttl_s`, default an hour), so its working set
reaches its steady size within the warm-up instead of growing all run long: a cache filling up
is not a leak, and embedded Qdrant scans every point per lookup.

Targets (PASS/FAIL): each service's RSS grows at most 10% after the warm-up; no stream is ever
longer than its cap and, after the warm-up, the consumer groups' backlog stays under 5 s of
traffic; no errors (client disconnects are traffic, not errors; errors the services count count
too); p99 flat, i.e. the last minute's within 1.5x of the first minute after the warm-up.

`python -m bench.soak [--minutes 10] [--warmup-s 120]` (or `python -m bench soak --minutes 1`);
results in bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bench import soak_load, soak_report
from bench.harness import Usage, child_process, fake_upstream, redis_server, summarize, usage, write_result
from bench.soak_report import Record
from shared.keys import CACHE_WRITE_STREAM, REPLY_STREAM_PREFIX, REQUEST_STREAM
from tests.support import Service, free_port

RAMP_STEP_S = 10.0
RAMP_GAIN = 1.1
RAMP_MAX_CLIENTS = 256
LOOKUP_ERRORS = 'draftgate_gateway_cache_lookups_total{result="error"}'
SAMPLE_EVERY_S = 10.0
CACHE_TTL_S = 60
REQUEST_STREAM_MAXLEN, REPLY_STREAM_MAXLEN = 100_000, 10_000  # the defaults, stated for the check
TARGETS = {"rss_growth_max": 0.10, "p99_last_over_first_max": 1.5, "group_backlog_max_s": 5.0}
SERVICES = ("gateway", "router-0", "router-1", "cache", "embedder")
# Besides lookups and writes whose result is an error, and 5xx answers.
ERROR_COUNTERS = frozenset({"draftgate_upstream_errors_total", "draftgate_router_bus_errors_total",
                            "draftgate_gateway_bus_failures_total", "draftgate_router_reply_overflows_total",
                            "draftgate_router_reclaimed_total"})  # no router dies in a soak
LOGGED_ERROR = re.compile(r"\[(error|critical|exception)\s*\]|Traceback|\"level\": ?\"(error|critical)\"")
WATCHED_COUNTERS = ("draftgate_gateway_cache_lookups_total", "draftgate_client_disconnects_total",
                    "draftgate_router_decisions_total", "draftgate_speculations_started_total",
                    "draftgate_speculations_cancelled_total", "draftgate_speculations_skipped_total",
                    "draftgate_router_reclaimed_total", "draftgate_upstream_errors_total",
                    "draftgate_cache_writes_total")


@dataclass
class Stack:
    gateway: str
    routers: list[str]
    cache: str
    redis_url: str
    processes: dict[str, psutil.Process]  # the services, Redis and the fakes
    logs: dict[str, Path]  # each service's log file


@contextlib.contextmanager
def full_stack(workdir: Path) -> Iterator[Stack]:
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
               "DRAFTGATE_CACHE_QDRANT_PATH": str(workdir / "qdrant"), "DRAFTGATE_CACHE_TTL_S": str(CACHE_TTL_S)}
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


async def ramp(gateway: str) -> dict[str, Any]:
    """Closed-loop steps, doubling the clients while the rate still grows by RAMP_GAIN; the best
    rate of requests answered without error is the maximum. Each step notes the cache lookups the gateway gave up on: a
    cache that cannot keep up turns hits into misses rather than failing requests."""
    url = f"{gateway}/v1/chat/completions"
    steps: list[dict[str, Any]] = []
    best = 0.0
    async with aiohttp.ClientSession() as http:
        for clients in itertools.takewhile(lambda c: c <= RAMP_MAX_CLIENTS, (8 * 2**i for i in itertools.count())):
            before = await metrics(http, gateway)
            records = await soak_load.closed_loop(url, soak_load.Traffic(seed=clients), clients, RAMP_STEP_S)
            after = await metrics(http, gateway)
            answered = [r.latency_ms for r in records if r.outcome == soak_report.OK]
            rate = round(sum(not soak_report.is_error(r.outcome) for r in records) / RAMP_STEP_S, 1)
            steps.append({"clients": clients, "requests_per_s": rate, **(summarize(answered) if answered else {}),
                          "errors": soak_report.error_counts(records),
                          "cache_lookups_given_up": after.get(LOOKUP_ERRORS, 0.0) - before.get(LOOKUP_ERRORS, 0.0)})
            if rate < best * RAMP_GAIN:
                break
            best = max(best, rate)
    return {"method": f"closed-loop ramp, {RAMP_STEP_S:g} s per step, clients doubled from 8 while the rate grew "
                      f"by {RAMP_GAIN - 1:.0%}, same mix", "steps": steps,
            "max_requests_per_s": max(step["requests_per_s"] for step in steps)}


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


def service_errors(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, float]:
    """Errors the services counted between two snapshots, though no client may have seen them."""
    found: Counter[str] = Counter()
    for service, samples in after.items():
        for key, value in samples.items():
            delta = value - before.get(service, {}).get(key, 0.0)
            name = key.split("{")[0]
            erroneous = ('result="error"' in key or 'result="semantic_error"' in key or name in ERROR_COUNTERS
                         or (name == "draftgate_requests_total" and 'status="5' in key))
            if erroneous and delta:
                found[f"{service}:{key}"] += delta
    return dict(found)


def log_errors(logs: dict[str, Path], since: dict[str, int]) -> dict[str, int]:
    """Lines logged at error level or above (a crashed loop, a failed request) since `since` bytes."""
    found = {}
    for name, path in logs.items():
        with open(path, "rb") as log:
            log.seek(since.get(name, 0))
            lines = log.read().decode(errors="replace").splitlines()
        count = sum(1 for line in lines if LOGGED_ERROR.search(line))
        if count:
            found[f"{name}:logged_errors"] = count
    return found


def counter_deltas(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                   names: tuple[str, ...]) -> dict[str, float]:
    """How much the named counters grew, summed over the services, per label set."""
    grown: Counter[str] = Counter()
    for service, samples in after.items():
        for key, value in samples.items():
            if key.split("{")[0] in names and value > before.get(service, {}).get(key, 0.0):
                grown[key] += value - before.get(service, {}).get(key, 0.0)
    return dict(sorted(grown.items()))


async def redis_sample(redis: Redis) -> dict[str, Any]:
    replies = [key async for key in redis.scan_iter(match=f"{REPLY_STREAM_PREFIX}*", _type="stream")]
    lengths = {"requests": await redis.xlen(REQUEST_STREAM), "cache_writes": await redis.xlen(CACHE_WRITE_STREAM),
               "replies": sum([await redis.xlen(key) for key in replies])}
    backlog = 0
    for stream in (REQUEST_STREAM, CACHE_WRITE_STREAM):
        with contextlib.suppress(ResponseError):  # no such stream yet
            for group in await redis.xinfo_groups(stream):
                backlog += int(group["pending"]) + int(group.get("lag") or 0)
    memory = await redis.info("memory")
    return {"used_memory_mb": round(memory["used_memory"] / 2**20, 2), "xlen": lengths, "group_backlog": backlog,
            "reply_streams": len(replies)}


class Watch:
    """Samples the processes and Redis every SAMPLE_EVERY_S while the soak runs."""

    def __init__(self, stack: Stack, redis: Redis, started: float) -> None:
        self.stack, self.redis, self.started = stack, redis, started
        self.samples: list[dict[str, Any]] = []

    def usages(self) -> dict[str, Usage]:
        return {name: usage(process) for name, process in self.stack.processes.items()}

    async def sample(self) -> dict[str, Any]:
        usages = self.usages()
        sample = {"t_s": round(time.monotonic() - self.started, 1), **await redis_sample(self.redis),
                  "rss_mb": {name: round(u.rss_bytes / 2**20, 1) for name, u in usages.items()}}
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)


async def soak(stack: Stack, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
    url = f"{stack.gateway}/v1/chat/completions"
    metric_urls = {"gateway": stack.gateway, "cache": stack.cache,
                   **{f"router-{i}": router for i, router in enumerate(stack.routers)}}
    records: list[Record] = []
    redis = Redis.from_url(stack.redis_url)
    async with aiohttp.ClientSession() as http:
        counters_before = {name: await metrics(http, u) for name, u in metric_urls.items()}
        log_offsets = {name: path.stat().st_size for name, path in stack.logs.items()}
        started = time.monotonic()
        watch = Watch(stack, redis, started)
        sampler = asyncio.create_task(watch.run())
        at_warmup: dict[str, Any] = {}

        async def mark_warmup_end() -> None:
            await asyncio.sleep(warmup_s)
            at_warmup.update(usage=watch.usages(), requests=len(records))

        marker = asyncio.create_task(mark_warmup_end())
        await soak_load.open_loop(url, soak_load.Traffic(), rate, duration_s, records.append)
        at_end = {"usage": watch.usages(), "requests": len(records)}
        sampler.cancel()
        marker.cancel()
        final = await watch.sample()
        counters_after = {name: await metrics(http, u) for name, u in metric_urls.items()}
    request_stream_bytes = await redis.memory_usage(REQUEST_STREAM, samples=0) or 0
    await redis.aclose()
    if not at_warmup:
        raise SystemExit("the soak ended before its warm-up did: use more --minutes or fewer --warmup-s")
    return judge(records, watch.samples, final, at_warmup, at_end, counters_before, counters_after, rate, warmup_s,
                 request_stream_bytes, log_errors(stack.logs, log_offsets))


def judge(records: list[Record], samples: list[dict[str, Any]], final: dict[str, Any], at_warmup: dict[str, Any],
          at_end: dict[str, Any], counters_before: dict[str, dict[str, float]],
          counters_after: dict[str, dict[str, float]], rate: float, warmup_s: float,
          request_stream_bytes: int, logged: dict[str, int]) -> dict[str, Any]:
    rss_start = {name: u.rss_bytes for name, u in at_warmup["usage"].items()}
    rss_end = {name: u.rss_bytes for name, u in at_end["usage"].items()}
    measured_requests = at_end["requests"] - at_warmup["requests"]
    minutes = soak_report.per_minute(records, warmup_s)
    client_errors = soak_report.error_counts(records)
    counted = {**service_errors(counters_before, counters_after), **logged}
    caps = {"requests": REQUEST_STREAM_MAXLEN, "cache_writes": REQUEST_STREAM_MAXLEN,
            "replies": REPLY_STREAM_MAXLEN}
    checks = [
        soak_report.rss_check({n: rss_start[n] for n in SERVICES}, {n: rss_end[n] for n in SERVICES},
                              TARGETS["rss_growth_max"]),
        # The ramp's overload leaves a backlog that the warm-up drains; caps hold throughout.
        soak_report.streams_check([s["xlen"] for s in samples], caps,
                                  [s["group_backlog"] for s in samples if s["t_s"] >= warmup_s],
                                  max(50, round(rate * TARGETS["group_backlog_max_s"]))),
        soak_report.errors_check(client_errors, counted),
        soak_report.p99_check(minutes, TARGETS["p99_last_over_first_max"]),
    ]
    decisions: dict[str, Counter[str]] = {}
    for record in records:
        decisions.setdefault(record.kind, Counter())[record.cache or record.decision or "none"] += 1
    return {
        "requests": len(records),
        "by_kind": dict(sorted(Counter(r.kind for r in records).items())),
        "by_outcome": dict(sorted(Counter(r.outcome for r in records).items())),
        "answered_as": {kind: dict(sorted(counts.items())) for kind, counts in sorted(decisions.items())},
        "per_minute": minutes,
        "errors": client_errors,
        "service_errors": counted,
        "service_counters": counter_deltas(counters_before, counters_after, WATCHED_COUNTERS),
        "rss_mb": {name: {"after_warmup": round(rss_start[name] / 2**20, 1), "end": round(rss_end[name] / 2**20, 1),
                          "growth": round(soak_report.growth(rss_start[name], rss_end[name]), 4)}
                   for name in rss_start},
        "cpu_ms_per_request": soak_report.cpu_ms_per_request(
            {n: u.cpu_s for n, u in at_warmup["usage"].items()}, {n: u.cpu_s for n, u in at_end["usage"].items()},
            measured_requests),
        "redis": {"used_memory_mb": {"first": samples[0]["used_memory_mb"], "last": final["used_memory_mb"]},
                  "xlen_last": final["xlen"], "stream_caps": caps,
                  "request_stream_bytes_per_entry": round(request_stream_bytes / max(final["xlen"]["requests"], 1))},
        "samples": samples,
        "checks": {check.name: check.as_dict() for check in checks},
    }


def run(minutes: float, warmup_s: float, load_fraction: float, logs: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-soak-") as tmp, full_stack(logs or Path(tmp)) as stack:
        found = uvloop.run(ramp(stack.gateway))
        rate = round(found["max_requests_per_s"] * load_fraction, 1)
        result = uvloop.run(soak(stack, rate, minutes * 60, warmup_s))
    return {"config": {"minutes": minutes, "warmup_s": warmup_s, "load_fraction": load_fraction,
                       "cache_ttl_s": CACHE_TTL_S, "mix": soak_load.MIX, "hot_questions": soak_load.HOT},
            "max_throughput": found, "offered_requests_per_s": rate, **result, "targets": TARGETS}


def summary(result: dict[str, Any], path: Path) -> str:
    measured = [m for m in result["per_minute"] if not m["warmup"]]
    first, last = (measured[0], measured[-1]) if measured else ({}, {})
    worst = max(result["rss_mb"].items(), key=lambda item: item[1]["growth"] if item[0] in SERVICES else -1)
    store = result["redis"]
    verdicts = " ".join(f"{name} {'PASS' if check['passed'] else 'FAIL'}" for name, check in result["checks"].items())
    return (f"soak: {result['config']['minutes']:g} min at {result['offered_requests_per_s']} req/s (half of "
            f"{result['max_throughput']['max_requests_per_s']} max), {result['requests']} requests, "
            f"{sum(result['errors'].values())} client errors, {len(result['service_errors'])} kinds of service errors; "
            f"p50/p99 {first.get('p50_ms', 'n/a')}/{first.get('p99_ms', 'n/a')} ms first minute after warm-up -> "
            f"{last.get('p50_ms', 'n/a')}/{last.get('p99_ms', 'n/a')} ms last; largest RSS growth {worst[0]} "
            f"{worst[1]['growth']:+.1%}; Redis {store['used_memory_mb']['first']} -> "
            f"{store['used_memory_mb']['last']} MB, XLEN {store['xlen_last']}; {verdicts} -> {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=120.0)
    parser.add_argument("--load-fraction", type=float, default=0.5, help="of the measured maximum throughput")
    parser.add_argument("--logs", type=Path, default=None, help="keep the services' logs (and Qdrant's files) here")
    args = parser.parse_args([] if argv is None else argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    result = run(args.minutes, args.warmup_s, args.load_fraction, args.logs)
    path = write_result("soak", result)
    print(summary(result, path))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
