"""A draft's trace signals against hand-computed values; the running TraceStats agrees with a whole-trace
computation after every token, and its window signal with the router's EntropyWindow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.router.entropy import EntropyWindow, token_entropy_bits
from services.router.signals import (
    DRAFT_SIGNALS,
    PROMPT_SIGNALS,
    TokenTrace,
    TraceStats,
    draft_signals,
    prompt_signals,
    quantile,
    tokens_of,
    with_top_k,
)

LN = math.log


def token(p: float, *alternatives: float) -> TokenTrace:
    """A token chosen with probability p, its alternatives' probabilities given (p first if omitted)."""
    alts = alternatives or (p, 1 - p)
    return TokenTrace("t", LN(p), tuple(LN(a) for a in alts))


def test_signals_of_a_small_trace_match_hand_computed_values() -> None:
    tokens = [token(0.5, 0.5, 0.5),  # 1 bit
              token(1.0, 1.0),  # 0 bits
              token(0.25, 0.25, 0.25, 0.25, 0.25)]  # 2 bits
    signals = draft_signals(tokens)
    assert signals["max_entropy"] == pytest.approx(2.0)
    assert signals["mean_entropy"] == pytest.approx(1.0)
    assert signals["head_mean_entropy"] == pytest.approx(1.0)
    assert signals["frac_uncertain"] == pytest.approx(1 / 3)  # only the 2-bit token is above 1 bit
    assert signals["max_window_mean"] == pytest.approx(1.0)  # shorter than the window: the mean of all
    neglogprobs = sorted([LN(2), 0.0, LN(4)])
    assert signals["max_neglogprob"] == pytest.approx(LN(4))
    assert signals["q80_neglogprob"] == pytest.approx(neglogprobs[1] + 0.6 * (neglogprobs[2] - neglogprobs[1]))
    assert signals["mean_neglogprob"] == pytest.approx((LN(2) + LN(4)) / 3)
    assert signals["head_mean_neglogprob"] == pytest.approx((LN(2) + LN(4)) / 3)
    assert signals["log_length"] == pytest.approx(math.log1p(3))


def test_an_empty_trace_has_zero_signals() -> None:
    assert draft_signals([]) == {name: 0.0 for name in DRAFT_SIGNALS}


def test_tokens_without_usable_alternatives_count_for_length_only() -> None:
    signals = draft_signals([token(0.5, 0.5, 0.5), TokenTrace("x", None, ())])
    assert signals["mean_entropy"] == pytest.approx(1.0)
    assert signals["mean_neglogprob"] == pytest.approx(LN(2))
    assert signals["log_length"] == pytest.approx(math.log1p(2))


def varied_trace(n: int) -> list[TokenTrace]:
    out = []
    for i in range(n):
        p = 0.3 + 0.65 * ((i * 7919) % 13) / 13
        out.append(TokenTrace(f" w{i}", LN(p), tuple(sorted((LN(p), LN((1 - p) * 0.7), LN((1 - p) * 0.3)),
                                                            reverse=True))))
    return out


def test_running_stats_equal_the_whole_trace_after_every_token() -> None:
    tokens = varied_trace(40)
    stats = TraceStats()
    for i, t in enumerate(tokens, start=1):
        stats.add(t)
        assert stats.signals() == pytest.approx(draft_signals(tokens[:i]))
        assert stats.tokens == i


def test_the_window_signal_is_the_routers_draft_entropy_metric_at_a_ten_token_window() -> None:
    tokens = varied_trace(37)
    window = EntropyWindow(threshold=1e9, size=10, early_exit_tokens=0)
    for t in tokens:
        bits = token_entropy_bits(t.top_logprobs)
        assert bits is not None
        window.add(bits)
    assert draft_signals(tokens)["max_window_mean"] == pytest.approx(window.metric)


def test_a_trace_cut_to_k_alternatives_keeps_the_k_most_likely() -> None:
    t = TokenTrace("a", LN(0.4), (LN(0.4), LN(0.3), LN(0.2), LN(0.1)))
    (cut,) = with_top_k([t], 2)
    assert cut == TokenTrace("a", LN(0.4), (LN(0.4), LN(0.3)))
    assert draft_signals([cut])["max_entropy"] == pytest.approx(token_entropy_bits([LN(0.4), LN(0.3)]))


def test_tokens_of_a_chunk_sorts_and_cuts_alternatives_and_keeps_null_logprobs() -> None:
    chunk = {"choices": [{"delta": {"content": " hi"}, "logprobs": {"content": [
        {"token": " hi", "logprob": -0.1, "top_logprobs": [{"token": "b", "logprob": -3.0},
                                                          {"token": " hi", "logprob": -0.1},
                                                          {"token": "c", "logprob": None},
                                                          {"token": "d", "logprob": -2.0}]},
        {"token": "!", "logprob": None, "top_logprobs": []}]}}]}
    assert tokens_of(chunk, 2) == [TokenTrace(" hi", -0.1, (-0.1, -2.0)), TokenTrace("!", None, ())]
    assert tokens_of({"choices": []}, 5) == []


def test_quantile_interpolates_as_numpy_does() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert quantile([1.0], 0.8) == 1.0
    assert quantile([], 0.8) == 0.0


def test_prompt_signals_name_the_properties_of_the_last_user_message() -> None:
    messages = [{"role": "user", "content": "ignored"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "Write a python function"},
                                              {"type": "text", "text": "that adds 2 and 3"}]}]
    signals = prompt_signals(messages)
    assert tuple(signals) == PROMPT_SIGNALS
    assert signals["prompt_code"] == 1.0 and signals["prompt_digits"] == 1.0 and signals["prompt_open"] == 1.0
    assert signals["prompt_log_chars"] == pytest.approx(math.log1p(len("Write a python function that adds 2 and 3")))
    assert prompt_signals([])["prompt_log_chars"] == 0.0


def test_version_2_signals_of_a_small_trace_match_hand_computed_values() -> None:
    tokens = [TokenTrace("12", LN(0.5), (LN(0.5), LN(0.5))),  # 1 bit
              TokenTrace("\n", 0.0, (0.0,)),  # 0 bits
              TokenTrace("12", LN(0.25), (LN(0.25),) * 4)]  # 2 bits
    signals = draft_signals(tokens)
    assert signals["std_entropy"] == pytest.approx(np.std([1.0, 0.0, 2.0]))
    assert signals["std_neglogprob"] == pytest.approx(np.std([LN(2), 0.0, LN(4)]))
    assert signals["q95_neglogprob"] == pytest.approx(np.quantile([LN(2), 0.0, LN(4)], 0.95))
    assert signals["log_sum_neglogprob"] == pytest.approx(math.log1p(LN(2) + LN(4)))
    assert signals["first_entropy"] == pytest.approx(1.0)
    assert signals["first_neglogprob"] == pytest.approx(LN(2))
    assert signals["log_uncertain"] == pytest.approx(math.log1p(1))  # one token above 1 bit
    assert signals["repeat_share"] == pytest.approx(1 / 3)  # "12" drafted twice
    assert signals["draft_log_lines"] == pytest.approx(math.log1p(1))
    assert signals["draft_digits"] == 1.0


def test_version_2_prompt_signals_read_numbers_and_what_is_asked() -> None:
    question = "How many apples are 67 times 8? Reply with only the number."
    signals = prompt_signals([{"role": "user", "content": question}])
    assert signals["prompt_numbers"] == 2.0 and signals["prompt_max_digits"] == 2.0
    assert signals["prompt_asks_number"] == 1.0 and signals["prompt_constrained"] == 1.0
    assert signals["prompt_asks_list"] == 0.0
    assert signals["prompt_log_words"] == pytest.approx(math.log1p(12))
    assert prompt_signals([{"role": "user", "content": "List three fruits."}])["prompt_asks_list"] == 1.0
