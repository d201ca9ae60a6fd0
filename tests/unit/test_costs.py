"""What an answer cost per tier, and what it saved against the heavyweight alone."""

from __future__ import annotations

import pytest

from services.router.costs import Spend, bill, estimate_prompt_tokens
from shared.pricing import Price

NANO, BIG = Price(0.10, 0.40), Price(2.00, 8.00)
PRICES = {"drafter": NANO, "heavyweight": BIG}


def tokens(n: int) -> list[dict]:
    return [{"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]} for i in range(n)]


def usage(prompt: int, completion: int) -> dict:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def test_an_accepted_draft_costs_the_drafter_and_saves_the_heavyweight_price() -> None:
    spend = Spend(estimate_prompt_tokens([{"role": "user", "content": "x" * 400}]))
    assert spend.prompt_tokens == 100
    spend.answer_tokens = spend.add("drafter", [*tokens(30), usage(120, 30)])
    result = bill(spend, PRICES)
    assert result is not None
    assert spend.prompt_tokens == 120  # the tier's count replaces the estimate
    assert result.by_tier == {"drafter": pytest.approx(NANO.cost(120, 30))}
    assert result.baseline == pytest.approx(BIG.cost(120, 30))
    assert result.saved == pytest.approx(BIG.cost(120, 30) - NANO.cost(120, 30))


def test_an_escalation_pays_for_the_aborted_draft_too_and_saves_less_than_nothing() -> None:
    spend = Spend(50)
    spend.add("drafter", tokens(12))  # aborted: no usage, the prompt estimated, 12 tokens received
    spend.answer_tokens = spend.add("heavyweight", [*tokens(40), usage(60, 40)])
    result = bill(spend, PRICES)
    assert result is not None
    assert result.by_tier["drafter"] == pytest.approx(NANO.cost(50, 12))
    assert result.by_tier["heavyweight"] == pytest.approx(BIG.cost(60, 40))
    assert result.saved == pytest.approx(-NANO.cost(50, 12))


def test_a_continuation_prompt_is_not_the_requests_and_a_cancelled_speculation_costs_its_prompt() -> None:
    spend = Spend(50)
    spend.add_tokens("heavyweight", 7)  # a speculation cancelled after 7 tokens
    spend.add("drafter", tokens(20))
    heavy = spend.add("heavyweight", [*tokens(10), usage(90, 10)], own_prompt=False)
    spend.answer_tokens = 15 + heavy
    assert spend.prompt_tokens == 50  # the continuation's 90 include the shown text
    result = bill(spend, PRICES)
    assert result is not None
    assert result.by_tier["heavyweight"] == pytest.approx(BIG.cost(50, 7) + BIG.cost(90, 10))
    assert result.baseline == pytest.approx(BIG.cost(50, 25))


def test_no_cost_is_made_up_for_an_unpriced_tier() -> None:
    spend = Spend(10)
    spend.add("drafter", tokens(3))
    assert bill(spend, {"drafter": None, "heavyweight": BIG}) is None
    assert bill(spend, {"drafter": NANO, "heavyweight": None}) is None


def test_prompt_estimate_reads_content_parts_and_is_never_zero() -> None:
    assert estimate_prompt_tokens([]) == 1
    parts = [{"role": "user", "content": [{"type": "text", "text": "abcd" * 5}, {"type": "image_url"}]}]
    assert estimate_prompt_tokens(parts) == 5
