"""The mixed-load benchmark's pure parts: counts by kind and label, the CPU target and the checks
its verdict rests on, and before/after runs kept side by side in one results file."""

from __future__ import annotations

from typing import Any

from bench.mixed_load import (
    TARGETS,
    by_kind_and_outcome,
    by_label,
    cpu_check,
    drained_check,
    kept_up_check,
    latency_by_answer,
    merge,
    ratios,
    verdict,
)
from bench.soak_report import DISCONNECTED, OK, Check, Record, answered_as, counter_deltas


def test_requests_are_counted_by_kind_and_outcome() -> None:
    records = [Record("hit", 0, 1, OK, cache="exact"), Record("hit", 0, 1, "timeout"), Record("hit", 0, 1, OK),
               Record("disconnect", 0, 1, DISCONNECTED, decision="escalate")]
    assert by_kind_and_outcome(records) == {"disconnect": {"disconnected": 1}, "hit": {"ok": 2, "timeout": 1}}


def test_a_request_is_answered_as_its_cache_tier_else_the_router_s_decision() -> None:
    records = [Record("hit", 0, 1, OK, decision="cache_hit", cache="exact"),
               Record("hit", 0, 1, OK, decision="accept"), Record("hit", 0, 1, "http_502")]
    assert answered_as(records) == {"hit": {"accept": 1, "exact": 1, "none": 1}}


def test_latency_is_summarised_per_answer_over_whole_answers_only() -> None:
    records = [Record("paraphrase", 0, 10, OK, cache="semantic"), Record("paraphrase", 0, 30, OK, cache="semantic"),
               Record("paraphrase", 0, 20, OK, cache="semantic"), Record("disconnect", 0, 900, DISCONNECTED),
               Record("accept", 0, 5000, "timeout", decision="accept")]
    assert latency_by_answer(records) == {"semantic": {"n": 3, "p50_ms": 20.0, "p99_ms": 30.0, "mean_ms": 20.0}}


def test_counter_growth_is_split_by_label_values_and_summed_over_services() -> None:
    before = {"cache": {'draftgate_cache_lookups_total{result="hit",tier="exact"}': 5.0}}
    after = {"cache": {'draftgate_cache_lookups_total{result="hit",tier="exact"}': 12.0,
                       'draftgate_cache_lookups_total{result="miss",tier="semantic"}': 3.0,
                       'draftgate_cache_writes_total{result="stored"}': 4.0},
             "gateway": {'draftgate_gateway_cache_lookups_total{result="exact"}': 2.0}}
    deltas = counter_deltas(before, after, ["draftgate_cache_lookups_total", "draftgate_gateway_cache_lookups_total"])
    assert by_label(deltas, "draftgate_cache_lookups_total", "tier", "result") == {"exact/hit": 7.0,
                                                                                    "semantic/miss": 3.0}
    assert by_label(deltas, "draftgate_gateway_cache_lookups_total", "result") == {"exact": 2.0}
    assert by_label(deltas, "draftgate_cache_writes_total", "result") == {}  # not asked for


def test_cache_and_embedder_cpu_passes_up_to_the_target() -> None:
    assert cpu_check({"cache": 3.0, "embedder": 5.0, "gateway": 40.0}, 8.0).passed
    failed = cpu_check({"cache": 21.0, "embedder": 33.0}, 8.0)
    assert not failed.passed and "= 54 ms" in failed.detail


def test_the_cache_kept_up_while_at_most_the_share_of_lookups_was_given_up() -> None:
    assert kept_up_check({"exact": 60.0, "miss": 39.0, "error": 1.0}, 0.01).passed
    assert not kept_up_check({"exact": 60.0, "miss": 38.0, "error": 2.0}, 0.01).passed
    assert not kept_up_check({}, 0.01).passed  # no lookup at all: the cache was not measured


def test_a_backlog_left_when_the_window_closed_fails_the_drain_check() -> None:
    backlog: dict[str, Any] = {"at_warmup_end": {"cache_writes": 3}, "at_load_end": {"cache_writes": 9},
                               "drained": False}
    assert not drained_check(backlog).passed
    assert drained_check({**backlog, "drained": True}).passed


def test_a_pass_stands_only_when_every_check_the_cpu_figure_rests_on_passed() -> None:
    cpu_ok, cpu_over = Check("cache_embedder_cpu", True, ""), Check("cache_embedder_cpu", False, "")
    kept_up, gave_up = Check("cache_kept_up", True, ""), Check("cache_kept_up", False, "")
    assert verdict([cpu_ok, kept_up]) == "PASS"
    assert verdict([cpu_ok, gave_up]) == "INVALID"  # a cache that times out does less work, not less per lookup
    assert verdict([cpu_over, kept_up]) == "FAIL"
    assert verdict([cpu_over, gave_up]) == "FAIL"  # over the target even with the figure too low


def run(cache: float, embedder: float, gateway: float) -> dict[str, Any]:
    return {"cpu_ms_per_request": {"cache": cache, "embedder": embedder, "gateway": gateway},
            "cache+embedder": cache + embedder}


def test_runs_are_kept_by_label_and_compared_with_the_before_run() -> None:
    first = merge(None, "before", run(20.0, 30.0, 2.0))
    assert first["ratios_to_before"] == {}
    second = merge(first, "after", run(2.0, 4.0, 2.0))
    assert set(second["runs"]) == {"before", "after"}
    assert second["ratios_to_before"] == {"after": {"cache": 0.1, "embedder": 0.133, "gateway": 1.0,
                                                    "cache+embedder": 0.12}}
    again = merge(second, "before", run(10.0, 30.0, 4.0))  # a label run again replaces only its own entry
    assert again["runs"]["after"] == second["runs"]["after"]
    assert again["ratios_to_before"]["after"]["gateway"] == 0.5
    assert again["targets"] == TARGETS


def test_without_a_before_run_there_is_nothing_to_compare() -> None:
    assert ratios({"after": run(1.0, 1.0, 1.0)}) == {}
