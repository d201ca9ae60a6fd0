"""Soak: the whole stack under mixed traffic for a long while, watched for leaks and drift.

Gateway, two routers, cache, embedder (the real MiniLM), Redis and the two fake upstreams each
run as their own process (bench/soak_stack.py). First a short closed-loop ramp (8, 16, 32...
clients, 10 s each, until the rate stops growing) measures the maximum throughput of the traffic
mix (bench/soak_load.py). Its overload can queue more cache writes than the cache stores meanwhile,
so the stack is then left to work them off (at most SETTLE_TIMEOUT_S): what the services count
until then (lookups the gateway gave up on, writes that failed) is the ramp's, reported with it.
Then the soak sends that mix open-loop at half of it for `--minutes` (10), and counts its own errors.
The first `--warmup-s` (120) are the warm-up: RSS, CPU and the p99 trend are judged from its end on.

The cache keeps entries for 60 s here (`cache.ttl_s`, default an hour), so its entries reach their
steady count within a minute and every minute purges as much as it stores. Its Qdrant Edge worker's
memory takes longer: the shard keeps the vectors and payload-index pages of purged points mapped
until a vacuum rebuilds their segment, and its write-ahead log fills 32 MB mapped files before it
drops them. At about 50 writes/s (3,000 live entries) the worker's RSS climbs for 4-5 minutes to
160-176 MB, then saws down by about 30 MB and back up every 5 minutes (no trend over 40 simulated
minutes on 2026-12-03; the cache's own process flat at 142 MB after its first two minutes). A
warm-up shorter than that fill-up shows the RSS check a cache filling, not leaking (the 10-minute
run at 29d2726: cache +10.3%). Each sample's `rss_file_mb` is the part mapped from files (the
shard, its log, libraries; bounded by the files) and each service's `anon_trend_growth` the trend
of the rest, where a leak of the heap shows: reported, not judged. With the default hour the cache's
RSS (its Qdrant Edge worker included) grew by about 4 MB per 1,000 entries stored, 12% in three
minutes after the warm-up at 100 req/s (a four-minute run on 20f320c), so a ten-minute soak
would fail that check on data. A lookup's cost as the store grows is bench/cache_scale.py's to measure, and the
default TTL's is bench/mixed_load.py's.

Targets (PASS/FAIL): each service's RSS grows at most 10% after the warm-up, judged on the
least-squares line through its samples (periodic work saws RSS up and down; a leak is a trend); no stream is ever
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
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop
from redis.asyncio import Redis

from bench import soak_load, soak_report
from bench.harness import Usage, summarize, write_result
from bench.soak_report import Record, counter_deltas
from bench.soak_stack import SERVICES, Stack, all_metrics, full_stack, metrics, redis_sample
from shared.keys import REQUEST_STREAM

RAMP_STEP_S = 10.0
RAMP_GAIN = 1.1
RAMP_MAX_CLIENTS = 256
LOOKUP_ERRORS = 'draftgate_gateway_cache_lookups_total{result="error"}'
SAMPLE_EVERY_S = 10.0
SETTLE_TIMEOUT_S, SETTLE_POLL_S = 180.0, 1.0
CACHE_TTL_S = 60
REQUEST_STREAM_MAXLEN, REPLY_STREAM_MAXLEN = 100_000, 10_000  # the defaults, stated for the check
TARGETS = {"rss_growth_max": 0.10, "p99_last_over_first_max": 1.5, "group_backlog_max_s": 5.0}
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


async def ramp(stack: Stack) -> dict[str, Any]:
    """Closed-loop steps, doubling the clients while the rate still grows by RAMP_GAIN; the best
    rate of requests answered without error is the maximum. Each step notes the cache lookups the gateway gave up on: a
    cache that cannot keep up turns hits into misses rather than failing requests. Then the stack
    settles, and the errors the services counted from the first step to then are the ramp's."""
    gateway = stack.gateway
    url = f"{gateway}/v1/chat/completions"
    steps: list[dict[str, Any]] = []
    best = 0.0
    async with aiohttp.ClientSession() as http:
        counters_before = await all_metrics(http, stack)
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
        redis = Redis.from_url(stack.redis_url)
        try:
            settled = await settle(redis, SETTLE_TIMEOUT_S, SETTLE_POLL_S)
        finally:
            await redis.aclose()
        counters_after = await all_metrics(http, stack)
    return {"method": f"closed-loop ramp, {RAMP_STEP_S:g} s per step, clients doubled from 8 while the rate grew "
                      f"by {RAMP_GAIN - 1:.0%}, same mix", "steps": steps,
            "max_requests_per_s": max(step["requests_per_s"] for step in steps), "settle": settled,
            "service_errors": service_errors(counters_before, counters_after)}


async def settle(redis: Redis, timeout_s: float, poll_s: float) -> dict[str, Any]:
    """Waits until the consumer groups have nothing pending or unread (the ramp's overload left
    cache writes queued), at most timeout_s; says how long it took and whether they got there."""
    started = time.monotonic()
    while (backlog := (await redis_sample(redis))["group_backlog"]) > 0:
        if time.monotonic() - started >= timeout_s:
            break
        await asyncio.sleep(poll_s)
    return {"seconds": round(time.monotonic() - started, 1), "settled": backlog == 0, "group_backlog": backlog}


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


def file_backed_bytes(process: psutil.Process) -> int:
    """The resident pages a process and its workers map from files (libraries; the cache's Edge
    shard and write-ahead log): page cache, bounded by the files and given back under pressure."""
    total = 0
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):  # a worker that ended since it was listed
            total += member.memory_info().shared
    return total


class Watch:
    """Samples the processes and Redis every SAMPLE_EVERY_S while the soak runs."""

    def __init__(self, stack: Stack, redis: Redis, started: float) -> None:
        self.stack, self.redis, self.started = stack, redis, started
        self.samples: list[dict[str, Any]] = []

    def usages(self) -> dict[str, Usage]:
        return self.stack.usages()

    async def sample(self) -> dict[str, Any]:
        usages = self.usages()
        sample = {"t_s": round(time.monotonic() - self.started, 1), **await redis_sample(self.redis),
                  "rss_mb": {name: round(u.rss_bytes / 2**20, 1) for name, u in usages.items()},
                  "rss_file_mb": {name: round(file_backed_bytes(process) / 2**20, 1)
                                  for name, process in self.stack.processes.items()}}
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)


async def soak(stack: Stack, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
    url = f"{stack.gateway}/v1/chat/completions"
    records: list[Record] = []
    redis = Redis.from_url(stack.redis_url)
    async with aiohttp.ClientSession() as http:
        counters_before = await all_metrics(http, stack)
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
        counters_after = await all_metrics(http, stack)
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
    after_warmup = [sample for sample in samples if sample["t_s"] >= warmup_s]
    rss_series = {name: [(sample["t_s"], sample["rss_mb"][name]) for sample in after_warmup] for name in rss_start}
    minutes = soak_report.per_minute(records, warmup_s)
    client_errors = soak_report.error_counts(records)
    counted = {**service_errors(counters_before, counters_after), **logged}
    caps = {"requests": REQUEST_STREAM_MAXLEN, "cache_writes": REQUEST_STREAM_MAXLEN,
            "replies": REPLY_STREAM_MAXLEN}
    checks = [
        soak_report.rss_check({n: rss_series[n] for n in SERVICES}, TARGETS["rss_growth_max"]),
        # Caps hold throughout; the backlog is judged after the warm-up (the ramp's was worked off before).
        soak_report.streams_check([s["xlen"] for s in samples], caps,
                                  [s["group_backlog"] for s in samples if s["t_s"] >= warmup_s],
                                  max(50, round(rate * TARGETS["group_backlog_max_s"]))),
        soak_report.errors_check(client_errors, counted),
        soak_report.p99_check(minutes, TARGETS["p99_last_over_first_max"]),
    ]
    return {
        "requests": len(records),
        "by_kind": dict(sorted(Counter(r.kind for r in records).items())),
        "by_outcome": dict(sorted(Counter(r.outcome for r in records).items())),
        "answered_as": soak_report.answered_as(records),
        "per_minute": minutes,
        "errors": client_errors,
        "service_errors": counted,
        "service_counters": counter_deltas(counters_before, counters_after, WATCHED_COUNTERS),
        "rss_mb": {name: {"after_warmup": round(rss_start[name] / 2**20, 1), "end": round(rss_end[name] / 2**20, 1),
                          "growth": round(soak_report.growth(rss_start[name], rss_end[name]), 4),
                          "trend_growth": round(soak_report.trend_growth(rss_series[name]), 4),
                          "anon_trend_growth": round(soak_report.trend_growth(
                              [(s["t_s"], s["rss_mb"][name] - s["rss_file_mb"][name]) for s in after_warmup]), 4)}
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
    with tempfile.TemporaryDirectory(prefix="draftgate-soak-") as tmp, full_stack(
            logs or Path(tmp), DRAFTGATE_CACHE_TTL_S=str(CACHE_TTL_S)) as stack:
        found = uvloop.run(ramp(stack))
        rate = round(found["max_requests_per_s"] * load_fraction, 1)
        result = uvloop.run(soak(stack, rate, minutes * 60, warmup_s))
    return {"config": {"minutes": minutes, "warmup_s": warmup_s, "load_fraction": load_fraction,
                       "cache_ttl_s": CACHE_TTL_S, "mix": soak_load.MIX, "hot_questions": soak_load.HOT},
            "max_throughput": found, "offered_requests_per_s": rate, **result, "targets": TARGETS}


def summary(result: dict[str, Any], path: Path) -> str:
    measured = [m for m in result["per_minute"] if not m["warmup"]]
    first, last = (measured[0], measured[-1]) if measured else ({}, {})
    worst = max(result["rss_mb"].items(), key=lambda item: item[1]["trend_growth"] if item[0] in SERVICES else -1)
    store = result["redis"]
    verdicts = " ".join(f"{name} {'PASS' if check['passed'] else 'FAIL'}" for name, check in result["checks"].items())
    return (f"soak: {result['config']['minutes']:g} min at {result['offered_requests_per_s']} req/s (half of "
            f"{result['max_throughput']['max_requests_per_s']} max), {result['requests']} requests, "
            f"{sum(result['errors'].values())} client errors, {len(result['service_errors'])} kinds of service errors; "
            f"p50/p99 {first.get('p50_ms', 'n/a')}/{first.get('p99_ms', 'n/a')} ms first minute after warm-up -> "
            f"{last.get('p50_ms', 'n/a')}/{last.get('p99_ms', 'n/a')} ms last; largest RSS trend {worst[0]} "
            f"{worst[1]['trend_growth']:+.1%} (end vs start {worst[1]['growth']:+.1%}); "
            f"Redis {store['used_memory_mb']['first']} -> {store['used_memory_mb']['last']} MB, "
            f"XLEN {store['xlen_last']}; {verdicts} -> {path}")


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
