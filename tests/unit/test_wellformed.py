"""Upstream chunks are checked once, where they are read: garbage is one error naming the upstream."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.drafting import judge
from services.router.entropy import Decision, EntropyWindow
from services.router.failures import UPSTREAM_ERRORS, upstream_error_reply
from services.router.upstream import Tier, UpstreamProtocolError, UpstreamStreamError, _chunks
from services.router.upstreams.errors import UpstreamConnectError, UpstreamTimeout
from services.router.wellformed import MalformedChunk, check_chunk, parse_chunk
from shared import fastjson
from tests.unit.test_assemble import STREAM, chunk, entry

TIER = Tier("heavyweight", "big-model-v2", None)  # type: ignore[arg-type]


def with_choice(**fields: Any) -> dict[str, Any]:
    good = copy.deepcopy(STREAM[1])
    good["choices"][0].update(fields)
    return good


def with_entry(**fields: Any) -> dict[str, Any]:
    good = copy.deepcopy(STREAM[1])
    good["choices"][0]["logprobs"]["content"][0].update(fields)
    return good


def alternatives(*items: Any) -> dict[str, Any]:
    return with_entry(top_logprobs=list(items))


GARBAGE: dict[str, Any] = {
    "number": 42,
    "array": [1],
    "string": "x",
    "null": None,
    "choices not a list": {**STREAM[1], "choices": {"0": STREAM[1]["choices"][0]}},
    "choice not an object": {**STREAM[1], "choices": ["hi"]},
    "index not an integer": with_choice(index="0"),
    "index a boolean": with_choice(index=True),
    "delta not an object": with_choice(delta="Hello"),
    "content not a string": with_choice(delta={"content": 5}),
    "role not a string": with_choice(delta={"role": ["assistant"]}),
    "finish_reason not a string": with_choice(finish_reason=1),
    "logprobs not an object": with_choice(logprobs=5),
    "logprobs.content not a list": with_choice(logprobs={"content": {"token": "x"}}),
    "logprobs.refusal not a list": with_choice(logprobs={"content": None, "refusal": "no"}),
    "entry not an object": with_choice(logprobs={"content": ["Hello"]}),
    "entry without token": with_choice(logprobs={"content": [{"logprob": -0.1, "top_logprobs": []}]}),
    "entry without logprob": with_choice(logprobs={"content": [{"token": "x", "top_logprobs": []}]}),
    "entry logprob a string": with_entry(logprob="-0.1"),
    "entry logprob a boolean": with_entry(logprob=False),
    "top_logprobs not a list": with_entry(top_logprobs={"token": "x", "logprob": -1}),
    "top_logprobs items not objects": alternatives(-0.1, -2.0),
    "top_logprob not a number": alternatives({"token": "a", "logprob": "high"}),
    "top_logprob missing": alternatives({"token": "a"}),
    "top_logprob token missing": alternatives({"logprob": -0.2}),
    "tool_calls not a list": with_choice(delta={"tool_calls": {"index": 0}}),
    "tool call index not an integer": with_choice(delta={"tool_calls": [{"index": "0"}]}),
    "tool call function not an object": with_choice(delta={"tool_calls": [{"index": 0, "function": "f"}]}),
    "tool call arguments not a string": with_choice(delta={"tool_calls": [{"index": 0,
                                                                           "function": {"arguments": {}}}]}),
    "usage not an object": {**STREAM[-1], "usage": "lots"},
    "model not a string": {**STREAM[1], "model": ["m"]},
}


@pytest.mark.parametrize("value", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_one_malformed_chunk_error(value: Any) -> None:
    with pytest.raises(MalformedChunk):
        check_chunk(copy.deepcopy(value))


@pytest.mark.parametrize("good", [*STREAM, chunk({"content": "x"}, logprobs=[entry("x", alternatives=0)]),
                                  with_entry(top_logprobs=None), with_entry(logprob=-9999.0),
                                  with_entry(logprob=float("-inf")), with_entry(logprob=float("nan")),
                                  with_entry(logprob=None),  # -inf as C++ JSON libraries write it
                                  alternatives({"token": "a", "logprob": -0.1}, {"token": "b", "logprob": None}),
                                  with_choice(delta=None, logprobs=None), {"id": "x", "choices": []},
                                  {"choices": [{"index": 0, "delta": {"tool_calls": [
                                      {"index": 0, "id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]}}]},
                                  {**STREAM[1], "vendor_field": {"anything": [1, "x"]}}])
def test_well_formed_chunks_pass_unchanged(good: dict[str, Any]) -> None:
    before = copy.deepcopy(good)
    assert check_chunk(good) is good
    assert fastjson.dumps(good) == fastjson.dumps(before)


@pytest.mark.parametrize("data", [b"{not json", b'{"id": "x", "choices": [', b"\xff\xfe", b"<html>",
                                  b'{"a": "\\ud800"}', b'{"a": NaN, "b": 1' + b"0" * 30 + b"}",
                                  b"[" * 5000 + b"]" * 5000, b"42", b'"x"',
                                  # +inf is no logprob (orjson never yields one; the stdlib fallback refuses it)
                                  b'{"choices": [{"index": 0, "logprobs": {"content": [{"token": "a", "logprob": '
                                  b'Infinity}]}}]}',
                                  b'{"choices": [], "x": NaN, "y": 1e400}'])
def test_data_that_is_not_a_json_object_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedChunk):
        parse_chunk(data)


def test_nan_and_infinity_literals_from_python_servers_still_parse() -> None:
    parsed = parse_chunk(b'{"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [{"token": '
                         b'"a", "logprob": -Infinity, "top_logprobs": [{"token": "a", "logprob": NaN}]}]}}]}')
    assert parsed["choices"][0]["delta"]["content"] == "a"


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + event + b"\n\n" for event in events)


GOOD = [fastjson.dumps(c) for c in STREAM]


async def read(*blocks: bytes) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[bytes]:
        for block in blocks:
            yield block
    return [c async for c in _chunks(source(), TIER)]


async def test_a_whole_stream_reads_through() -> None:
    assert len(await read(sse(*GOOD, b"[DONE]"))) == len(STREAM)


async def test_a_stream_whose_last_choice_finished_is_whole_without_done() -> None:
    assert len(await read(sse(*GOOD))) == len(STREAM)


@pytest.mark.parametrize(("body", "detail"), [
    (sse(*GOOD[:2]), "ended before [DONE]"),  # cut between events, mid-answer
    (sse(*GOOD[:2]) + b'data: {"id": "chatcmpl-1", "choi', "not JSON"),  # cut mid-JSON
    (b'{"id": "x", "object": "chat.completion", "choices": []}', "not an event stream"),  # a 200 JSON body
    (b"<html><body>Gateway says hi</body></html>", "not an event stream"),
    (sse(b"[DONE]"), "without any choice"),
    (sse(GOOD[0], b"42", *GOOD[1:], b"[DONE]"), "JSON number"),
    (sse(GOOD[0], b"[1]"), "JSON array"),
    (sse(GOOD[0], b'"x"'), "JSON string"),
])
async def test_garbage_streams_raise_one_protocol_error_naming_the_upstream(body: bytes, detail: str) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await read(body[:9], body[9:])  # in two network reads, split anywhere
    assert detail in caught.value.detail
    assert "heavyweight" in str(caught.value) and "big-model-v2" in str(caught.value)
    assert isinstance(caught.value, UPSTREAM_ERRORS)
    status, error = upstream_error_reply(TIER.name, caught.value, TIER.model)
    assert status == 502 and error["error"]["code"] == "upstream_malformed"
    assert error["error"]["message"].startswith("The heavyweight model (big-model-v2) sent a malformed response")


async def test_an_error_event_stays_an_upstream_stream_error() -> None:
    with pytest.raises(UpstreamStreamError):
        await read(sse(GOOD[0], b'{"error": {"message": "overloaded"}}'))


def test_other_failures_name_the_tier_and_model_too() -> None:
    status, error = upstream_error_reply("drafter", UpstreamConnectError("the connection was lost mid-stream"), "tiny")
    assert status == 502 and error["error"]["message"] == "The drafter model (tiny) failed."


def test_every_checked_chunk_can_be_judged_even_with_null_alternatives() -> None:
    """Null logprobs (-inf from C++ servers) among more alternatives than k: judged, not a crash."""
    tops = [{"token": f"t{i}", "logprob": lp} for i, lp in enumerate([-0.1, None, -2.5, None, -3.0, -4.0, None])]
    window = EntropyWindow(2.0, 10, 10, 1.4)
    assert judge(check_chunk(alternatives(*tops)), window, 5) is Decision.CONTINUE
    assert window.tokens == 1


def test_a_stream_that_stalls_past_the_timeout_is_a_504_naming_the_tier() -> None:
    status, error = upstream_error_reply("heavyweight", UpstreamTimeout("sent nothing more within 60 s"),
                                         "big-model-v2")
    assert status == 504 and error["error"]["message"] == "The heavyweight model (big-model-v2) did not answer in time."
