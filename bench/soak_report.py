"""The soak's verdicts from what it recorded. Pure: every function takes plain records and samples.

A request is recorded when it ends; `started_s` is seconds since the soak began, so a minute's
figures are those of the requests that started in it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import percentile

OK, DISCONNECTED = "ok", "disconnected"  # every other outcome names an error kind


@dataclass(frozen=True)
class Record:
    """One soak request: its traffic class, when it started, how long it took, and how it ended."""

    kind: str
    started_s: float
    latency_ms: float
    outcome: str
    decision: str | None = None
    cache: str | None = None  # X-Cache on a hit: exact or semantic


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


def is_error(outcome: str) -> bool:
    """Client disconnects are part of the traffic, not errors."""
    return outcome not in (OK, DISCONNECTED)


def per_minute(records: Iterable[Record], warmup_s: float) -> list[dict[str, Any]]:
    """p50/p99 of the answered requests (disconnects and errors left out) for each minute that
    has any, with the minute's request and error counts; minutes that began inside the warm-up
    are flagged."""
    minutes: dict[int, list[Record]] = {}
    for record in records:
        minutes.setdefault(int(record.started_s // 60), []).append(record)
    rows = []
    for minute in sorted(minutes):
        group = minutes[minute]
        answered = [r.latency_ms for r in group if r.outcome == OK]
        rows.append({"minute": minute, "warmup": minute * 60 < warmup_s, "requests": len(group),
                     "errors": sum(is_error(r.outcome) for r in group),
                     "p50_ms": round(percentile(answered, 50), 2) if answered else None,
                     "p99_ms": round(percentile(answered, 99), 2) if answered else None})
    return rows


def growth(start: float, end: float) -> float:
    """Relative growth from start to end (0.1 = 10% more)."""
    return (end - start) / start if start else math.inf if end else 0.0


def error_counts(records: Iterable[Record]) -> dict[str, int]:
    return dict(sorted(Counter(r.outcome for r in records if is_error(r.outcome)).items()))


def rss_check(series: Mapping[str, Sequence[tuple[float, float]]], max_growth: float) -> Check:
    """A leak is a trend: each service's RSS samples (seconds, MB) after the warm-up, fitted by least
    squares, must grow at most max_growth from the line's start to its end. A fit, not the first and
    last sample, because periodic work saws RSS up and down (the cache's Edge worker frees about
    30 MB after each index build): two single samples would judge the phase of the saw."""
    grown = {name: trend_growth(points) for name, points in series.items()}
    worst = max(grown, key=grown.__getitem__)
    detail = ", ".join(f"{name} {value:+.1%}" for name, value in grown.items())
    return Check("rss_growth", grown[worst] <= max_growth,
                 f"trend after warm-up (least squares): {detail} (at most {max_growth:.0%})")


def trend_growth(points: Sequence[tuple[float, float]]) -> float:
    """Relative growth of the least-squares line through (t, value) points over their time span."""
    if len({t for t, _ in points}) < 2:
        raise ValueError("an RSS trend needs samples at two times at least")
    times, values = zip(*points, strict=True)
    slope, intercept = np.polyfit(times, values, 1)
    return growth(float(slope * min(times) + intercept), float(slope * max(times) + intercept))


def p99_check(minutes: Sequence[Mapping[str, Any]], max_ratio: float) -> Check:
    """Flat: the last minute's p99 within max_ratio of the first minute after the warm-up."""
    measured = [m for m in minutes if not m["warmup"] and m["p99_ms"] is not None]
    if len(measured) < 2:
        return Check("p99_flat", False, "fewer than two minutes after the warm-up")
    first, last = measured[0]["p99_ms"], measured[-1]["p99_ms"]
    return Check("p99_flat", last <= first * max_ratio,
                 f"p99 {first} ms in minute {measured[0]['minute']}, {last} ms in minute {measured[-1]['minute']} "
                 f"(at most {max_ratio}x)")


def streams_check(samples: Sequence[Mapping[str, int]], caps: Mapping[str, int],
                  backlogs: Sequence[int], max_backlog: int) -> Check:
    """Bounded: no stream ever longer than its cap (plus what approximate trimming leaves, at
    most one radix-tree node of 100 entries, and 1%), and the consumer groups' backlog (pending
    plus lag) never above `max_backlog` entries."""
    longest = {name: max((s.get(name, 0) for s in samples), default=0) for name in caps}
    over = [name for name, length in longest.items() if length > caps[name] * 1.01 + 100]
    worst_backlog = max(backlogs, default=0)
    detail = ", ".join(f"{name} max {longest[name]} (cap {caps[name]})" for name in caps)
    return Check("streams_bounded", not over and worst_backlog <= max_backlog,
                 f"{detail}; group backlog max {worst_backlog} (at most {max_backlog})")


def errors_check(client_errors: Mapping[str, int], service_errors: Mapping[str, float]) -> Check:
    found = {**client_errors, **{name: count for name, count in service_errors.items() if count}}
    return Check("zero_errors", not found, ", ".join(f"{k} {v:g}" for k, v in found.items()) or "none")


def cpu_ms_per_request(cpu_start_s: Mapping[str, float], cpu_end_s: Mapping[str, float],
                       requests: int) -> dict[str, float]:
    return {name: round((cpu_end_s[name] - cpu_start_s[name]) * 1000 / max(requests, 1), 3) for name in cpu_start_s}


def answered_as(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    """For each traffic kind, how its requests were answered: the cache tier of a hit (exact,
    semantic), else the router's decision (accept, escalate), else "none" (no answer's headers)."""
    found: dict[str, Counter[str]] = {}
    for record in records:
        found.setdefault(record.kind, Counter())[record.cache or record.decision or "none"] += 1
    return {kind: dict(sorted(counts.items())) for kind, counts in sorted(found.items())}


def counter_deltas(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                   names: Iterable[str]) -> dict[str, float]:
    """How much the named counters grew between two snapshots of every service's counters
    (service -> `name{labels}` -> value), summed over the services, per label set."""
    wanted = frozenset(names)
    grown: Counter[str] = Counter()
    for service, samples in after.items():
        for key, value in samples.items():
            if key.split("{")[0] in wanted and value > before.get(service, {}).get(key, 0.0):
                grown[key] += value - before.get(service, {}).get(key, 0.0)
    return dict(sorted(grown.items()))
