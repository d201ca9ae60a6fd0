"""Hit and miss counting: the /cache/stats numbers and their Prometheus twins."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


class Tier(StrEnum):
    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass
class TierCounts:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # lookups this tier could not answer because Redis, Qdrant or the embedder failed
    timeouts: int = 0  # lookups whose time ran out in this tier


@dataclass
class CacheStats:
    """Counts since this process started; entries come from the stores at report time."""

    tiers: dict[Tier, TierCounts] = field(default_factory=lambda: {tier: TierCounts() for tier in Tier})
    lookups: int = 0
    bypassed: int = 0  # requests the policy keeps out of the cache (temperature too high)
    rejected: dict[str, int] = field(default_factory=dict)  # semantic candidates not served, by reason

    def report(self, entries: dict[Tier, int]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for tier, counts in self.tiers.items():
            body[tier.value] = {"entries": entries[tier], "hits": counts.hits, "misses": counts.misses,
                                "hit_rate": _rate(counts.hits, counts.hits + counts.misses), "errors": counts.errors,
                                "timeouts": counts.timeouts}
        body[Tier.SEMANTIC.value]["rejected"] = dict(sorted(self.rejected.items()))
        hits = sum(counts.hits for counts in self.tiers.values())
        body["total"] = {"entries": sum(entries.values()), "lookups": self.lookups, "hits": hits,
                         "misses": self.lookups - hits, "hit_rate": _rate(hits, self.lookups),
                         "bypassed": self.bypassed}
        return body


def _rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter("draftgate_cache_lookups", "Cache lookups per tier and outcome",
                               ["tier", "result"], registry=registry)
        self.writes = Counter("draftgate_cache_writes", "Cache writes consumed from the stream, by outcome",
                              ["result"], registry=registry)
        self.rejected = Counter("draftgate_cache_rejected", "Semantic candidates not served, by the check's reason",
                                ["reason"], registry=registry)
        self.vectors = Counter("draftgate_cache_vectors", "Vectors the cache used, by where they came from "
                               "(memo: computed for this request's lookup, embedder: a new embedding)",
                               ["source"], registry=registry)
        self.lookup_seconds = Histogram("draftgate_cache_lookup_seconds", "POST /lookup latency", ["result"],
                                        registry=registry,
                                        buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


@dataclass
class Recorder:
    """Counts each outcome once, in both the stats body and Prometheus."""

    stats: CacheStats
    metrics: CacheMetrics

    def lookup(self) -> None:
        self.stats.lookups += 1

    def bypass(self) -> None:
        self.stats.bypassed += 1
        self.metrics.lookups.labels("none", "bypassed").inc()

    def hit(self, tier: Tier) -> None:
        self.stats.tiers[tier].hits += 1
        self.metrics.lookups.labels(tier.value, "hit").inc()

    def miss(self, tier: Tier) -> None:
        self.stats.tiers[tier].misses += 1
        self.metrics.lookups.labels(tier.value, "miss").inc()

    def error(self, tier: Tier) -> None:
        """A failed tier is also a miss for that tier: the caller got no answer from it."""
        self.stats.tiers[tier].errors += 1
        self.stats.tiers[tier].misses += 1
        self.metrics.lookups.labels(tier.value, "error").inc()

    def timeout(self, tier: Tier) -> None:
        """The lookup's time ran out in this tier: a miss for it, and nothing after it was tried."""
        self.stats.tiers[tier].timeouts += 1
        self.stats.tiers[tier].misses += 1
        self.metrics.lookups.labels(tier.value, "timeout").inc()

    def rejected(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        self.metrics.rejected.labels(reason).inc()

    def vectors(self, source: str, count: int) -> None:
        if count:
            self.metrics.vectors.labels(source).inc(count)

    def write(self, result: str, count: int = 1) -> None:
        self.metrics.writes.labels(result).inc(count)
