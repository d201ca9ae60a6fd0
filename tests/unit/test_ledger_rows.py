"""A LedgerRecord's account flattened into the ledger's columns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ledger.rows import feedback_row, record_row
from shared.messages import Feedback, LedgerRecord, WireError


def call(tier: str, role: str, prompt: int, completion: int, model: str = "m", cost: float | None = 0.001) -> dict:
    return {"tier": tier, "deployment": f"{tier}-a", "model": model, "prompt_tokens": prompt,
            "completion_tokens": completion, "role": role, "cost_usd": cost}


def test_tokens_are_summed_per_tier_and_for_unserved_calls() -> None:
    account = {"calls": [call("drafter", "aborted_draft", 100, 7, "small"),
                         call("heavyweight", "wasted_speculation", 100, 3, "big"),
                         call("heavyweight", "answer", 100, 50, "big")], "cost_usd": 0.003, "baseline_usd": 0.002}
    row = record_row(LedgerRecord(request_id="r", time=0.0, model="auto", account=account))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (300, 60)
    assert (row["drafter_prompt_tokens"], row["drafter_completion_tokens"]) == (100, 7)
    assert (row["heavyweight_prompt_tokens"], row["heavyweight_completion_tokens"]) == (200, 53)
    assert (row["aborted_draft_prompt_tokens"], row["aborted_draft_completion_tokens"]) == (100, 7)
    assert (row["wasted_speculation_prompt_tokens"], row["wasted_speculation_completion_tokens"]) == (100, 3)
    assert row["served_model"] == "big"
    assert row["saved_usd"] == pytest.approx(-0.001)  # escalation with waste: dearer than the heavyweight alone
    assert [c["role"] for c in row["calls"]] == ["aborted_draft", "wasted_speculation", "answer"]


def test_a_continued_answer_is_served_by_its_last_model_and_a_cache_hit_by_what_was_asked() -> None:
    continued = {"calls": [call("drafter", "draft", 10, 5, "small"), call("heavyweight", "continuation", 20, 9, "big")]}
    assert record_row(LedgerRecord(request_id="a", time=0.0, account=continued))["served_model"] == "big"
    hit = record_row(LedgerRecord(request_id="b", time=0.0, model="auto", decision="cache_hit", account=None))
    assert hit["served_model"] == "auto" and hit["prompt_tokens"] == 0 and hit["calls"] == []
    assert hit["cost_usd"] is None and hit["saved_usd"] is None


def test_time_is_utc_with_its_day() -> None:
    row = record_row(LedgerRecord(request_id="r", time=datetime(2026, 12, 3, 23, 59, 59, tzinfo=UTC).timestamp()))
    assert row["time"] == datetime(2026, 12, 3, 23, 59, 59, tzinfo=UTC) and row["day"] == "2026-12-03"


def test_non_finite_numbers_become_null() -> None:
    row = record_row(LedgerRecord(request_id="r", time=0.0, latency_ms=float("nan"), ttft_ms=float("inf"),
                                  account={"calls": [], "cost_usd": float("nan"), "baseline_usd": 1.0}))
    assert row["latency_ms"] is None and row["ttft_ms"] is None
    assert row["cost_usd"] is None and row["saved_usd"] is None and row["baseline_usd"] == 1.0


def test_a_malformed_account_or_time_raises() -> None:
    with pytest.raises(WireError):
        record_row(LedgerRecord(request_id="r", time=0.0, account={"calls": [{"tier": "drafter"}]}))
    with pytest.raises((TypeError, ValueError, OverflowError)):
        record_row(LedgerRecord(request_id="r", time="yesterday"))  # type: ignore[arg-type]


def test_feedback_row() -> None:
    row = feedback_row(Feedback(request_id="r", verdict="good", comment="ok", key_id="k", tenant="t", time=1.5))
    assert row == {"request_id": "r", "verdict": "good", "comment": "ok", "key_id": "k", "tenant": "t",
                   "time": datetime.fromtimestamp(1.5, UTC)}


@pytest.mark.parametrize("bad", [
    LedgerRecord(request_id="r", time=0.0, status="200"),  # type: ignore[arg-type]
    LedgerRecord(request_id=123, time=0.0),  # type: ignore[arg-type]
    LedgerRecord(request_id="", time=0.0),
    LedgerRecord(request_id="r", time=0.0, status=2**40),
    LedgerRecord(request_id="r", time=0.0, tenant=["acme"]),  # type: ignore[arg-type]
    LedgerRecord(request_id="r", time=0.0, stream=1),  # type: ignore[arg-type]
    LedgerRecord(request_id="r", time=1e300),
    LedgerRecord(request_id="r", time=float("nan")),
    LedgerRecord(request_id="r", time=0.0, latency_ms="fast"),  # type: ignore[arg-type]
    LedgerRecord(request_id="r", time=0.0, account={"calls": [call("drafter", "draft", "10", 5)]}),
    LedgerRecord(request_id="r", time=0.0, account={"calls": [call("drafter", "draft", -1, 5)]}),
    LedgerRecord(request_id="r", time=0.0, account={"calls": [{**call("drafter", "draft", 1, 5), "model": b"m"}]}),
])
def test_a_value_of_the_wrong_type_is_refused_before_the_database_sees_it(bad: LedgerRecord) -> None:
    with pytest.raises((ValueError, WireError, OverflowError)):
        record_row(bad)


def test_nul_characters_are_removed_since_postgresql_text_cannot_hold_them() -> None:
    row = record_row(LedgerRecord(request_id="r\x00", time=0.0, tenant="ac\x00me",
                                  account={"calls": [call("drafter", "draft", 1, 2, "m\x00")]}))
    assert (row["request_id"], row["tenant"], row["calls"][0]["model"]) == ("r", "acme", "m")
