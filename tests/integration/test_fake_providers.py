"""The fake upstream speaks Anthropic's and Gemini's native wires well enough for their official SDKs,
over real HTTP: plain and streamed answers, tool calls, usage, log-probs, errors and garbage, pacing
and disconnects recorded as Seen; and the OpenAI route's new knobs (tool calls, Retry-After, an error
inside a stream) through the openai client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from tests.fakes.anthropic_wire import api_key
from tests.fakes.scripts import Script, ToolCall, entropy_bits, uncertain
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.conftest import DEFAULT_ANSWER

KEY = "test-key"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"})
ANTHROPIC_TOOL = {"name": "get_weather", "description": "The weather in a city.",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                                    "unit": {"type": "string"}}}}
GEMINI_TOOL = gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(
    name="get_weather", description="The weather in a city.",
    parameters=gtypes.Schema(type=gtypes.Type.OBJECT, properties={"city": gtypes.Schema(type=gtypes.Type.STRING)}))])


@pytest.fixture
def claude(fake: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.origin, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def gemini(fake: FakeUpstream) -> genai.Client:
    options = gtypes.HttpOptions(base_url=fake.origin, retry_options=gtypes.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=KEY, http_options=options)


def _only(fake: FakeUpstream, api: str) -> Seen:
    [seen] = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None)
    assert seen.api == api
    return seen


# --- Anthropic through the official SDK ---------------------------------------------------------------

def test_anthropic_sdk_reads_a_whole_message(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="fake-heavy", max_tokens=64, system="Be brief.", messages=ASK)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == DEFAULT_ANSWER  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_fake_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2 + 6, 6)
    seen = _only(fake, "anthropic")
    assert seen.model == "fake-heavy" and not seen.stream and seen.completed and seen.tokens_sent == 6
    assert api_key(seen.headers) == KEY and seen.headers["anthropic-version"]
    assert seen.body["system"] == "Be brief." and seen.body["max_tokens"] == 64


def test_anthropic_sdk_streams_text_deltas(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    fake.script("capital", uncertain("Lyon, perhaps, or Paris.", bits=2.0, tokens_per_s=200))
    with claude.messages.stream(model="fake-heavy", max_tokens=64, messages=ASK) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert deltas == ["Lyon,", " perhaps,", " or", " Paris."]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    seen = _only(fake, "anthropic")
    assert seen.stream and seen.completed and seen.tokens_sent == 4 and not seen.closed_early


def test_anthropic_sdk_tool_use_round_trip(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    fake.script("capital", Script(tokens=["Let", " me", " check."], tool_calls=(WEATHER,)))
    with claude.messages.stream(model="fake-heavy", max_tokens=64, messages=ASK, tools=[ANTHROPIC_TOOL]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    text, use = final.content
    assert text.type == "text" and text.text == "Let me check."
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == WEATHER.arguments
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 C"}]}
    fake.script_model("fake-heavy", Script(tokens=["It", " is", " 21", " C."]))  # the last turn has no text
    reply = claude.messages.create(model="fake-heavy", max_tokens=64, tools=[ANTHROPIC_TOOL],
                                   messages=[*ASK, {"role": "assistant", "content": final.content}, answer])
    assert reply.content[0].text == "It is 21 C."  # type: ignore[union-attr]
    assert fake.seen[-1].body["messages"][1]["content"][1]["id"] == use.id


def test_anthropic_sdk_sees_error_types_and_retry_after(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    fake.script("capital", Script(tokens=["x"], status=529))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model="fake-heavy", max_tokens=64, messages=ASK)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore
    assert overloaded.value.request_id and overloaded.value.request_id.startswith("req_fake_")
    fake.script("capital", Script(tokens=["x"], status=429, retry_after_s=3))
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="fake-heavy", max_tokens=64, messages=ASK)
    assert limited.value.response.headers["retry-after"] == "3"
    assert [s.status for s in fake.seen] == [529, 429]


def test_anthropic_sdk_raises_on_an_error_event_mid_stream(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    fake.script("capital", Script(tokens=["Paris", " is", " the", " capital."], stream_error=529, garbage_after=2))
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as failed, \
            claude.messages.stream(model="fake-heavy", max_tokens=64, messages=ASK) as stream:
        got.extend(stream.text_stream)
    assert got == ["Paris", " is"]
    assert "overloaded_error" in str(failed.value)


def test_anthropic_refuses_what_the_real_api_refuses(fake: FakeUpstream, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="fake-heavy", max_tokens=64, messages=ASK, extra_body={"logprobs": True})
    assert refused.value.body["error"]["message"] == "logprobs: Extra inputs are not permitted"  # type: ignore
    seen = _only(fake, "anthropic")
    assert seen.status == 400 and seen.body["logprobs"] is True
    unkeyed = httpx.post(f"{fake.origin}/v1/messages", json={"model": "m", "max_tokens": 1, "messages": ASK},
                         headers={"anthropic-version": "2023-06-01"})
    assert unkeyed.status_code == 401 and unkeyed.json()["error"]["type"] == "authentication_error"


def _anthropic_raw(fake: FakeUpstream, **body: Any) -> httpx.Response:
    request = {"model": "fake-heavy", "max_tokens": 64, "messages": ASK, "stream": True, **body}
    return httpx.post(f"{fake.origin}/v1/messages", json=request,
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})


def _event_names(text: str) -> list[str]:
    return [line[7:] for line in text.split("\n") if line.startswith("event: ")]


def test_anthropic_garbage_modes(fake: FakeUpstream) -> None:
    fake.script("capital", Script(tokens=["a", " b", " c"], garbage="truncated", garbage_after=2))
    truncated = _anthropic_raw(fake)
    assert truncated.status_code == 200 and truncated.headers["content-type"].startswith("text/event-stream")
    assert _event_names(truncated.text)[-2:] == ["content_block_delta", "content_block_delta"]
    fake.script("capital", Script(tokens=["a", " b", " c"], garbage="delta_not_object", garbage_after=1))
    bad = _anthropic_raw(fake)
    assert '"delta":"x"' in bad.text and _event_names(bad.text)[-1] == "message_stop"
    fake.script("capital", Script(tokens=["a"], garbage="html_502"))
    page = _anthropic_raw(fake)
    assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
    fake.script("capital", Script(tokens=["a"], garbage="not_sse"))
    whole = _anthropic_raw(fake)
    assert whole.headers["content-type"].startswith("application/json") and whole.json()["type"] == "message"
    fake.script("capital", Script(tokens=["a"], garbage="logprob_not_number"))
    unsupported = _anthropic_raw(fake)
    assert unsupported.status_code == 500 and "no anthropic form" in unsupported.json()["error"]["message"]
    fake.script("capital", Script(tokens=["a", " b"], garbage="cut_mid_json", garbage_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        _anthropic_raw(fake)


def test_anthropic_stream_is_paced_and_a_leaving_client_is_recorded(fake: FakeUpstream) -> None:
    tokens = [f" t{i}" for i in range(40)]
    fake.script("capital", Script(tokens=tokens, ttft_s=0.2, tokens_per_s=50))
    request = {"model": "fake-heavy", "max_tokens": 64, "messages": ASK, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", f"{fake.origin}/v1/messages", json=request,
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}) as response:
        first = next(response.iter_bytes())
        assert time.monotonic() - started >= 0.2
        assert b"message_start" in first
    [seen] = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None)
    assert seen.closed_early and not seen.completed and seen.tokens_sent < len(tokens)


# --- Gemini through the official SDK ------------------------------------------------------------------

def test_gemini_sdk_reads_a_whole_answer_with_logprobs(fake: FakeUpstream, gemini: genai.Client) -> None:
    fake.script_model("fake-drafter", uncertain("Lyon, perhaps.", bits=1.5))
    config = gtypes.GenerateContentConfig(system_instruction="Be brief.", response_logprobs=True, logprobs=4,
                                          max_output_tokens=50, temperature=0.2)
    reply = gemini.models.generate_content(model="fake-drafter", contents="What is the capital of France?",
                                           config=config)
    assert reply.text == "Lyon, perhaps."
    candidate = reply.candidates[0]  # type: ignore[index]
    assert candidate.finish_reason == gtypes.FinishReason.STOP
    assert candidate.logprobs_result is not None and candidate.logprobs_result.top_candidates is not None
    for step in candidate.logprobs_result.top_candidates:
        logprobs = [c.log_probability for c in step.candidates or []]
        assert len(logprobs) == 4 and entropy_bits(logprobs) == pytest.approx(1.5, abs=1e-6)  # type: ignore[arg-type]
    usage = reply.usage_metadata
    assert usage is not None and (usage.prompt_token_count, usage.candidates_token_count) == (2 + 6, 2)
    seen = _only(fake, "gemini")
    assert seen.model == "fake-drafter" and not seen.stream and seen.headers["x-goog-api-key"] == KEY
    assert seen.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert seen.body["generationConfig"]["logprobs"] == 4


def test_gemini_sdk_streams_chunks_with_finish_on_the_last(fake: FakeUpstream, gemini: genai.Client) -> None:
    fake.script_model("fake-drafter", uncertain("Paris is the capital.", bits=0.5, tokens_per_s=200))
    chunks = list(gemini.models.generate_content_stream(
        model="fake-drafter", contents="What is the capital of France?",
        config=gtypes.GenerateContentConfig(response_logprobs=True, logprobs=2)))
    assert [c.text for c in chunks] == ["Paris", " is", " the", " capital."]
    finishes = [c.candidates[0].finish_reason for c in chunks]  # type: ignore[index]
    assert finishes == [None, None, None, gtypes.FinishReason.STOP]
    assert [c.usage_metadata.candidates_token_count for c in chunks] == [1, 2, 3, 4]  # type: ignore[union-attr]
    chosen = chunks[0].candidates[0].logprobs_result.chosen_candidates  # type: ignore[index, union-attr]
    assert chosen is not None and chosen[0].token == "Paris"
    seen = _only(fake, "gemini")
    assert seen.stream and seen.completed and seen.tokens_sent == 4


def test_gemini_sdk_function_call_round_trip(fake: FakeUpstream, gemini: genai.Client) -> None:
    fake.script_model("fake-heavy", Script(tokens=[], tool_calls=(WEATHER,)))
    config = gtypes.GenerateContentConfig(tools=[GEMINI_TOOL], automatic_function_calling=gtypes.
                                          AutomaticFunctionCallingConfig(disable=True))
    reply = gemini.models.generate_content(model="fake-heavy", contents="What is the weather in Paris?", config=config)
    assert reply.function_calls is not None
    [call] = reply.function_calls
    assert call.name == "get_weather" and call.args == WEATHER.arguments
    fake.script_model("fake-heavy", Script(tokens=["It", " is", " 21", " C."]))
    contents = [gtypes.Content(role="user", parts=[gtypes.Part(text="What is the weather in Paris?")]),
                reply.candidates[0].content,  # type: ignore[index]
                gtypes.Content(role="user", parts=[gtypes.Part.from_function_response(
                    name="get_weather", response={"temperature": 21})])]
    follow_up = gemini.models.generate_content(model="fake-heavy", contents=contents, config=config)  # type: ignore
    assert follow_up.text == "It is 21 C."
    declared = fake.seen[0].body["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather"


def test_gemini_sdk_sees_error_statuses(fake: FakeUpstream, gemini: genai.Client) -> None:
    fake.script_model("fake-drafter", Script(tokens=["x"], status=429, retry_after_s=7))
    with pytest.raises(genai_errors.ClientError) as limited:
        gemini.models.generate_content(model="fake-drafter", contents="hi")
    assert (limited.value.code, limited.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "7s"
    fake.script_model("fake-drafter", Script(tokens=["x"], status=503))
    with pytest.raises(genai_errors.ServerError) as unavailable:
        gemini.models.generate_content(model="fake-drafter", contents="hi")
    assert (unavailable.value.code, unavailable.value.status) == (503, "UNAVAILABLE")


def test_gemini_sdk_raises_on_an_error_chunk_mid_stream(fake: FakeUpstream, gemini: genai.Client) -> None:
    fake.script_model("fake-drafter", Script(tokens=["a", " b", " c"], stream_error=503, garbage_after=1))
    texts: list[str | None] = []
    with pytest.raises(genai_errors.APIError) as failed:
        for chunk in gemini.models.generate_content_stream(model="fake-drafter", contents="hi"):
            texts.append(chunk.text)
    assert texts == ["a"] and failed.value.code == 503


def _gemini_raw(fake: FakeUpstream, body: dict[str, Any], method: str = "streamGenerateContent",
                query: str = "?alt=sse", version: str = "v1beta") -> httpx.Response:
    return httpx.post(f"{fake.origin}/{version}/models/fake-drafter:{method}{query}", json=body,
                      headers={"x-goog-api-key": KEY})


CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}]}


def test_gemini_refuses_an_openai_shaped_turn(fake: FakeUpstream) -> None:
    assistant = {"contents": [*CONTENTS["contents"], {"role": "assistant", "parts": [{"text": "Paris."}]}]}
    refused = _gemini_raw(fake, assistant)
    assert refused.status_code == 400
    assert refused.json()["error"] == {"code": 400, "message": "Please use a valid role: user, model.",
                                       "status": "INVALID_ARGUMENT"}
    unkeyed = httpx.post(f"{fake.origin}/v1beta/models/fake-drafter:generateContent", json=CONTENTS)
    assert unkeyed.status_code == 403 and unkeyed.json()["error"]["status"] == "PERMISSION_DENIED"
    assert [s.status for s in fake.seen] == [400, 403] and fake.seen[0].api == "gemini"


def test_gemini_stream_without_sse_is_a_json_array(fake: FakeUpstream) -> None:
    array = httpx.post(f"{fake.origin}/v1beta/models/fake-drafter:streamGenerateContent?key={KEY}", json=CONTENTS)
    assert array.status_code == 200 and array.headers["content-type"].startswith("application/json")
    chunks = array.json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == DEFAULT_ANSWER
    sse = _gemini_raw(fake, CONTENTS, version="v1")
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.count("\r\n\r\n") == len(chunks) and sse.text.startswith("data: {")


def test_gemini_garbage_modes(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=["a", " b", " c"], garbage="truncated", garbage_after=2))
    truncated = _gemini_raw(fake, CONTENTS)
    assert truncated.status_code == 200 and "finishReason" not in truncated.text
    assert truncated.text.count("data: ") == 2
    fake.script_model("fake-drafter", Script(tokens=["a", " b"], garbage="logprobs_not_object", garbage_after=1))
    bad = _gemini_raw(fake, CONTENTS)
    values = [json.loads(line[6:]) for line in bad.text.split("\r\n\r\n") if line]
    assert values[1]["candidates"][0]["logprobsResult"] == 5 and values[-1]["candidates"][0]["finishReason"] == "STOP"
    fake.script_model("fake-drafter", Script(tokens=["a"], garbage="number"))
    assert _gemini_raw(fake, CONTENTS, method="generateContent", query="").text == "42"
    fake.script_model("fake-drafter", Script(tokens=["a", " b"], garbage="cut_mid_json", garbage_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        _gemini_raw(fake, CONTENTS)


def test_gemini_client_leaving_before_the_first_token_is_recorded(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=["a", " b"], ttft_s=2))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake.origin}/v1beta/models/fake-drafter:streamGenerateContent?alt=sse", json=CONTENTS,
                   headers={"x-goog-api-key": KEY}, timeout=httpx.Timeout(5, read=0.2))
    [seen] = fake.wait_for(lambda s: len(s) == 1 and s[0].ended is not None)
    assert seen.closed_early and seen.tokens_sent == 0


# --- the OpenAI route's new knobs ---------------------------------------------------------------------

@pytest.fixture
def gpt(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key=KEY, max_retries=0) as client:
        yield client


def test_openai_tool_calls_stream_and_whole(fake: FakeUpstream, gpt: openai.OpenAI) -> None:
    fake.script("capital", Script(tokens=["Checking."], tool_calls=(WEATHER,)))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    arguments, finish = "", None
    for chunk in gpt.chat.completions.create(model="fake-heavy", messages=ASK, tools=tools,  # type: ignore
                                             stream=True):
        for delta in chunk.choices[0].delta.tool_calls or []:
            arguments += delta.function.arguments or ""  # type: ignore[union-attr]
        finish = chunk.choices[0].finish_reason or finish
    assert json.loads(arguments) == WEATHER.arguments and finish == "tool_calls"
    whole = gpt.chat.completions.create(model="fake-heavy", messages=ASK, tools=tools)  # type: ignore[arg-type]
    [call] = whole.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert whole.choices[0].message.content == "Checking."


def test_openai_retry_after_and_error_inside_a_stream(fake: FakeUpstream, gpt: openai.OpenAI) -> None:
    fake.script("capital", Script(tokens=["x"], status=429, retry_after_s=2.5))
    with pytest.raises(openai.RateLimitError) as limited:
        gpt.chat.completions.create(model="fake-heavy", messages=ASK)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "2.5"
    fake.script("capital", Script(tokens=["a", " b", " c"], stream_error=500, garbage_after=2))
    got = []
    with pytest.raises(openai.APIError, match="scripted stream error 500"):
        for chunk in gpt.chat.completions.create(model="fake-heavy", messages=ASK, stream=True):  # type: ignore
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "a b"
