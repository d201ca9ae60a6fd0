"""The gemini provider against literal Gemini API traffic: OpenAI bodies in, streamGenerateContent's SSE
(GenerateContentResponse per event, logprobsResult, function calls, usageMetadata) out as OpenAI chunks
whose log-probs the router judges, and Google's error shapes."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.assemble import assemble_completion
from services.router.drafting import judge
from services.router.entropy import Decision, EntropyWindow
from services.router.upstream import stream_params
from services.router.upstreams.base import Target
from services.router.upstreams.errors import UpstreamProtocolError, UpstreamStatusError, UpstreamStreamError
from services.router.upstreams.gemini import PROVIDER, GeminiDecoder, generate_body
from services.router.upstreams.transport import read_chunks
from shared import fastjson

TARGET = Target(name="drafter", provider="gemini", base_url="https://generativelanguage.googleapis.com",
                model="gemini-2.0-flash", api_key="AIza-1", tier="drafter")
WHERE = ("drafter", "drafter", "gemini-2.0-flash")


def sure(token: str) -> dict[str, Any]:
    return {"token": token, "logProbability": -0.01}


def step(*alternatives: tuple[str, float]) -> dict[str, Any]:
    return {"candidates": [{"token": t, "logProbability": lp} for t, lp in alternatives]}


# Two events as the API sends them with responseLogprobs and logprobs=3: a running usageMetadata in
# each, the finishReason and final counts with the last part. Tokens whose logProbability is 0 (certain)
# have it left out, as proto3 JSON leaves out zeros.
LOGPROB_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "The sky"}],"role": "model"},"index": 0,'
    b'"logprobsResult": {"topCandidates": [{"candidates": [{"token": "The", "logProbability": -0.01}, '
    b'{"token": "A", "logProbability": -4.7}, {"token": "Blue", "logProbability": -6.2}]}, {"candidates": '
    b'[{"token": " sky"}]}], "chosenCandidates": [{"token": "The", "logProbability": -0.01}, {"token": " sky"}]}}],'
    b'"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash",'
    b'"responseId": "resp-1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " is blue."}],"role": "model"},"finishReason": "STOP",'
    b'"index": 0,"logprobsResult": {"topCandidates": [{"candidates": [{"token": " is", "logProbability": -0.2}]}, '
    b'{"candidates": [{"token": " blue.", "logProbability": -0.7}, {"token": " clear.", "logProbability": -0.9}]}],'
    b'"chosenCandidates": [{"token": " is", "logProbability": -0.2}, {"token": " blue.", "logProbability": -0.7}]}}],'
    b'"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 4,"totalTokenCount": 12},'
    b'"modelVersion": "gemini-2.0-flash","responseId": "resp-1"}\r\n\r\n')

CALL_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Checking.", "thought": true}, {"text": "Let me look."}],'
    b'"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "r2"}\n\n'
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": '
    b'{"city": "Paris"}}}, {"functionCall": {"name": "now", "id": "fc-9"}}], "role": "model"},'
    b'"finishReason": "STOP","index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 20,"candidatesTokenCount": 9,"thoughtsTokenCount": 30,'
    b'"totalTokenCount": 59},"modelVersion": "gemini-2.5-flash","responseId": "r2"}\n\n')


async def read(body: bytes, size: int = 13) -> list[dict[str, Any]]:
    async def blocks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start:start + size]
    return [chunk async for chunk in read_chunks(blocks(), GeminiDecoder(), WHERE)]


async def test_text_and_logprobs_become_openai_chunks_with_one_entry_per_decoding_step() -> None:
    chunks = await read(LOGPROB_STREAM)
    assert [c["choices"][0]["delta"] if c["choices"] else "usage" for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "The sky"}, {"content": " is blue."}, {}, "usage"]
    first = chunks[1]["choices"][0]["logprobs"]["content"]
    assert first == [
        {"token": "The", "logprob": -0.01, "bytes": list(b"The"), "top_logprobs": [
            {"token": "The", "logprob": -0.01, "bytes": list(b"The")},
            {"token": "A", "logprob": -4.7, "bytes": list(b"A")},
            {"token": "Blue", "logprob": -6.2, "bytes": list(b"Blue")}]},
        {"token": " sky", "logprob": 0.0, "bytes": list(b" sky"),
         "top_logprobs": [{"token": " sky", "logprob": 0.0, "bytes": list(b" sky")}]}]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[4]["usage"] == {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12}
    assert {(c["id"], c["model"], c["object"]) for c in chunks} == {("resp-1", "gemini-2.0-flash",
                                                                     "chat.completion.chunk")}
    completion = assemble_completion(chunks, 3)
    assert completion["choices"][0]["message"]["content"] == "The sky is blue."
    assert [e["token"] for e in completion["choices"][0]["logprobs"]["content"]] == ["The", " sky", " is", " blue."]


async def test_the_router_judges_a_gemini_draft_by_its_logprobs() -> None:
    """Confident steps continue; a step split evenly over its top candidates is uncertain enough to escalate."""
    calm = await read(LOGPROB_STREAM)
    window = EntropyWindow(threshold=2.0, size=10, early_exit_tokens=10, speculation_threshold=1.4)
    assert [judge(c, window, 5) for c in calm[1:3]] == [Decision.CONTINUE, Decision.CONTINUE]
    assert window.tokens == 4
    even = math.log(1 / 5)
    unsure = (b'data: {"candidates": [{"content": {"parts": [{"text": " maybe"}]}, "index": 0, "logprobsResult": '
              b'{"topCandidates": [' + fastjson.dumps(step(*[(f"t{i}", even) for i in range(5)])) +
              b'], "chosenCandidates": [{"token": " maybe", "logProbability": ' + str(even).encode() + b"}]}}]}\n\n")
    chunks = await read(unsure + LOGPROB_STREAM[LOGPROB_STREAM.index(b"data:", 10):])
    assert judge(chunks[1], EntropyWindow(2.0, 10, 10, 1.4), 5) is Decision.ESCALATE


async def test_function_calls_become_tool_calls_and_thoughts_stay_out() -> None:
    chunks = await read(CALL_STREAM)
    completion = assemble_completion(chunks, None)
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "Let me look."
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "call_r2_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "fc-9", "type": "function", "function": {"name": "now", "arguments": "{}"}}]
    assert completion["usage"] == {"prompt_tokens": 20, "completion_tokens": 39, "total_tokens": 59,
                                   "completion_tokens_details": {"reasoning_tokens": 30}}


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                                ("RECITATION", "content_filter"), ("OTHER", "stop")])
async def test_finish_reasons_map_to_openais(reason: str, finish: str) -> None:
    body = (b'data: {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "' + reason.encode()
            + b'", "index": 0}]}\n\n')
    chunks = await read(body)
    assert chunks[-2]["choices"][0]["finish_reason"] == finish and chunks[-1]["choices"] == []


async def test_a_blocked_prompt_is_a_content_filter_finish() -> None:
    chunks = await read(b'data: {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": '
                        b'{"promptTokenCount": 4, "totalTokenCount": 4}}\n\n')
    assert chunks[1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[2]["usage"]["prompt_tokens"] == 4


async def test_an_error_in_the_stream_and_a_stream_that_stops_without_a_finish() -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        await read(LOGPROB_STREAM[:LOGPROB_STREAM.index(b"data:", 10)]
                   + b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}'
                   b"\n\n")
    assert caught.value.message == "The model is overloaded."
    assert caught.value.body == {"message": "The model is overloaded.", "type": "UNAVAILABLE", "param": None,
                                 "code": "UNAVAILABLE"}
    with pytest.raises(UpstreamProtocolError, match="cut short"):
        await read(LOGPROB_STREAM[:LOGPROB_STREAM.index(b"data:", 10)])
    with pytest.raises(UpstreamProtocolError, match="does not send"):
        await read(b'data: {"candidates": [{"content": {"parts": "x"}}]}\n\n')


def test_an_openai_conversation_becomes_contents_and_a_system_instruction() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                     {"type": "image_url", "image_url": {"url": "https://x.example/cat.png"}}]},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"SF"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "call_0", "name": "other", "content": "plain text"},
        {"role": "assistant", "content": "It is 18C."},
    ]
    body = generate_body({"model": "gemini-2.0-flash", "messages": messages, "max_tokens": 64, "temperature": 0.2,
                          "top_p": 0.9, "stop": ["END"], "seed": 1, "logprobs": True, "top_logprobs": 20,
                          "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {
                              "type": "object"}}}, "stream": True, "stream_options": {"include_usage": True}})
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                                       {"fileData": {"mimeType": "image/png", "fileUri": "https://x.example/cat.png"}}]},
            {"role": "model", "parts": [{"text": "Looking."},
                                        {"functionCall": {"name": "get_weather", "args": {"city": "SF"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                                       {"functionResponse": {"name": "other", "response": {"result": "plain text"}}}]},
            {"role": "model", "parts": [{"text": "It is 18C."}]}],
        "generationConfig": {"temperature": 0.2, "topP": 0.9, "seed": 1, "maxOutputTokens": 64,
                             "stopSequences": ["END"], "responseMimeType": "application/json",
                             "responseJsonSchema": {"type": "object"}, "responseLogprobs": True, "logprobs": 20}}


def test_tools_become_function_declarations_and_tool_choice_a_calling_config() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}}},
             {"type": "function", "function": {"name": "now"}}]
    base = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    body = generate_body(base)
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather now", "parametersJsonSchema": tools[0]["function"][
            "parameters"]},
        {"name": "now", "description": ""}]}]
    assert "toolConfig" not in body and "generationConfig" not in body
    for ours, mode in (("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")):
        assert generate_body({**base, "tool_choice": ours})["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    named = generate_body({**base, "tool_choice": {"type": "function", "function": {"name": "now"}}})
    assert named["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}}


def test_the_request_streams_the_model_with_sse_and_the_key_header() -> None:
    params = stream_params({"messages": [{"role": "user", "content": "hi"}]}, "gemini-2.0-flash", 5)
    url = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    for base in ("https://generativelanguage.googleapis.com", "https://generativelanguage.googleapis.com/v1beta/"):
        request = PROVIDER.request(Target(name="d", provider="gemini", base_url=base, model="gemini-2.0-flash",
                                          api_key="AIza-1"), params)
        assert request.url == url
    assert request.headers == {"Content-Type": "application/json", "x-goog-api-key": "AIza-1"}
    assert fastjson.loads(request.body)["generationConfig"] == {"responseLogprobs": True, "logprobs": 5}
    assert PROVIDER.logprobs


@pytest.mark.parametrize("wrapped", [False, True])
def test_error_bodies_become_status_errors_with_googles_retry_delay(wrapped: bool) -> None:
    error = {"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}
    failed = PROVIDER.error(429, fastjson.dumps([error] if wrapped else error), {})
    assert isinstance(failed, UpstreamStatusError)
    assert (failed.status, failed.message, failed.retryable, failed.retry_after_s) == (429, "Quota exceeded.", True,
                                                                                       37.0)
    assert failed.body == {"message": "Quota exceeded.", "type": "RESOURCE_EXHAUSTED", "param": None,
                           "code": "RESOURCE_EXHAUSTED"}
    assert PROVIDER.error(400, b'{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}',
                          {"retry-after": "2"}).retry_after_s == 2.0
