"""Cache stats: per-tier hit rates and totals as /cache/stats reports them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.cache.stats import CacheMetrics, CacheStats, Recorder, Tier


def test_report_counts_each_lookup_once_in_the_totals() -> None:
    record = Recorder(CacheStats(), CacheMetrics(CollectorRegistry()))
    for _ in range(3):  # exact hit
        record.lookup()
        record.hit(Tier.EXACT)
    record.lookup()  # exact miss, semantic hit
    record.miss(Tier.EXACT)
    record.hit(Tier.SEMANTIC)
    record.lookup()  # exact miss, embedder down
    record.miss(Tier.EXACT)
    record.error(Tier.SEMANTIC)
    record.lookup()  # too hot to cache
    record.bypass()

    report = record.stats.report({Tier.EXACT: 4, Tier.SEMANTIC: 2})

    assert report["exact"] == {"entries": 4, "hits": 3, "misses": 2, "hit_rate": 0.6, "errors": 0}
    assert report["semantic"] == {"entries": 2, "hits": 1, "misses": 1, "hit_rate": 0.5, "errors": 1}
    assert report["total"] == {"entries": 6, "lookups": 6, "hits": 4, "misses": 2, "hit_rate": 4 / 6, "bypassed": 1}


def test_empty_report_has_zero_rates() -> None:
    report = CacheStats().report({Tier.EXACT: 0, Tier.SEMANTIC: 0})
    assert report["exact"]["hit_rate"] == 0.0
    assert report["total"]["hit_rate"] == 0.0
