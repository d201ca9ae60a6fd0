"""What a request's Outcome records, and the LedgerRecord made from it. Pure."""

from __future__ import annotations

import pytest

from services.gateway.outcome import Outcome, cache_hit_account, ledger_record
from shared.errors import InvalidRequest
from shared.messages import Account, LedgerRecord, Reply, UpstreamCall, decode, encode
from shared.pricing import Price

DRAFT = UpstreamCall("drafter", "nano-a", "gpt-4.1-nano", 10, 5, "aborted_draft", 0.000003)
ANSWER = UpstreamCall("heavyweight", "big-b", "gpt-4.1", 10, 20, "answer", 0.00018)
WASTED = UpstreamCall("heavyweight", "big-c", "gpt-4.1", 10, 2, "wasted_speculation", 0.000036)


def reply(kind: str, **fields: object) -> Reply:
    return Reply(request_id="r", seq=1, kind=kind, **fields)  # type: ignore[arg-type]


def test_the_head_gives_the_decision_tier_and_entropy() -> None:
    outcome = Outcome()
    outcome.head(reply("head", decision="escalate", tier="heavyweight", draft_entropy=2.5, degraded=False))
    assert (outcome.decision, outcome.tier, outcome.draft_entropy, outcome.degraded) == ("escalate", "heavyweight",
                                                                                        2.5, False)


def test_the_last_reply_gives_the_account_and_the_deployment_that_answered() -> None:
    outcome = Outcome()
    account = Account((DRAFT, WASTED, ANSWER), 0.000219, 0.00028)
    outcome.last(reply("completion", account=account.to_wire(), degraded=True))
    assert outcome.account == account
    assert outcome.deployment == "big-b"  # not the aborted draft's, not the cancelled speculation's
    assert outcome.degraded


def test_a_deployment_the_client_named_is_kept() -> None:
    outcome = Outcome(deployment="named")
    outcome.last(reply("completion", account=Account((ANSWER,)).to_wire()))
    assert outcome.deployment == "named"


def test_an_unreadable_account_is_left_out_not_raised() -> None:
    outcome = Outcome()
    outcome.last(reply("end", account={"calls": [{"tier": "drafter"}]}))
    assert outcome.account is None


def test_a_progressive_stream_s_final_decision_replaces_progressive() -> None:
    outcome = Outcome()
    outcome.head(reply("head", decision="progressive", tier="drafter"))
    outcome.decided({"decision": "continued", "tier": "heavyweight", "draft_entropy": 3.1})
    assert (outcome.decision, outcome.tier, outcome.draft_entropy) == ("continued", "heavyweight", 3.1)


@pytest.mark.parametrize(("error", "code"), [
    (InvalidRequest("bad", code="invalid_json"), "invalid_json"),
    (InvalidRequest("bad"), "invalid_request_error"),
    ({"error": {"message": "m", "type": "upstream_error", "param": None, "code": "retry_diverged"}}, "retry_diverged"),
    ({"error": {"message": "m", "type": "rate_limit_error", "param": None, "code": None}}, "rate_limit_error"),
    (None, "error"),
])
def test_a_failure_records_its_status_and_error_code(error: object, code: str) -> None:
    outcome = Outcome()
    outcome.failed(429, error)  # type: ignore[arg-type]
    assert (outcome.status, outcome.error, outcome.decision) == (429, code, "error")


def test_a_failure_after_the_head_keeps_the_head_s_decision() -> None:
    outcome = Outcome()
    outcome.head(reply("head", decision="accept", tier="drafter"))
    outcome.failed(504, None)
    assert outcome.decision == "accept"


def test_a_cache_hit_costs_nothing_and_saves_the_heavyweight_s_price() -> None:
    account = cache_hit_account({"usage": {"prompt_tokens": 1000, "completion_tokens": 500}}, Price(2.0, 8.0))
    assert account.cost_usd == 0.0
    assert account.baseline_usd == pytest.approx(0.002 + 0.004)
    assert account.saved_usd == pytest.approx(0.006)
    assert cache_hit_account({}, None).baseline_usd is None


def test_the_record_carries_the_outcome_and_survives_the_wire() -> None:
    outcome = Outcome(status=200, decision="accept", tier="drafter", deployment="nano-a", cache="miss",
                      ttft_ms=12.5, draft_entropy=0.4, account=Account((DRAFT,), 0.000003, 0.00006))
    record = ledger_record(outcome, request_id="r1", arrived=1700000000.0, latency_ms=42.1234, key_id="k",
                           tenant="t", template_id="tpl", session_id="s", model="auto", stream=True)
    back = decode(LedgerRecord, encode(record))
    assert back == record
    assert (back.decision, back.cache, back.latency_ms, back.ttft_ms, back.stream) == ("accept", "miss", 42.123, 12.5,
                                                                                       True)
    assert Account.from_wire(back.account or {}) == outcome.account
