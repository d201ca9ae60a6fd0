"""Sessions through a real gateway and router with the official openai client: three turns of one
conversation (plain and streamed), each turn's upstream request carrying the ones before it, and
two keys naming the same session id kept apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from services.gateway.auth import key_hash
from services.gateway.sessions import session_key
from tests.fakes.scripts import ToolCall, confident
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, start_stack

KEYS = ("key-alice", "key-bob")
ANSWERS = {"first": "Nice to meet you, Ada.", "second": "Paris is lovely.", "third": "You are Ada, in Paris."}


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(redis_server, tmp_path_factory.mktemp("sessions"), fake,
                          DRAFTGATE_GATEWAY_API_KEYS_ENV="SESSION_TEST_KEYS", SESSION_TEST_KEYS=",".join(KEYS))
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    for prompt, answer in ANSWERS.items():
        fake.script(prompt, confident(answer))


def client(stack: Stack, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def upstream_call(fake: FakeUpstream, text: str) -> Seen:
    """The (first) upstream call for the request whose last message is the user's `text`."""
    def for_it(seen: list[Seen]) -> list[Seen]:
        return [x for x in seen if x.body["messages"][-1] == user(text)]
    return for_it(fake.wait_for(lambda seen: bool(for_it(seen))))[0]


def ask(api: openai.OpenAI, text: str, session: str | None, stream: bool = False,
        system: str | None = None) -> tuple[str, httpx.Headers, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [user(text)]
    extra = {"session_id": session} if session else None
    if not stream:
        raw = api.chat.completions.with_raw_response.create(model="auto", messages=messages, extra_body=extra)
        completion = raw.parse()
        return completion.choices[0].message.content or "", raw.headers, completion.model_extra
    with api.chat.completions.with_streaming_response.create(model="auto", messages=messages, stream=True,
                                                            extra_body=extra) as response:
        chunks = list(response.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, response.headers, [c.model_extra for c in chunks]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_three_turns_each_carry_the_conversation_so_far(stack: Stack, fake: FakeUpstream, stream: bool) -> None:
    session = f"conv-{'s' if stream else 'p'}"
    api = client(stack)
    expected_history: list[dict[str, str]] = []
    for prompt, answer in ANSWERS.items():
        text, headers, extra = ask(api, f"{prompt} turn", session, stream, system="Be brief.")
        assert text == answer
        assert headers["X-Session-Id"] == session
        if stream:
            assert all(chunk["session_id"] == session for chunk in extra)
        else:
            assert extra["session_id"] == session
        seen = upstream_call(fake, f"{prompt} turn")
        # preamble first, then the turns before, then this turn's own message
        assert seen.body["messages"] == [{"role": "system", "content": "Be brief."}, *expected_history,
                                         user(f"{prompt} turn")]
        assert "session_id" not in seen.body
        expected_history += [user(f"{prompt} turn"), assistant(answer)]


def test_the_header_names_a_session_as_the_body_does(stack: Stack, fake: FakeUpstream) -> None:
    api = client(stack)
    for prompt in ("first", "second"):
        raw = api.chat.completions.with_raw_response.create(
            model="auto", messages=[user(prompt)], extra_headers={"X-Session-Id": "by-header"})
        assert raw.headers["X-Session-Id"] == "by-header"
        assert raw.parse().model_extra["session_id"] == "by-header"
    assert upstream_call(fake, "second").body["messages"] == [user("first"), assistant(ANSWERS["first"]),
                                                              user("second")]


def test_another_key_can_neither_read_nor_extend_a_session(stack: Stack, fake: FakeUpstream) -> None:
    alice, bob = client(stack, KEYS[0]), client(stack, KEYS[1])
    ask(alice, "first secret", "shared-name", system=None)
    ask(bob, "second", "shared-name")
    # Bob's request went upstream without Alice's turn: for him the session was new
    assert upstream_call(fake, "second").body["messages"] == [user("second")]
    ask(alice, "third", "shared-name")
    # and Alice's conversation does not hold Bob's turn
    assert upstream_call(fake, "third").body["messages"] == [user("first secret"), assistant(ANSWERS["first"]),
                                                             user("third")]


def test_a_request_without_a_session_goes_upstream_as_sent(stack: Stack, fake: FakeUpstream) -> None:
    api = client(stack)
    raw = api.chat.completions.with_raw_response.create(model="auto", messages=[user("first")],
                                                        metadata={"team": "x"})
    assert "X-Session-Id" not in raw.headers
    assert "session_id" not in (raw.parse().model_extra or {})
    seen = upstream_call(fake, "first")
    assert seen.body["messages"] == [user("first")]
    assert seen.body.get("metadata") == {"team": "x"}


def test_different_sessions_in_body_and_header_are_a_400(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="auto", messages=[user("first")], extra_body={"session_id": "a"},
                                              extra_headers={"X-Session-Id": "b"})
    assert caught.value.body["param"] == "session_id"


@pytest.mark.parametrize("value", ["", "has space", 7])
def test_a_bad_session_id_is_a_400_naming_it(stack: Stack, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="auto", messages=[user("first")],
                                              extra_body={"session_id": value})
    assert caught.value.body["param"] == "session_id"


@pytest.fixture(scope="module")
def small_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Room for two turns of history (about 17 estimated tokens each), kept for two minutes."""
    started = start_stack(redis_server, tmp_path_factory.mktemp("sessions-small"), fake,
                          DRAFTGATE_GATEWAY_API_KEYS_ENV="SESSION_TEST_KEYS", SESSION_TEST_KEYS=",".join(KEYS),
                          DRAFTGATE_GATEWAY_SESSION_MAX_TOKENS="40", DRAFTGATE_GATEWAY_SESSION_TTL_S="120")
    yield started
    started.stop()


def test_the_oldest_turns_go_first_when_the_history_outgrows_its_cap(small_stack: Stack, fake: FakeUpstream) -> None:
    api = client(small_stack)
    for prompt in ANSWERS:
        ask(api, f"{prompt} turn", "capped")
    ask(api, "first again", "capped")
    assert upstream_call(fake, "first again").body["messages"] == [
        user("second turn"), assistant(ANSWERS["second"]), user("third turn"), assistant(ANSWERS["third"]),
        user("first again")]
    stored = redis.Redis.from_url(small_stack.redis_url)
    key = session_key(key_hash(KEYS[0]), key_hash(KEYS[0]), "capped")
    assert stored.llen(key) == 2  # what no request could use any more is trimmed from Redis
    assert 0 < stored.ttl(key) <= 120


def test_a_turn_that_failed_is_not_kept(stack: Stack, fake: FakeUpstream) -> None:
    fake.script("broken", confident("never shown", status=500))
    api = client(stack)
    ask(api, "first turn", "with-a-failure")
    with pytest.raises(openai.APIStatusError) as caught:
        ask(api, "broken turn", "with-a-failure")
    assert caught.value.status_code >= 500
    ask(api, "second turn", "with-a-failure")
    assert upstream_call(fake, "second turn").body["messages"] == [user("first turn"), assistant(ANSWERS["first"]),
                                                                   user("second turn")]


def test_a_streamed_tool_call_is_kept_so_its_result_can_follow(stack: Stack, fake: FakeUpstream) -> None:
    weather = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_w1")
    fake.script("weather", confident("", tool_calls=(weather,)))
    api = client(stack)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with api.chat.completions.with_streaming_response.create(
            model="heavyweight", messages=[user("weather in Paris?")], tools=tools, stream=True,
            extra_body={"session_id": "tools"}) as response:
        list(response.parse())
    result = {"role": "tool", "tool_call_id": "call_w1", "content": "18 C"}
    api.chat.completions.create(model="heavyweight", messages=[result], tools=tools,  # type: ignore[list-item]
                                extra_body={"session_id": "tools"})
    seen = fake.wait_for(lambda s: any(x.body["messages"][-1] == result for x in s))
    (call,) = [x for x in seen if x.body["messages"][-1] == result]
    assert call.body["messages"] == [
        user("weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": weather.json}}]},
        result]
