"""The soak benchmark's pure parts: per-minute percentiles, growth, the target checks, the
traffic mix and reading a streamed answer."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.soak_load import MIX, Call, Traffic, body, streamed_text
from bench.soak_report import (
    DISCONNECTED,
    OK,
    Record,
    cpu_ms_per_request,
    error_counts,
    errors_check,
    growth,
    p99_check,
    per_minute,
    rss_check,
    streams_check,
    trend_growth,
)
from bench.soak_upstream import DRAFT_TEXT, HEAVY_TEXT, UNSURE, heavyweight_state


def record(started_s: float, latency_ms: float, outcome: str = OK) -> Record:
    return Record("accept", started_s, latency_ms, outcome)


def test_per_minute_buckets_by_start_time_and_leaves_disconnects_and_errors_out_of_latency() -> None:
    records = [record(1, 10), record(30, 20), record(59.9, 30), record(40, 5000, DISCONNECTED),
               record(50, 9000, "timeout"), record(60, 100), record(119, 300), record(125, 7)]
    rows = per_minute(records, warmup_s=60)
    assert rows == [
        {"minute": 0, "warmup": True, "requests": 5, "errors": 1, "p50_ms": 20.0, "p99_ms": 30.0},
        {"minute": 1, "warmup": False, "requests": 2, "errors": 0, "p50_ms": 100.0, "p99_ms": 300.0},
        {"minute": 2, "warmup": False, "requests": 1, "errors": 0, "p50_ms": 7.0, "p99_ms": 7.0},
    ]


def test_a_minute_with_no_answer_has_no_percentiles() -> None:
    assert per_minute([record(3, 1, "http_502")], warmup_s=0) == [
        {"minute": 0, "warmup": False, "requests": 1, "errors": 1, "p50_ms": None, "p99_ms": None}]


def test_growth_is_relative_to_the_start() -> None:
    assert growth(100, 110) == pytest.approx(0.1)
    assert growth(100, 90) == pytest.approx(-0.1)
    assert growth(0, 0) == 0.0
    assert growth(0, 5) == math.inf


def test_rss_is_judged_on_its_trend_and_names_every_service() -> None:
    flat = [(0, 100), (10, 104), (20, 100), (30, 104)]
    passed = rss_check({"gateway": flat, "router-0": [(0, 200), (10, 200)]}, 0.10)
    assert passed.passed and "gateway +2.4%" in passed.detail and "router-0 +0.0%" in passed.detail
    assert not rss_check({"gateway": flat, "router-0": [(0, 200), (10, 210), (20, 221)]}, 0.10).passed


def test_a_sawtooth_is_not_a_leak_but_a_steady_climb_is() -> None:
    # The cache in a soak: its Edge worker frees memory after each index build.
    saw = [(10 * i, mb) for i, mb in enumerate([300, 305, 276, 290, 310, 279, 286, 305, 280, 300])]
    assert abs(trend_growth(saw)) < 0.03
    assert rss_check({"cache": saw}, 0.10).passed
    climb = [(10 * i, 250 + 5 * i) for i in range(12)]  # 250 -> 305 MB: +22%
    assert trend_growth(climb) == pytest.approx(0.22)
    assert not rss_check({"cache": climb}, 0.10).passed
    # Plain Python numbers, as json.dumps (the results file) takes them: numpy's would not serialise.
    assert type(trend_growth(climb)) is float and type(rss_check({"cache": climb}, 0.10).passed) is bool


def test_an_rss_trend_needs_two_times() -> None:
    with pytest.raises(ValueError, match="two times"):
        trend_growth([(5, 1), (5, 2)])


def test_p99_is_flat_when_the_last_minute_stays_within_the_ratio_of_the_first_after_warmup() -> None:
    minutes = [{"minute": 0, "warmup": True, "p99_ms": 900.0}, {"minute": 1, "warmup": False, "p99_ms": 100.0},
               {"minute": 2, "warmup": False, "p99_ms": 400.0}, {"minute": 3, "warmup": False, "p99_ms": 150.0}]
    assert p99_check(minutes, 1.5).passed  # the warm-up's 900 and a bump in between do not count
    assert not p99_check([*minutes, {"minute": 4, "warmup": False, "p99_ms": 151.0}], 1.5).passed
    assert not p99_check(minutes[:2], 1.5).passed  # one measured minute cannot show a trend


def test_streams_are_bounded_by_their_caps_with_trimming_slack_and_by_the_group_backlog() -> None:
    caps = {"requests": 1000, "replies": 100}
    samples = [{"requests": 10, "replies": 50}, {"requests": 1110, "replies": 201}]
    assert streams_check(samples, caps, backlogs=[3, 40], max_backlog=40).passed
    assert not streams_check([*samples, {"requests": 1111, "replies": 0}], caps, [0], 40).passed
    assert not streams_check(samples, caps, backlogs=[41], max_backlog=40).passed


def test_errors_count_client_failures_and_what_services_counted_but_never_disconnects() -> None:
    records = [record(0, 1), record(0, 1, DISCONNECTED), record(0, 1, "http_502"), record(0, 1, "http_502"),
               record(0, 1, "timeout")]
    assert error_counts(records) == {"http_502": 2, "timeout": 1}
    assert errors_check({}, {"gateway:lookups": 0.0}).passed
    failed = errors_check({"timeout": 1}, {"gateway:lookups": 3.0})
    assert not failed.passed and failed.detail == "timeout 1, gateway:lookups 3"


def test_cpu_per_request_in_milliseconds() -> None:
    assert cpu_ms_per_request({"gateway": 1.0}, {"gateway": 3.5}, 1000) == {"gateway": 2.5}


def iter_calls(count: int) -> list[Call]:
    traffic = Traffic(seed=2)
    return [traffic.next() for _ in range(count)]


def test_the_traffic_follows_the_mix_and_every_kind_expects_its_tier_s_answer() -> None:
    calls = iter_calls(5000)
    shares = Counter(call.kind for call in calls)
    for kind, weight in MIX.items():
        assert shares[kind] / len(calls) == pytest.approx(weight / sum(MIX.values()), abs=0.03)
    for call in calls:
        assert call.expected == (HEAVY_TEXT if call.kind in ("escalate", "disconnect") else DRAFT_TEXT)
        assert call.stream or call.kind != "disconnect"
    accepted = [call.prompt for call in calls if call.kind == "accept"]
    assert len(set(accepted)) == len(accepted)  # every accepted question is new: a miss
    assert len({call.prompt for call in calls if call.kind == "hit"}) <= 50


def test_unsure_questions_have_their_own_context_so_no_stored_draft_answers_them() -> None:
    calls = iter_calls(200)
    unsure = next(call for call in calls if UNSURE in call.prompt)
    sure = next(call for call in calls if UNSURE not in call.prompt)
    assert body(unsure)["messages"][0] != body(sure)["messages"][0]


def test_a_streamed_answer_counts_only_when_it_ends_in_one_done() -> None:
    chunks = (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
              b'data: {"choices":[{"delta":{"content":"Sure"}}]}\n\n'
              b'data: {"choices":[{"delta":{"content":" d1"},"finish_reason":"stop"}]}\n\n'
              b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n')
    assert streamed_text(chunks + b"data: [DONE]\n\n") == "Sure d1"
    assert streamed_text(chunks) is None
    assert streamed_text(chunks + b"data: [DONE]\n\ndata: [DONE]\n\n") is None


def test_the_soak_fake_records_a_native_wire_s_request_as_the_fake_does_but_keeps_none_of_them() -> None:
    state = heavyweight_state()
    seen = state.record("claude-x", {"max_tokens": 5}, True, authorization=None, api="anthropic",
                        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert (seen.model, seen.stream, seen.api, seen.headers) == (
        "claude-x", True, "anthropic", {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert state.snapshot() == []
