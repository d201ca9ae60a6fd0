"""What an answer cost call by call, at each serving deployment's own price, and what it saved
against the heavyweight alone."""

from __future__ import annotations

import pytest

from services.router.costs import (
    ABORTED_DRAFT,
    ANSWER,
    DRAFT,
    WASTED_SPECULATION,
    Served,
    Spend,
    account,
    by_tier,
    estimate_prompt_tokens,
)
from shared.messages import Account
from shared.pricing import Price

NANO, BIG, CHEAP_BIG = Price(0.10, 0.40), Price(2.00, 8.00), Price(1.00, 4.00)
DRAFTER = Served("drafter", "nano-a", "gpt-4.1-nano", NANO)
HEAVY = Served("heavyweight", "big-a", "gpt-4.1", BIG)
HEAVY_CHEAP = Served("heavyweight", "big-b", "big-b-model", CHEAP_BIG)


def tokens(n: int) -> list[dict]:
    return [{"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]} for i in range(n)]


def usage(prompt: int, completion: int) -> dict:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def test_an_accepted_draft_costs_the_drafter_and_saves_the_heavyweight_price() -> None:
    spend = Spend(estimate_prompt_tokens([{"role": "user", "content": "x" * 400}]))
    assert spend.prompt_tokens == 100
    spend.answer_tokens = spend.add(DRAFTER, DRAFT, [*tokens(30), usage(120, 30)])
    result = account(spend, BIG)
    assert spend.prompt_tokens == 120  # the tier's count replaces the estimate
    (call,) = result.calls
    assert (call.tier, call.deployment, call.model, call.role) == ("drafter", "nano-a", "gpt-4.1-nano", DRAFT)
    assert (call.prompt_tokens, call.completion_tokens) == (120, 30)
    assert call.cost_usd == pytest.approx(NANO.cost(120, 30))
    assert result.cost_usd == pytest.approx(NANO.cost(120, 30))
    assert result.baseline_usd == pytest.approx(BIG.cost(120, 30))
    assert result.saved_usd == pytest.approx(BIG.cost(120, 30) - NANO.cost(120, 30))


def test_an_aborted_draft_takes_the_prompt_a_later_call_reported() -> None:
    """The draft was cut off (no usage); the heavyweight's usage says what the prompt really was."""
    spend = Spend(7)
    spend.add(DRAFTER, ABORTED_DRAFT, tokens(3))
    spend.answer_tokens = spend.add(HEAVY, ANSWER, [*tokens(40), usage(50, 40)])
    result = account(spend, BIG)
    aborted, answer = result.calls
    assert (aborted.role, aborted.prompt_tokens, aborted.completion_tokens) == (ABORTED_DRAFT, 50, 3)
    assert (answer.role, answer.prompt_tokens, answer.completion_tokens) == (ANSWER, 50, 40)
    assert result.cost_usd == pytest.approx(NANO.cost(50, 3) + BIG.cost(50, 40))
    assert result.saved_usd is not None and result.saved_usd < 0  # paying for the draft too
    assert by_tier(result) == {"drafter": pytest.approx(NANO.cost(50, 3)),
                               "heavyweight": pytest.approx(BIG.cost(50, 40))}


def test_each_call_is_priced_at_the_deployment_that_served_it() -> None:
    """A mixed pool: the same tier, two prices; the baseline stays the heavyweight tier's price."""
    spend = Spend(10)
    spend.answer_tokens = spend.add(HEAVY_CHEAP, ANSWER, [*tokens(20), usage(10, 20)])
    result = account(spend, BIG)
    assert result.calls[0].deployment == "big-b"
    assert result.cost_usd == pytest.approx(CHEAP_BIG.cost(10, 20))
    assert result.cost_usd != pytest.approx(BIG.cost(10, 20))
    assert result.baseline_usd == pytest.approx(BIG.cost(10, 20))


def test_a_cancelled_speculation_costs_its_tokens_and_the_prompt() -> None:
    spend = Spend(20)
    spend.answer_tokens = spend.add(DRAFTER, DRAFT, [*tokens(5), usage(20, 5)])
    spend.add_tokens(HEAVY, WASTED_SPECULATION, 4)
    result = account(spend, BIG)
    assert [call.role for call in result.calls] == [DRAFT, WASTED_SPECULATION]
    assert result.calls[1].prompt_tokens == 20
    assert result.cost_usd == pytest.approx(NANO.cost(20, 5) + BIG.cost(20, 4))


def test_a_continuation_keeps_its_own_prompt_and_leaves_the_request_prompt_alone() -> None:
    spend = Spend(10)
    spend.add(DRAFTER, ABORTED_DRAFT, tokens(6))
    spend.add(HEAVY, "continuation", [*tokens(8), usage(30, 8)], own_prompt=False)
    result = account(spend, BIG)
    assert spend.prompt_tokens == 10  # the continuation's 30 include the shown text
    assert [call.prompt_tokens for call in result.calls] == [10, 30]


def test_an_unpriced_deployment_leaves_the_total_unknown_but_prices_the_others() -> None:
    spend = Spend(10)
    spend.add(Served("drafter", "local", "smol", None), ABORTED_DRAFT, tokens(3))
    spend.answer_tokens = spend.add(HEAVY, ANSWER, [*tokens(4), usage(10, 4)])
    result = account(spend, BIG)
    assert result.calls[0].cost_usd is None
    assert result.calls[1].cost_usd == pytest.approx(BIG.cost(10, 4))
    assert result.cost_usd is None and result.saved_usd is None
    assert by_tier(result) == {}


def test_without_a_heavyweight_price_there_is_no_baseline() -> None:
    spend = Spend(10)
    spend.answer_tokens = spend.add(DRAFTER, DRAFT, [*tokens(2), usage(10, 2)])
    result = account(spend, None)
    assert result.cost_usd == pytest.approx(NANO.cost(10, 2))
    assert result.baseline_usd is None and result.saved_usd is None


def test_the_account_survives_the_wire() -> None:
    spend = Spend(10)
    spend.add(DRAFTER, ABORTED_DRAFT, tokens(3))
    spend.answer_tokens = spend.add(HEAVY, ANSWER, [*tokens(4), usage(10, 4)])
    result = account(spend, BIG)
    assert Account.from_wire(result.to_wire()) == result


def test_prompt_estimate_counts_text_parts() -> None:
    assert estimate_prompt_tokens([{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}]) == 2
    assert estimate_prompt_tokens([]) == 1
