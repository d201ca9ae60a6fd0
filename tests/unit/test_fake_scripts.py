"""The fake upstream's scripting maths: target entropies, token splitting, sentinel padding."""

from __future__ import annotations

import math

import pytest

from tests.fakes.scripts import (
    DEFAULT_BITS,
    SENTINEL_LOGPROB,
    Script,
    confident,
    entropy_bits,
    sentinel_count,
    split_tokens,
    token_alternatives,
    tokens_due,
    top_logprobs_for,
    uncertain,
)


@pytest.mark.parametrize("k", [2, 3, 5, 10, 20])
@pytest.mark.parametrize("bits", [0.0, 1e-6, 0.05, 0.5, 1.0, 2.0, 3.0, 4.0, 4.3])
def test_top_logprobs_hit_the_target_entropy(bits: float, k: int) -> None:
    logprobs = top_logprobs_for(bits, k)
    assert len(logprobs) == k
    assert entropy_bits(logprobs) == pytest.approx(min(bits, math.log2(k)), abs=1e-6)


@pytest.mark.parametrize("bits", [0.0, 0.05, 1.5, 10.0])
def test_top_logprobs_are_descending_probabilities(bits: float) -> None:
    logprobs = top_logprobs_for(bits, 8)
    assert logprobs == sorted(logprobs, reverse=True)
    assert all(lp <= 0 and math.isfinite(lp) for lp in logprobs)
    assert sum(math.exp(lp) for lp in logprobs) == pytest.approx(1.0)


def test_top_logprobs_clamp_out_of_range_targets() -> None:
    assert entropy_bits(top_logprobs_for(-1.0, 4)) == pytest.approx(0.0, abs=1e-6)
    assert entropy_bits(top_logprobs_for(9.0, 4)) == pytest.approx(2.0, abs=1e-6)
    assert top_logprobs_for(2.0, 1) == [0.0]
    assert top_logprobs_for(2.0, 0) == []


def test_split_tokens_keeps_spaces_and_round_trips() -> None:
    text = "Hello world,  this is\na test.\n"
    tokens = split_tokens(text)
    assert tokens[:2] == ["Hello", " world,"]
    assert "".join(tokens) == text


def test_confident_and_uncertain_scripts_carry_their_entropies() -> None:
    sure = confident("Paris is the capital.", ttft_s=0.1)
    unsure = uncertain("Maybe it is Lyon.", bits=2.5)
    assert sure.tokens == ["Paris", " is", " the", " capital."]
    assert sure.bits == [DEFAULT_BITS] * 4 and sure.ttft_s == 0.1
    assert unsure.bits == [2.5] * 4
    assert unsure.text == "Maybe it is Lyon."


def test_script_rejects_mismatched_entropies() -> None:
    with pytest.raises(ValueError, match="2 entropies for 1 tokens"):
        Script(tokens=["a"], entropies=[0.1, 0.2])


def test_alternatives_put_the_chosen_token_first() -> None:
    chosen, alternatives = token_alternatives(" cat", 1.0, 5, sentinel=False)
    assert alternatives[0] == (" cat", chosen)
    assert len({t for t, _ in alternatives}) == 5
    assert entropy_bits([lp for _, lp in alternatives]) == pytest.approx(1.0, abs=1e-6)


def test_sentinel_padding_keeps_the_target_in_the_head() -> None:
    chosen, alternatives = token_alternatives("x", 1.5, 8, sentinel=True)
    pads = sentinel_count(8)
    assert pads == 2
    assert [lp for _, lp in alternatives[-pads:]] == [SENTINEL_LOGPROB] * pads
    assert entropy_bits([lp for _, lp in alternatives]) == pytest.approx(1.5, abs=1e-6)
    assert alternatives[0][1] == chosen


def test_no_alternatives_still_gives_the_chosen_token_a_logprob() -> None:
    chosen, alternatives = token_alternatives("x", 3.0, 0, sentinel=False)
    assert alternatives == []
    assert chosen == top_logprobs_for(3.0, 5)[0]


def test_tokens_due_follow_the_schedule_and_catch_up() -> None:
    assert tokens_due(0, 10, 0.0, 0.0) == 10
    assert tokens_due(0, 10, 0.1, 0.0) == 1
    assert tokens_due(3, 10, 0.1, 0.2999) == 4
    assert tokens_due(3, 10, 0.1, 0.55) == 6
    assert tokens_due(3, 10, 0.1, 5.0) == 10


def test_script_rejects_an_unknown_garbage_mode() -> None:
    with pytest.raises(ValueError, match="unknown garbage mode 'nonsense'"):
        Script(tokens=["a"], garbage="nonsense")
    assert Script(tokens=["a"], garbage="truncated").garbage == "truncated"
