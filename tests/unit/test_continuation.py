"""The heavyweight's request when it continues a partly shown draft, in each style."""

from __future__ import annotations

import pytest

from services.router.continuation import CONTINUE_INSTRUCTION, continuation_params

BODY = {"model": "auto", "messages": [{"role": "user", "content": "Tell me about Paris."}], "stream": True,
        "temperature": 0.2, "n": 1}


def test_instruction_style_sends_the_prefix_as_an_assistant_turn_then_asks_to_go_on() -> None:
    params = continuation_params(BODY, "big", "Paris is the capital", "instruction")
    assert params["model"] == "big" and params["stream"] is True and params["temperature"] == 0.2
    assert params["messages"] == [*BODY["messages"], {"role": "assistant", "content": "Paris is the capital"},
                                  {"role": "user", "content": CONTINUE_INSTRUCTION}]
    assert "continue_final_message" not in params and "n" not in params
    assert BODY["messages"] == [{"role": "user", "content": "Tell me about Paris."}]  # the client's body untouched


def test_continue_final_message_style_asks_the_server_to_extend_the_last_message() -> None:
    params = continuation_params(BODY, "big", "Paris is", "continue_final_message")
    assert params["messages"][-1] == {"role": "assistant", "content": "Paris is"}
    assert params["continue_final_message"] is True and params["add_generation_prompt"] is False


def test_prefill_style_ends_on_the_assistant_prefix() -> None:
    params = continuation_params(BODY, "big", "Paris is", "prefill")
    assert params["messages"][-1] == {"role": "assistant", "content": "Paris is"}
    assert len(params["messages"]) == 2 and "continue_final_message" not in params


@pytest.mark.parametrize("style", ["instruction", "continue_final_message", "prefill"])
def test_with_nothing_shown_the_request_is_the_clients_own(style: str) -> None:
    assert continuation_params(BODY, "big", "", style)["messages"] == BODY["messages"]


def test_an_unknown_style_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown continuation style"):
        continuation_params(BODY, "big", "x", "guess")


def test_the_continuation_gets_what_is_left_of_the_clients_token_limit() -> None:
    body = {**BODY, "max_tokens": 30, "max_completion_tokens": 40}
    params = continuation_params(body, "big", "Paris is", "instruction", shown_tokens=18)
    assert (params["max_tokens"], params["max_completion_tokens"]) == (12, 22)
    assert continuation_params(body, "big", "Paris is", "prefill", shown_tokens=35)["max_tokens"] == 1
    assert continuation_params(body, "big", "", "instruction", shown_tokens=0)["max_tokens"] == 30
    assert "max_tokens" not in continuation_params(BODY, "big", "Paris is", "instruction", shown_tokens=5)
