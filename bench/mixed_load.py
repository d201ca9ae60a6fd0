"""Mixed load with the cache on: the CPU milliseconds each process spends per request (issue 17).

The soak's stack (bench/soak_stack.py: gateway, two routers, cache, embedder with the real MiniLM,
Redis, the two fake upstreams, each its own process) at its default settings, under the soak's
traffic mix (bench/soak_load.py: accepted drafts, escalations, speculations cancelled, repeated
questions answered from the exact tier, paraphrases from the semantic tier, half streamed, and
clients leaving mid-stream), closed-loop with `--clients` (8). The first `--warmup-s` (30) are
the warm-up; the next `--seconds` (90) are measured. After the load the cache's write backlog is
drained, so the writes of measured requests are paid inside the window.

Per request: each process's CPU (user + system, psutil; a service's worker processes, such as the
cache's Qdrant Edge worker, count as its own) over the window divided by the requests that
started in it. Target (PASS/FAIL): cache + embedder at most 8 ms. A PASS stands only if the
cache kept up (at most 1% of the gateway's lookups given up: a cache that times out does less
work, not less per lookup), nothing was left queued and no request failed; otherwise INVALID.

`python -m bench.mixed_load [--seconds 90] [--clients 8] [--label before]`; results in
bench/results/mixed_load.json, one entry per label (a later run replaces its label's entry only),
with every label's CPU per request as a ratio to the "before" run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop
from redis.asyncio import Redis

from bench import soak_load, soak_report
from bench.harness import RESULTS_DIR, Usage, summarize, usage, write_result
from bench.soak_report import Check, Record
from bench.soak_stack import Stack, all_metrics, full_stack, redis_sample
from tests.support import REPO

NAME = "mixed_load"
BASE_LABEL = "before"
CACHE_AND_EMBEDDER = "cache+embedder"
TARGETS = {"cache_embedder_cpu_ms_max": 8.0, "lookups_given_up_max_share": 0.01}
LOOKUPS = "draftgate_gateway_cache_lookups_total"
CACHE_LOOKUPS = "draftgate_cache_lookups_total"
CACHE_WRITES = "draftgate_cache_writes_total"
DRAIN_TIMEOUT_S = 120.0


# Pure: what the run recorded, turned into figures and verdicts.

def by_kind_and_outcome(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for record in records:
        counts.setdefault(record.kind, Counter())[record.outcome] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}


def latency_by_answer(records: Iterable[Record]) -> dict[str, dict[str, float]]:
    """Latency of the requests answered whole, by how they were answered (exact, semantic, accept,
    escalate): a semantic hit's p50 in a busy stack, beside the quiet one of bench/cache_hit.py."""
    answered: dict[str, list[float]] = {}
    for record in records:
        if record.outcome == soak_report.OK:
            answered.setdefault(record.cache or record.decision or "none", []).append(record.latency_ms)
    return {how: summarize(latencies) for how, latencies in sorted(answered.items())}


def by_label(deltas: Mapping[str, float], name: str, *labels: str) -> dict[str, float]:
    """The growth of counter `name` per value of its `labels` (joined by "/"), from counter_deltas' keys."""
    found: Counter[str] = Counter()
    for key, value in deltas.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        pairs = dict(pair.split("=", 1) for pair in rest.rstrip("}").split(",") if pair)
        found["/".join(pairs.get(label, '""').strip('"') for label in labels)] += value
    return dict(sorted(found.items()))


def cache_and_embedder(cpu_ms: Mapping[str, float]) -> float:
    return round(cpu_ms["cache"] + cpu_ms["embedder"], 3)


def cpu_check(cpu_ms: Mapping[str, float], max_ms: float) -> Check:
    spent = cache_and_embedder(cpu_ms)
    return Check("cache_embedder_cpu", spent <= max_ms,
                 f"cache {cpu_ms['cache']:g} + embedder {cpu_ms['embedder']:g} = {spent:g} ms of CPU per request "
                 f"(at most {max_ms:g})")


def kept_up_check(lookups: Mapping[str, float], max_share: float) -> Check:
    """The gateway gives up on a lookup that takes longer than gateway.cache_timeout_s (result
    "error"): the request goes on as a miss, and the CPU figure no longer prices a whole lookup."""
    total = sum(lookups.values())
    given_up = lookups.get("error", 0.0)
    share = given_up / total if total else 1.0
    return Check("cache_kept_up", total > 0 and share <= max_share,
                 f"{given_up:g} of {total:g} lookups given up ({share:.1%}; at most {max_share:.0%})")


def drained_check(backlog: Mapping[str, Any]) -> Check:
    """Work still queued when the window closed would be left out of its CPU."""
    return Check("drained", backlog["drained"],
                 f"backlog (pending + lag) {backlog['at_warmup_end']} after the warm-up, {backlog['at_load_end']} "
                 f"when the load stopped, {'drained' if backlog['drained'] else 'NOT drained'} before the last reading")


def verdict(checks: Iterable[Check]) -> str:
    """FAIL over the CPU target; under it PASS, or INVALID when a check the figure rests on failed
    (lookups given up or work left queued make the figure too low, never too high)."""
    by_name = {check.name: check for check in checks}
    if not by_name["cache_embedder_cpu"].passed:
        return "FAIL"
    return "PASS" if all(check.passed for check in by_name.values()) else "INVALID"


def ratios(runs: Mapping[str, Mapping[str, Any]], base: str = BASE_LABEL) -> dict[str, dict[str, float]]:
    """Each other run's CPU per request over the base run's, per process and for cache + embedder."""
    if base not in runs:
        return {}
    reference = {**runs[base]["cpu_ms_per_request"], CACHE_AND_EMBEDDER: runs[base][CACHE_AND_EMBEDDER]}
    found = {}
    for label, run in runs.items():
        if label == base:
            continue
        figures = {**run["cpu_ms_per_request"], CACHE_AND_EMBEDDER: run[CACHE_AND_EMBEDDER]}
        found[label] = {name: round(figures[name] / reference[name], 3)
                        for name in figures if reference.get(name)}
    return found


def merge(previous: Mapping[str, Any] | None, label: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The results file's body with `run` under `label`, the other labels' runs kept."""
    runs = dict((previous or {}).get("runs") or {})
    runs[label] = dict(run)
    return {"targets": TARGETS, "runs": runs, f"ratios_to_{BASE_LABEL}": ratios(runs)}


# I/O: the stack under load.

def snapshot_usage(stack: Stack) -> dict[str, Usage]:
    return {**stack.usages(), "load-generator": usage(psutil.Process())}


async def snapshot(http: aiohttp.ClientSession, stack: Stack, redis: Redis) -> dict[str, Any]:
    return {"usage": snapshot_usage(stack), "counters": await all_metrics(http, stack),
            "backlog": (await redis_sample(redis))["backlog"]}


async def drain(redis: Redis, timeout_s: float) -> bool:
    """Waits until the routers and the cache writer have consumed everything sent to them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any((await redis_sample(redis))["backlog"].values()):
            return True
        await asyncio.sleep(0.2)
    return False


async def measure(stack: Stack, clients: int, warmup_s: float, seconds: float) -> dict[str, Any]:
    url = f"{stack.gateway}/v1/chat/completions"
    redis = Redis.from_url(stack.redis_url)
    marks: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as http:

        async def mark_warmup_end() -> None:
            await asyncio.sleep(warmup_s)
            marks["warmup"] = await snapshot(http, stack, redis)

        marker = asyncio.create_task(mark_warmup_end())
        records = await soak_load.closed_loop(url, soak_load.Traffic(), clients, warmup_s + seconds)
        await marker
        backlog_at_load_end = (await redis_sample(redis))["backlog"]
        drained = await drain(redis, DRAIN_TIMEOUT_S)
        marks["end"] = await snapshot(http, stack, redis)
    await redis.aclose()
    measured = [record for record in records if record.started_s >= warmup_s]
    return judge(measured, seconds, marks["warmup"], marks["end"],
                 {"at_warmup_end": marks["warmup"]["backlog"], "at_load_end": backlog_at_load_end,
                  "drained": drained})


def judge(records: list[Record], seconds: float, start: dict[str, Any], end: dict[str, Any],
          backlog: dict[str, Any]) -> dict[str, Any]:
    cpu_ms = soak_report.cpu_ms_per_request({n: u.cpu_s for n, u in start["usage"].items()},
                                            {n: u.cpu_s for n, u in end["usage"].items()}, len(records))
    deltas = soak_report.counter_deltas(start["counters"], end["counters"], (LOOKUPS, CACHE_LOOKUPS, CACHE_WRITES))
    lookups = by_label(deltas, LOOKUPS, "result")
    client_errors = soak_report.error_counts(records)
    checks = [cpu_check(cpu_ms, TARGETS["cache_embedder_cpu_ms_max"]),
              kept_up_check(lookups, TARGETS["lookups_given_up_max_share"]),
              soak_report.errors_check(client_errors, {}), drained_check(backlog)]
    return {
        "requests": len(records),
        "requests_per_s": round(len(records) / seconds, 1),
        "by_kind_and_outcome": by_kind_and_outcome(records),
        "answered_as": soak_report.answered_as(records),
        "gateway_lookups": lookups,
        "cache_lookups": by_label(deltas, CACHE_LOOKUPS, "tier", "result"),
        "cache_writes": by_label(deltas, CACHE_WRITES, "result"),
        "latency_ms": latency_by_answer(records),
        "errors": client_errors,
        "backlog": backlog,
        "cpu_ms_per_request": cpu_ms,
        "rss_mb": {name: {"after_warmup": round(u.rss_bytes / 2**20, 1),
                          "end": round(end["usage"][name].rss_bytes / 2**20, 1)} for name, u in start["usage"].items()},
        CACHE_AND_EMBEDDER: cache_and_embedder(cpu_ms),
        "checks": {check.name: check.as_dict() for check in checks},
        "verdict": verdict(checks),
    }


def code_version() -> str:
    """The commit measured, "-dirty" when the working tree differs from it."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(seconds: float, warmup_s: float, clients: int, logs: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="draftgate-mixed-") as tmp, full_stack(logs or Path(tmp)) as stack:
        result = uvloop.run(measure(stack, clients, warmup_s, seconds))
    return {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code": code_version(),
            "config": {"seconds": seconds, "warmup_s": warmup_s, "clients": clients, "mix": soak_load.MIX,
                       "hot_questions": soak_load.HOT}, **result}


def previous_results() -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{NAME}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(label: str, result: dict[str, Any], path: Path) -> str:
    cpu = ", ".join(f"{name} {ms:g}" for name, ms in result["cpu_ms_per_request"].items())
    checks = "; ".join(check["detail"] for check in result["checks"].values())
    return (f"mixed_load [{label}]: {result['requests']} requests in {result['config']['seconds']:g} s "
            f"({result['requests_per_s']} req/s, {result['config']['clients']} clients); CPU ms per request: {cpu}; "
            f"lookups {result['gateway_lookups']}; {checks}; {result['verdict']} -> {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="the measured window")
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--label", default="latest", help=f'the run\'s key in the results ("{BASE_LABEL}" is the '
                                                           "one the others are compared with)")
    parser.add_argument("--logs", type=Path, default=None, help="keep the services' logs (and Qdrant's files) here")
    args = parser.parse_args([] if argv is None else argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    result = run(args.seconds, args.warmup_s, args.clients, args.logs)
    path = write_result(NAME, merge(previous_results(), args.label, result))
    print(summary(args.label, result, path))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
