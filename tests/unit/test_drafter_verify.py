"""The drafter check's pure parts: the question it asks and how it reads P(yes) from log-probs."""

from __future__ import annotations

import math

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionTokenLogprob
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_token_logprob import TopLogprob

from services.cache.drafter_verify import first_token_alternatives, is_yes, question, yes_probability


def completion(token: str, tops: list[tuple[str, float]] | None, with_logprobs: bool = True) -> ChatCompletion:
    logprobs = None
    if with_logprobs:
        entry = ChatCompletionTokenLogprob(token=token, logprob=math.log(0.7), bytes=None,
                                           top_logprobs=[TopLogprob(token=t, logprob=lp, bytes=None)
                                                         for t, lp in tops or []])
        logprobs = ChoiceLogprobs(content=[entry], refusal=None)
    choice = Choice(index=0, finish_reason="length", logprobs=logprobs,
                    message=ChatCompletionMessage(role="assistant", content=token))
    return ChatCompletion(id="c", created=0, model="m", object="chat.completion", choices=[choice])


def test_the_question_names_both_requests_and_asks_for_one_word() -> None:
    messages = question("Convert 100 km to miles", "Convert 100 miles to km")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Yes or No" in messages[0]["content"]
    assert "Request 1: Convert 100 miles to km" in messages[1]["content"]
    assert "Request 2: Convert 100 km to miles" in messages[1]["content"]


@pytest.mark.parametrize("token", ["Yes", " yes", "YES", "yes.", "Yes!", "\nYes", "**Yes**"])
def test_yes_in_any_case_spacing_or_punctuation_is_yes(token: str) -> None:
    assert is_yes(token)


@pytest.mark.parametrize("token", ["No", " no", "Yesterday", "Y", "yes no", "", "Both"])
def test_other_tokens_are_not_yes(token: str) -> None:
    assert not is_yes(token)


def test_yes_probability_sums_every_yes_like_alternative() -> None:
    alternatives = [("Yes", math.log(0.6)), (" yes", math.log(0.25)), ("No", math.log(0.1)),
                    ("YES", math.log(0.04)), ("The", math.log(0.01))]
    assert yes_probability(alternatives) == pytest.approx(0.89)


def test_sentinel_logprobs_carry_no_mass_and_no_yes_means_zero() -> None:
    assert yes_probability([("Yes", -9999.0), ("yes", float("-inf")), ("No", 0.0)]) == pytest.approx(0.0, abs=1e-12)
    assert yes_probability([("No", math.log(0.9)), ("Maybe", math.log(0.1))]) == 0.0


def test_the_first_tokens_alternatives_are_read_from_a_completion() -> None:
    tops = [("Yes", math.log(0.7)), ("No", math.log(0.2))]
    assert first_token_alternatives(completion("Yes", tops)) == tops


def test_a_completion_without_top_logprobs_falls_back_to_the_chosen_token() -> None:
    assert first_token_alternatives(completion("Yes", None)) == [("Yes", math.log(0.7))]


def test_a_completion_without_logprobs_has_no_alternatives() -> None:
    assert first_token_alternatives(completion("Yes", None, with_logprobs=False)) is None
