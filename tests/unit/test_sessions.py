"""Sessions' pure parts: which session a request names, the history that fits, how the upstream's
messages are put together, and what a turn keeps."""

from __future__ import annotations

import dataclasses

import pytest

from services.cache.keys import request_keys
from services.gateway.sessions import Session, session_id_of, session_key
from shared.chat_request import ChatCompletionRequest
from shared.errors import InvalidRequest
from shared.messages import ChatRequest
from shared.sessions import (
    SessionSave,
    StreamedAnswer,
    Turn,
    answer_message,
    estimate_tokens,
    fit,
    split_preamble,
    with_history,
)


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
    session = Session("s", "k", history)
    messages = [msg("system", "be brief"), msg("developer", "rules"), msg("user", "now")]
    composed = session.compose(messages)
    assert composed == [msg("system", "be brief"), msg("developer", "rules"), msg("user", "earlier"),
                        msg("assistant", "reply"), msg("user", "now")]
    assert composed[session.own_from:] == [msg("user", "now")]


def test_a_turn_stores_the_request_s_own_messages_and_the_answer_not_the_preamble_nor_the_history() -> None:
    session = Session("s", "k", [Turn([msg("user", "old"), msg("assistant", "old answer")], 12)])
    composed = session.compose([msg("system", "sys"), msg("user", "q")])
    saving = SessionSave.from_wire(session.saving(max_tokens=100, ttl_s=60).to_wire())  # as the router gets it
    turn = saving.turn(composed, msg("assistant", "a"))
    assert turn.messages == [msg("user", "q"), msg("assistant", "a")]
    assert Turn.decode(turn.encode()) == turn
    assert saving.history_tokens == (12,) and saving.keep(turn) == 2


def test_a_request_published_with_its_stored_turns_is_composed_by_the_router_as_the_gateway_would() -> None:
    stored = [Turn([msg("user", "oldest"), msg("assistant", "long ago")], 90),
              Turn([msg("user", "old"), msg("assistant", "old answer")], 12)]
    own = [msg("system", "sys"), msg("user", "q")]
    by_gateway = Session("s", "k", fit(stored, 100), stored=3)  # it would have read the garbage too
    composed = by_gateway.compose(own)
    deferred = Session("s", "k", [])  # the gateway that let the key script read the turns and publish
    published = ChatRequest(request_id="r", reply_to="x", body={"model": "auto", "messages": deferred.compose(own)},
                            session=deferred.saving(max_tokens=100, ttl_s=60).to_wire(),
                            # as the script's msgpack array brings them (str), one entry not a turn at all
                            history=[raw.decode() for raw in (b"garbage", *(turn.encode() for turn in stored))])
    routed = with_history(published)
    assert routed.body == {"model": "auto", "messages": composed} and routed.history is None
    assert routed.session == by_gateway.saving(max_tokens=100, ttl_s=60).to_wire()
    assert with_history(routed) is routed  # a body already whole stays as it is


def test_a_composed_request_keeps_every_field_but_its_body_session_and_history() -> None:
    """ChatRequest.composed builds the request field by field: a field added to ChatRequest and not to it
    would be lost on every request of a session. Every field here differs from its default."""
    values = {"request_id": "r", "reply_to": "x", "body": {"messages": []}, "tier": "drafter", "deadline": 9.5,
              "tenant": "t", "cache_store": False, "deployment": "d", "auditable": False, "client_request_id": "c",
              "session": {"key": "k"}, "history": ["turn"]}
    assert set(values) == {f.name for f in dataclasses.fields(ChatRequest)}
    request = ChatRequest(**values)
    defaults = ChatRequest(request_id="", reply_to="", body={})
    assert all(getattr(request, name) != getattr(defaults, name) for name in values)
    composed = request.composed({"messages": [msg("user", "q")]}, {"key": "other"})
    assert composed == dataclasses.replace(request, body={"messages": [msg("user", "q")]}, session={"key": "other"},
                                           history=None)


def test_an_entry_that_is_no_turn_decodes_to_none() -> None:
    assert Turn.decode(Turn([msg("user", "q")], 3).encode()) == Turn([msg("user", "q")], 3)
    assert Turn.decode('{"messages": [], "tokens": "7"}') == Turn([], 7)  # as before: a number in a string
    for raw in ("garbage", "[]", '{"messages": []}', '{"tokens": 3}', '{"messages": "abc", "tokens": 3}',
                '{"messages": {"role": "user"}, "tokens": 3}', '{"messages": [], "tokens": "x"}',
                '{"messages": [], "tokens": null}', "\udcff"):
        assert Turn.decode(raw) is None, raw


def test_a_save_keeps_the_turns_the_next_request_can_use_and_at_least_its_own() -> None:
    saving = SessionSave("k", 0, (30, 30, 30), max_tokens=70, ttl_s=60)
    assert saving.keep(Turn([], 10)) == 3  # 10 + 30 + 30 fit in 70; a third 30 does not
    assert saving.keep(Turn([], 70)) == 1
    assert saving.keep(Turn([], 500)) == 1  # too long for any next request, still stored alone
    assert [len(fit([Turn([], 30)] * 3 + [Turn([], 10)], 70))] == [saving.keep(Turn([], 10))]  # as fit() reads


def test_a_save_trims_only_when_the_list_holds_a_turn_the_next_request_cannot_use() -> None:
    turn = Turn([msg("user", "q"), msg("assistant", "a")], 10)
    every_turn_kept = SessionSave("k", 0, (30, 20), max_tokens=70, ttl_s=60, stored=2)
    assert [command[0] for command in every_turn_kept.save_commands(turn)] == ["RPUSH", "EXPIRE"]
    assert every_turn_kept.save_commands(turn)[0] == ("RPUSH", "k", turn.encode())
    # The read held a turn that did not fit (or was no turn at all), or this turn pushes one out:
    for saving in (SessionSave("k", 0, (30, 20), max_tokens=70, ttl_s=60, stored=3),
                   SessionSave("k", 0, (30, 30), max_tokens=50, ttl_s=60, stored=2)):
        commands = saving.save_commands(turn)
        assert [command[0] for command in commands] == ["RPUSH", "LTRIM", "EXPIRE"]
        assert commands[1] == ("LTRIM", "k", -saving.keep(turn), -1)
    # Not known (a sender from before `stored`): always trimmed.
    unknown = SessionSave.from_wire({"key": "k", "own_from": 0, "history_tokens": [30, 20], "max_tokens": 70,
                                     "ttl_s": 60})
    assert unknown.stored == -1 and [command[0] for command in unknown.save_commands(turn)] == [
        "RPUSH", "LTRIM", "EXPIRE"]
    assert SessionSave.from_wire(every_turn_kept.to_wire()) == every_turn_kept


@pytest.mark.parametrize("bad", [{}, {"key": "k"}, {"key": "k", "own_from": "x", "history_tokens": [],
                                                    "max_tokens": 1, "ttl_s": 1}])
def test_a_session_save_that_is_none_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SessionSave.from_wire(bad)


def test_split_preamble_stops_at_the_first_other_message() -> None:
    assert split_preamble([msg("user", "a"), msg("system", "late")]) == ([], [msg("user", "a"), msg("system", "late")])


def test_streamed_chunks_are_marked_and_their_text_collected() -> None:
    session, answer = Session("s9", "k", []), StreamedAnswer()
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
              {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
              {"choices": [{"index": 1, "delta": {"content": "another choice"}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 1}}]
    for chunk in chunks:
        answer.add(chunk)
        session.mark(chunk)
    assert all(chunk["session_id"] == "s9" for chunk in chunks)
    assert answer.message() == msg("assistant", "Hello")


def test_a_streamed_tool_call_is_put_back_together() -> None:
    collected = StreamedAnswer()
    pieces = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
              {"index": 0, "function": {"arguments": '{"city": '}}, {"index": 0, "function": {"arguments": '"Paris"}'}},
              {"index": 1, "id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]
    for piece in pieces:
        collected.add({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    answer = collected.message()
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
        session = Session("s", "k", [earlier])
        keys.append(request_keys({"model": "auto", "messages": session.compose(question)}, "t"))
    assert len({alone.partition, *(k.partition for k in keys)}) == 3
    assert len({alone.exact, *(k.exact for k in keys)}) == 3
