"""Entropy math against hand-computed values, and the window's decision rule."""

from __future__ import annotations

import math

import pytest

from services.router.entropy import Decision, EntropyWindow, token_entropy_bits


@pytest.mark.parametrize(("probabilities", "bits"), [
    ([0.25, 0.25, 0.25, 0.25], 2.0),
    ([0.5, 0.5], 1.0),
    ([1.0], 0.0),
    ([0.7, 0.2, 0.1], 1.156780),  # 0.7*0.514573 + 0.2*2.321928 + 0.1*3.321928
    ([0.4, 0.4], 1.0),  # top-k mass 0.8, renormalised to 0.5/0.5
    ([0.3, 0.1], 0.811278),  # renormalised to 0.75/0.25
])
def test_entropy_matches_hand_computed_values(probabilities: list[float], bits: float) -> None:
    assert token_entropy_bits(math.log(p) for p in probabilities) == pytest.approx(bits, abs=1e-6)


def test_sentinel_and_infinite_logprobs_carry_no_mass() -> None:
    assert token_entropy_bits([math.log(0.5), math.log(0.5), -9999.0, -9999.0]) == pytest.approx(1.0)
    assert token_entropy_bits([0.0, -math.inf, -math.inf]) == 0.0
    assert token_entropy_bits([math.log(0.5), math.nan, math.log(0.5), None]) == pytest.approx(1.0)


def test_nothing_usable_gives_none() -> None:
    assert token_entropy_bits([]) is None
    assert token_entropy_bits([-math.inf, None, math.nan]) is None


def window(**overrides: float) -> EntropyWindow:
    settings = {"threshold": 2.0, "size": 4, "early_exit_tokens": 2, "speculation_threshold": None} | overrides
    return EntropyWindow(**settings)  # type: ignore[arg-type]


def window_escalates_at(values: list[float], **overrides: float) -> int | None:
    rule = window(**overrides)
    for position, bits in enumerate(values, start=1):
        if rule.add(bits) is Decision.ESCALATE:
            return position
    return None


def test_escalates_when_the_full_window_mean_exceeds_the_threshold() -> None:
    # Window of 4 after token 4: mean 1.5; after token 5: (0.1 + 3 x 2.9) / 4 = 2.2 > 2.0.
    assert window_escalates_at([0.1, 0.1, 2.9, 2.9, 2.9, 2.9]) == 5
    rule = window()
    for bits in (0.1, 0.1, 2.9, 2.9, 2.9):
        rule.add(bits)
    assert rule.escalation == "window_mean"


def test_window_escalation_needs_a_full_window() -> None:
    assert window_escalates_at([2.5, 2.5, 2.5], early_exit_tokens=0) is None
    assert window_escalates_at([2.5, 2.5, 2.5, 2.5], early_exit_tokens=0) == 4


def test_mean_exactly_at_threshold_does_not_escalate() -> None:
    assert window_escalates_at([2.0, 2.0, 2.0, 2.0, 2.0], early_exit_tokens=0) is None


def test_single_token_above_threshold_escalates_only_early() -> None:
    assert window_escalates_at([0.0, 2.5]) == 2
    rule = window()
    rule.add(2.5)
    assert rule.escalation == "early_token"
    assert window_escalates_at([0.0, 0.0, 2.5]) is None


def test_speculates_on_a_token_or_window_mean_above_the_soft_threshold() -> None:
    rule = window(speculation_threshold=1.4, early_exit_tokens=0)
    assert rule.add(0.2) is Decision.CONTINUE
    assert rule.add(1.5) is Decision.SPECULATE  # one token above 1.4
    rule = window(speculation_threshold=1.0, early_exit_tokens=0)
    assert [rule.add(b) for b in (0.9, 0.9)] == [Decision.CONTINUE, Decision.CONTINUE]
    rule = window(speculation_threshold=0.5, early_exit_tokens=0)
    assert [rule.add(b) for b in (0.4, 0.7)] == [Decision.CONTINUE, Decision.SPECULATE]


def test_no_speculation_when_turned_off() -> None:
    rule = window(early_exit_tokens=0)
    assert {rule.add(b) for b in (1.9, 1.9, 1.9)} == {Decision.CONTINUE}


def test_metric_is_the_largest_full_window_mean() -> None:
    rule = window(early_exit_tokens=0)
    for bits in (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0):
        rule.add(bits)
    assert rule.metric == pytest.approx(1.0)
    assert rule.tokens == 8


def test_metric_of_a_draft_shorter_than_the_window_is_its_mean() -> None:
    rule = window()
    assert rule.metric == 0.0
    rule.add(0.5)
    rule.add(1.5)
    assert rule.metric == pytest.approx(1.0)


def test_mean_and_recent_mean_follow_the_newest_tokens() -> None:
    window = EntropyWindow(threshold=2.0, size=4, early_exit_tokens=0)
    assert window.mean == 0.0 and window.recent_mean(2) == 0.0
    for bits in (0.0, 0.0, 2.0, 2.0, 1.0):
        window.add(bits)
    assert window.mean == pytest.approx((0.0 + 2.0 + 2.0 + 1.0) / 4)  # the oldest left the window
    assert window.recent_mean(2) == pytest.approx(1.5)
    assert window.recent_mean(10) == pytest.approx(window.mean)  # no further back than the window
    assert window.recent_mean(0) == 0.0
