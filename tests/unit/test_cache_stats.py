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

    assert report["exact"] == {"entries": 4, "hits": 3, "misses": 2, "hit_rate": 0.6, "errors": 0, "timeouts": 0}
    assert report["semantic"] == {"entries": 2, "hits": 1, "misses": 1, "hit_rate": 0.5, "errors": 1, "timeouts": 0,
                                  "rejected": {}}
    assert report["total"] == {"entries": 6, "lookups": 6, "hits": 4, "misses": 2, "hit_rate": 4 / 6, "bypassed": 1}


def test_empty_report_has_zero_rates() -> None:
    report = CacheStats().report({Tier.EXACT: 0, Tier.SEMANTIC: 0})
    assert report["exact"]["hit_rate"] == 0.0
    assert report["total"]["hit_rate"] == 0.0


def test_rejected_candidates_are_counted_by_reason_in_the_report_and_in_prometheus() -> None:
    registry = CollectorRegistry()
    record = Recorder(CacheStats(), CacheMetrics(registry))
    record.lookup()  # two candidates rejected, then a miss
    record.miss(Tier.EXACT)
    record.rejected("number")
    record.rejected("negation")
    record.miss(Tier.SEMANTIC)
    record.lookup()  # one rejected, the next served
    record.miss(Tier.EXACT)
    record.rejected("number")
    record.hit(Tier.SEMANTIC)

    report = record.stats.report({Tier.EXACT: 0, Tier.SEMANTIC: 3})

    assert report["semantic"]["rejected"] == {"negation": 1, "number": 2}
    assert (report["semantic"]["hits"], report["semantic"]["misses"]) == (1, 1)
    assert registry.get_sample_value("draftgate_cache_rejected_total", {"reason": "number"}) == 2
    assert registry.get_sample_value("draftgate_cache_rejected_total", {"reason": "negation"}) == 1


def test_a_lookup_out_of_time_is_a_counted_miss_of_the_tier_it_was_in() -> None:
    registry = CollectorRegistry()
    record = Recorder(CacheStats(), CacheMetrics(registry))
    record.lookup()
    record.miss(Tier.EXACT)
    record.timeout(Tier.SEMANTIC)

    report = record.stats.report({Tier.EXACT: 0, Tier.SEMANTIC: 0})

    assert (report["semantic"]["timeouts"], report["semantic"]["misses"], report["semantic"]["errors"]) == (1, 1, 0)
    assert report["total"]["misses"] == 1
    assert registry.get_sample_value("draftgate_cache_lookups_total", {"tier": "semantic", "result": "timeout"}) == 1


def test_vectors_are_counted_by_source_and_zero_counts_add_no_series() -> None:
    registry = CollectorRegistry()
    record = Recorder(CacheStats(), CacheMetrics(registry))
    record.vectors("memo", 3)
    record.vectors("embedder", 0)

    assert registry.get_sample_value("draftgate_cache_vectors_total", {"source": "memo"}) == 3
    assert registry.get_sample_value("draftgate_cache_vectors_total", {"source": "embedder"}) is None
