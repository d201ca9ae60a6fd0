"""`bench.peers`' figures and verdicts from what it measured. Pure: plain numbers and bytes in, plain
numbers, checks and text out, so each rule is unit-tested without starting a proxy.

The targets (issue #12), as ratios within one run: draftgate's CPU per request at most one sixth of
LiteLLM's, and the latency draftgate adds at p50 (one client, against the fake called directly) at
most one quarter of what LiteLLM adds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.harness import percentile

CPU_PARTS = 6  # draftgate's CPU per request at most 1/6 of LiteLLM's
ADDED_P50_PARTS = 4  # draftgate's added p50 at most 1/4 of LiteLLM's
DIRECT, DRAFTGATE, LITELLM = "direct", "draftgate", "litellm"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


# What came back: the answer's text, so every proxy is seen to return the fake's answer whole.

def answer_text(raw: bytes, stream: bool) -> str:
    """The assistant text of a chat completion, or of an SSE stream of chunks (which must end in
    `data: [DONE]`, as OpenAI's does)."""
    if not stream:
        return orjson.loads(raw)["choices"][0]["message"]["content"]
    events = [line[5:].strip() for line in raw.splitlines() if line.startswith(b"data:")]
    if not events or events[-1] != b"[DONE]":
        raise ValueError("the stream did not end with data: [DONE]")
    parts = []
    for event in events[:-1]:
        for choice in orjson.loads(event).get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


# Latency at one client.

def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(latencies_ms), "p50_ms": round(percentile(list(latencies_ms), 50), 3),
            "p99_ms": round(percentile(list(latencies_ms), 99), 3),
            "mean_ms": round(statistics.fmean(latencies_ms), 3)}


def added_latency(rounds: Sequence[Mapping[str, Sequence[float]]], target: str) -> dict[str, Any]:
    """What `target` adds to the fake called directly, at p50 and p99 of all rounds pooled, and at
    p50 round by round (the rounds interleave the targets, so a busy moment of the shared machine
    falls on all of them; the spread of the per-round figures shows how much one moment moves it)."""
    pooled = {name: [ms for r in rounds for ms in r[name]] for name in (DIRECT, target)}
    per_round = [percentile(list(r[target]), 50) - percentile(list(r[DIRECT]), 50) for r in rounds]
    return {"p50_ms": round(percentile(pooled[target], 50) - percentile(pooled[DIRECT], 50), 3),
            "p99_ms": round(percentile(pooled[target], 99) - percentile(pooled[DIRECT], 99), 3),
            "p50_ms_by_round": [round(ms, 3) for ms in per_round]}


# CPU at N clients.

def cpu_ms_per_request(before: Mapping[str, float], after: Mapping[str, float], requests: int) -> dict[str, float]:
    """Each process's CPU seconds spent between two readings, in ms per request, and their `total`."""
    spent = {name: (after[name] - before[name]) * 1000 / requests for name in before}
    return {**{name: round(ms, 3) for name, ms in spent.items()}, "total": round(sum(spent.values()), 3)}


def median_round(rounds: Sequence[Mapping[str, Any]], key: str = "total") -> Mapping[str, Any]:
    """The round whose `cpu_ms[key]` is the median (the lower middle one of an even count): one
    whole round, so its per-process figures add up to its total."""
    ordered = sorted(rounds, key=lambda r: r["cpu_ms"][key])
    return ordered[(len(ordered) - 1) // 2]


def calls_per_request(before: Mapping[str, int], after: Mapping[str, int], requests: int) -> dict[str, float]:
    """Upstream calls per client request, by kind of call (bench.peers_upstream.call_key)."""
    grown = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    return {key: round(count / requests, 4) for key, count in sorted(grown.items()) if count}


def one_call_check(name: str, calls: Mapping[str, float]) -> Check:
    """A proxy that retried, escalated or hedged would pay for more than the one call compared."""
    total = sum(calls.values())
    detail = ", ".join(f"{key}: {share:g}" for key, share in calls.items()) or "none"
    return Check(f"one_upstream_call_{name}", abs(total - 1.0) < 1e-9, f"upstream calls per request: {detail}")


# Ratios and verdicts.

def ratio(ours: float, theirs: float) -> float | None:
    """ours / theirs; None when theirs is not positive (no overhead to compare against)."""
    return round(ours / theirs, 4) if theirs > 0 else None


def variant(server: str, workers: int) -> str:
    """The target name of one way of running LiteLLM's proxy: `litellm-uvicorn-2`."""
    return f"{LITELLM}-{server}-{workers}"


def parse_variant(text: str) -> tuple[str, int]:
    """`uvicorn:2` -> ("uvicorn", 2)."""
    server, sep, workers = text.partition(":")
    if server not in ("uvicorn", "granian") or not sep or not workers.isdigit() or int(workers) < 1:
        raise ValueError(f"a LiteLLM variant is uvicorn:N or granian:N, not {text!r}")
    return server, int(workers)


def best_litellm(figures: Mapping[str, float]) -> tuple[str, float]:
    """LiteLLM's best (lowest) figure among the variants run, and which variant had it: the ratios
    are taken against LiteLLM at its fastest in this run, metric by metric."""
    name = min((n for n in figures if n.startswith(LITELLM)), key=lambda n: figures[n])
    return name, figures[name]


def ratio_check(name: str, ours: float, theirs: tuple[str, float], parts: int, what: str) -> Check:
    """Passes when ours is at most 1/parts of theirs (compared as ours x parts <= theirs: no rounding)."""
    value = ratio(ours, theirs[1])
    passed = value is not None and ours >= 0 and ours * parts <= theirs[1]
    shown = "n/a" if value is None else f"{value:.3f}"
    return Check(name, passed, f"{what}: draftgate {ours:g} ms, LiteLLM {theirs[1]:g} ms ({theirs[0]}), "
                               f"ratio {shown} (at most 1/{parts} = {1 / parts:.3f})")


def mode_checks(mode: str, cpu: Mapping[str, float], added_p50: Mapping[str, float]) -> list[Check]:
    """The two targets for one mode (plain or stream): figures by target name, draftgate's against
    the best LiteLLM variant's."""
    return [ratio_check(f"cpu_{mode}", cpu[DRAFTGATE], best_litellm(cpu), CPU_PARTS, f"CPU per request, {mode}"),
            ratio_check(f"added_p50_{mode}", added_p50[DRAFTGATE], best_litellm(added_p50), ADDED_P50_PARTS,
                        f"added p50 at one client, {mode}")]


def features_check(rate_limited: Sequence[str], expected: Sequence[str]) -> Check:
    """draftgate ran with its features on: every drafter deployment was chosen and checked against
    its rate limit in Redis (a limiter that never ran, or one deployment never balanced to, would
    make the figures those of a leaner draftgate)."""
    missing = sorted(set(expected) - set(rate_limited))
    return Check("features_on", not missing, f"deployments with rate-limit state in Redis: "
                                             f"{', '.join(rate_limited) or 'none'}"
                                             + (f"; missing {', '.join(missing)}" if missing else ""))


def verdict(checks: Iterable[Check]) -> str:
    """PASS when every target is met; INVALID when a proxy made other than one upstream call per
    request or draftgate's features were not all at work (then the figures compare unlike work);
    else FAIL."""
    checks = list(checks)
    if not all(c.passed for c in checks if c.name.startswith("one_upstream_call") or c.name == "features_on"):
        return "INVALID"
    return "PASS" if all(c.passed for c in checks) else "FAIL"


# The table for people.

def markdown(result: Mapping[str, Any]) -> str:
    """bench/results/peers.md: one table per mode, then the checks."""
    lines = [f"# draftgate vs LiteLLM ({result['recorded_at']})", "",
             f"draftgate at `{result['draftgate']['commit']}`, LiteLLM {result['litellm']['version']} "
             f"({', '.join(result['litellm']['variants'])}); "
             f"{result['load']['cpu_clients']} clients for CPU, 1 for latency; load average "
             f"{result['load_average_before']} before, {result['load_average_after']} after.", ""]
    for mode, figures in result["modes"].items():
        lines += [f"## {mode}", "", "| | p50 ms | p99 ms | added p50 | added p99 | CPU ms/request | req/s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, latency in figures["latency"].items():
            added = figures["added"].get(name, {})
            cpu = figures["cpu"].get(name, {})
            lines.append(f"| {name} | {latency['p50_ms']} | {latency['p99_ms']} | {added.get('p50_ms', '')} | "
                         f"{added.get('p99_ms', '')} | {cpu.get('cpu_ms', {}).get('total', '')} | "
                         f"{cpu.get('requests_per_s', '')} |")
        ratios = figures["ratios"]
        lines += ["", "draftgate / LiteLLM's best variant: " + ", ".join(
            f"{metric.replace('_', ' ')} {r['ratio']} (against {r['against']}"
            + (f"; by round {', '.join(map(str, r['by_round']))})" if "by_round" in r else ")")
            for metric, r in ratios.items()), ""]
        by_target = figures.get("ratios_by_target") or {}
        if by_target:
            lines += ["| ratio to LiteLLM's best | CPU per request | added p50 |", "| --- | --- | --- |"]
            lines += [f"| {name} | {r['cpu']} | {r['added_p50']} |" for name, r in by_target.items()]
            lines.append("")
    retried = result.get("requests_retried") or {}
    if retried:
        lines += ["Requests tried again after the proxy dropped their connection: " + ", ".join(
            f"{name} {counts}" for name, counts in retried.items()), ""]
    lines += ["## Checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'} {name}: {c['detail']}" for name, c in result["checks"].items()]
    lines += ["", f"**{result['verdict']}**", ""]
    return "\n".join(lines)
