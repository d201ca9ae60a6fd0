"""Sessions' pure parts: which session a request names, the history that fits, how the upstream's
messages are put together, and what a turn keeps."""

from __future__ import annotations

import pytest

from services.cache.keys import request_keys
from services.gateway.sessions import (
    Session,
    Turn,
    answer_message,
    estimate_tokens,
    fit,
    session_id_of,
    session_key,
    split_preamble,
)
from shared.chat_request import ChatCompletionRequest
from shared.errors import InvalidRequest


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_the_body_or_the_header_names_the_session() -> None:
    assert session_id_of("s1", {}) == "s1"
    assert session_id_of(None, {"X-Session-Id": "s2"}) == "s2"
    assert session_id_of("s3", {"X-Session-Id": "s3"}) == "s3"
    assert session_id_of(None, {}) is None


@pytest.mark.parametrize("header", ["", "  ", "has space", "-lead", "x" * 129, "a/b"])
def test_a_bad_header_is_a_400_naming_session_id(header: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        session_id_of(None, {"X-Session-Id": header})
    assert caught.value.param == "session_id"


def test_body_and_header_naming_different_sessions_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        session_id_of("a", {"X-Session-Id": "b"})


def test_a_session_is_private_to_its_key_and_tenant() -> None:
    mine = session_key("key-a", "tenant", "s")
    assert session_key("key-b", "tenant", "s") != mine
    assert session_key("key-a", "other", "s") != mine
    assert session_key("key-a", "tenant", "s") == mine


def test_tokens_are_about_four_characters_each_plus_four_a_message() -> None:
    assert estimate_tokens([msg("user", "x" * 8)]) == 4 + 2
    assert estimate_tokens([msg("user", "x" * 9), msg("assistant", "")]) == 4 + 3 + 4


def test_the_newest_turns_that_fit_are_kept_oldest_dropped_first() -> None:
    turns = [Turn([msg("user", str(i))], tokens) for i, tokens in enumerate([50, 30, 40, 20])]
    assert [t.messages[0]["content"] for t in fit(turns, 100)] == ["1", "2", "3"]
    assert [t.messages[0]["content"] for t in fit(turns, 59)] == ["3"]
    assert fit(turns, 10) == []


def test_history_goes_between_the_preamble_and_the_request_s_own_messages() -> None:
    history = [Turn([msg("user", "earlier"), msg("assistant", "reply")], 10)]
    session = Session("s", "k", history, [])
    messages = [msg("system", "be brief"), msg("developer", "rules"), msg("user", "now")]
    assert session.compose(messages) == [msg("system", "be brief"), msg("developer", "rules"), msg("user", "earlier"),
                                         msg("assistant", "reply"), msg("user", "now")]
    assert session.own == [msg("user", "now")]


def test_a_turn_stores_the_request_s_own_messages_and_the_answer_not_the_preamble() -> None:
    session = Session("s", "k", [], [])
    session.compose([msg("system", "sys"), msg("user", "q")])
    turn = session.turn(msg("assistant", "a"))
    assert turn.messages == [msg("user", "q"), msg("assistant", "a")]
    assert Turn.decode(turn.encode()) == turn


def test_split_preamble_stops_at_the_first_other_message() -> None:
    assert split_preamble([msg("user", "a"), msg("system", "late")]) == ([], [msg("user", "a"), msg("system", "late")])


def test_streamed_chunks_are_marked_and_their_text_collected() -> None:
    session = Session("s9", "k", [], [])
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
              {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 1}}]
    for chunk in chunks:
        session.collect(chunk)
    assert all(chunk["session_id"] == "s9" for chunk in chunks)
    assert session.streamed_answer() == msg("assistant", "Hello")


def test_a_streamed_tool_call_is_put_back_together() -> None:
    session = Session("s", "k", [], [])
    pieces = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
              {"index": 0, "function": {"arguments": '{"city": '}}, {"index": 0, "function": {"arguments": '"Paris"}'}},
              {"index": 1, "id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]
    for piece in pieces:
        session.collect({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    answer = session.streamed_answer()
    assert answer == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}
    # what is stored passes the gateway's own validation as history
    ChatCompletionRequest.model_validate({"messages": [msg("user", "q"), answer]})


def test_a_plain_answer_s_message_is_kept_as_a_request_would_carry_it() -> None:
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None,
                                                       "annotations": []}}]}
    kept = answer_message(completion)
    assert kept == msg("assistant", "hi")
    # what is stored passes the gateway's own validation as history
    ChatCompletionRequest.model_validate({"messages": [msg("user", "q"), kept]})
    assert answer_message({"choices": []}) is None


def test_draftgate_s_fields_never_go_upstream_and_a_plain_body_is_untouched() -> None:
    plain = {"model": "auto", "messages": [msg("user", "q")], "metadata": {"team": "x"}}
    request = ChatCompletionRequest.model_validate(plain)
    assert request.upstream_body() == request.body() == plain
    ours = {**plain, "session_id": "s", "variables": {"a": "b"}, "metadata": {"team": "x", "template_id": "t"}}
    request = ChatCompletionRequest.model_validate(ours)
    assert request.template_id == "t"
    assert request.upstream_body() == plain
    only_ours = {"messages": [msg("user", "q")], "metadata": {"template_id": "t"}}
    assert "metadata" not in ChatCompletionRequest.model_validate(only_ours).upstream_body()


def test_a_session_s_cache_keys_are_those_of_the_whole_conversation() -> None:
    """The gateway looks up (and routers store) the composed body: a question asked inside a
    conversation never shares an exact entry or a semantic partition with the same question alone,
    nor with the same question after another history."""
    question = [msg("user", "What is its capital?")]
    alone = request_keys({"model": "auto", "messages": question}, "t")
    keys = []
    for country in ("France", "Japan"):
        earlier = Turn([msg("user", f"Tell me about {country}."), msg("assistant", "Sure.")], 9)
        session = Session("s", "k", [earlier], [])
        keys.append(request_keys({"model": "auto", "messages": session.compose(question)}, "t"))
    assert len({alone.partition, *(k.partition for k in keys)}) == 3
    assert len({alone.exact, *(k.exact for k in keys)}) == 3
