"""The fake upstream speaks OpenAI exactly enough for the official client, and records what it saw."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.fakes.garbage import DATA_MODES
from tests.fakes.scripts import Script, confident, entropy_bits, uncertain
from tests.fakes.upstream import FakeUpstream, Seen
from tests.support import REPO

USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=confident("Paris is the capital of France.")) as upstream:
        yield upstream


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key="test", max_retries=0) as c:
        yield c


def _bits(top_logprobs: list) -> float:
    return entropy_bits([t.logprob for t in top_logprobs])


def test_non_streaming_answer_parses_with_logprobs_and_usage(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.script("capital", uncertain("Lyon, perhaps.", bits=1.5))
    reply = client.chat.completions.create(model="fake-drafter", messages=USER, logprobs=True, top_logprobs=4)
    choice = reply.choices[0]
    assert choice.message.content == "Lyon, perhaps."
    assert choice.finish_reason == "stop"
    assert reply.model == "fake-drafter" and reply.id.startswith("chatcmpl-fake-")
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [t.token for t in choice.logprobs.content] == ["Lyon,", " perhaps."]
    for token in choice.logprobs.content:
        assert len(token.top_logprobs) == 4
        assert token.logprob == token.top_logprobs[0].logprob
        assert _bits(token.top_logprobs) == pytest.approx(1.5, abs=1e-6)
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 2)
    assert fake.seen[0].completed and fake.seen[0].tokens_sent == 2


def test_non_streaming_without_logprobs_sends_null(fake: FakeUpstream) -> None:
    body = httpx.post(f"{fake.url}/chat/completions", json={"model": "fake-heavy", "messages": USER}).json()
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris is the capital of France.",
                                             "refusal": None, "annotations": []}


def test_streaming_answer_parses_with_logprobs_and_usage(fake: FakeUpstream, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="fake-drafter", messages=USER, stream=True, logprobs=True,
                                            top_logprobs=5, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content or "" for c in content) == "Paris is the capital of France."
    for chunk in content:
        logprobs = chunk.choices[0].logprobs
        assert logprobs is not None and logprobs.content is not None and len(logprobs.content) == 1
        assert logprobs.content[0].token == chunk.choices[0].delta.content
        assert _bits(logprobs.content[0].top_logprobs) == pytest.approx(0.05, abs=1e-6)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(content)
    seen = fake.wait_for(lambda s: len(s) == 1 and s[0].completed)
    assert seen[0].stream and seen[0].tokens_sent == len(content) and not seen[0].closed_early


async def test_async_client_streams_and_reads_whole_answers(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=fake.url, api_key="test", max_retries=0) as client:
        stream = await client.chat.completions.create(model="fake-heavy", messages=USER, stream=True,
                                                      logprobs=True, top_logprobs=2)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        whole = await client.chat.completions.create(model="fake-heavy", messages=USER)
    assert "".join(pieces) == whole.choices[0].message.content == "Paris is the capital of France."


@pytest.mark.parametrize("tokens_per_s", [None, 1000.0])
def test_raw_stream_frames_validate_as_chunks(fake: FakeUpstream, tokens_per_s: float | None) -> None:
    fake.script("capital", Script(tokens=["a", " b"], entropies=[0.5, 2.0], sentinel=True, tokens_per_s=tokens_per_s))
    request = {"model": "fake-drafter", "messages": USER, "stream": True, "logprobs": True, "top_logprobs": 8,
               "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{fake.url}/chat/completions", json=request) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert frames[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(f)) for f in frames[:-1]]
    assert [c.choices[0].delta.content for c in chunks[:3]] == ["", "a", " b"]
    for chunk, bits in zip(chunks[1:3], [0.5, 2.0], strict=True):
        tops = chunk.choices[0].logprobs.content[0].top_logprobs  # type: ignore[union-attr,index]
        assert [t.logprob for t in tops[-2:]] == [-9999.0, -9999.0]
        assert _bits(tops) == pytest.approx(bits, abs=1e-6)
    assert json.loads(frames[0])["choices"][0]["logprobs"] is None
    assert json.loads(frames[3])["choices"][0] == {"delta": {}, "index": 0, "finish_reason": "stop",
                                                    "logprobs": None}


def test_script_without_logprob_support_never_sends_them(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.script_model("fake-drafter", confident("No logprobs here.", logprobs=False))
    stream = client.chat.completions.create(model="fake-drafter", messages=USER, stream=True, logprobs=True,
                                            top_logprobs=3)
    assert all(c.choices[0].logprobs is None for c in stream if c.choices)
    reply = client.chat.completions.create(model="fake-drafter", messages=USER, logprobs=True, top_logprobs=3)
    assert reply.choices[0].logprobs is None


@pytest.mark.parametrize(("status", "kind"), [(500, "server_error"), (503, "server_error"),
                                              (429, "invalid_request_error"), (404, "invalid_request_error")])
def test_scripted_error_status_surfaces_as_api_status_error(fake: FakeUpstream, client: openai.OpenAI,
                                                            status: int, kind: str) -> None:
    fake.script_model("fake-heavy", Script(tokens=[], status=status))
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="fake-heavy", messages=USER, stream=True)
    assert raised.value.status_code == status
    assert raised.value.body == {"message": f"scripted failure {status}", "type": kind, "param": None, "code": None}
    assert fake.seen[0].status == status


def test_malformed_request_gets_a_400_naming_the_field(fake: FakeUpstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="fake-drafter", messages=USER, top_logprobs=3)
    assert raised.value.param == "top_logprobs"
    assert fake.seen[0].status == 400


def test_client_closing_mid_stream_is_recorded_closed_early(fake: FakeUpstream, client: openai.OpenAI) -> None:
    script = confident(" ".join(["word"] * 40), tokens_per_s=50)
    fake.script("capital", script)
    stream = client.chat.completions.create(model="fake-drafter", messages=USER, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    stream.close()
    seen = fake.wait_for(lambda s: bool(s) and s[0].ended is not None)
    assert seen[0].closed_early and not seen[0].completed
    assert 3 <= seen[0].tokens_sent < len(script.tokens)


def test_client_closing_before_the_first_token_is_recorded_closed_early(fake: FakeUpstream) -> None:
    fake.script("capital", confident("Slow answer.", ttft_s=30))
    request = {"model": "fake-drafter", "messages": USER, "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake.url}/chat/completions", json=request, timeout=httpx.Timeout(5, read=0.2))
    seen = fake.wait_for(lambda s: bool(s) and s[0].ended is not None)
    assert seen[0].closed_early and seen[0].tokens_sent == 0


def test_prompt_rules_beat_model_rules_and_the_latest_wins(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.script_model("fake-heavy", confident("heavy answer"))
    fake.script("France", confident("first rule"))
    fake.script("capital", confident("latest rule"))

    def ask(model: str, prompt: str) -> str | None:
        messages = [{"role": "user", "content": "capital"}, {"role": "assistant", "content": "?"},
                    {"role": "user", "content": prompt}]
        return client.chat.completions.create(model=model, messages=messages).choices[0].message.content  # type: ignore[arg-type]

    assert ask("fake-heavy", "What is the capital of France?") == "latest rule"
    assert ask("fake-heavy", "France?") == "first rule"
    assert ask("fake-heavy", "Hello") == "heavy answer"
    assert ask("fake-drafter", "Hello") == "Paris is the capital of France."
    fake.reset()
    assert fake.seen == []
    assert ask("fake-heavy", "What is the capital of France?") == "Paris is the capital of France."


def test_max_tokens_cuts_the_answer_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="fake-drafter", messages=USER, max_tokens=2)
    assert reply.choices[0].message.content == "Paris is"
    assert reply.choices[0].finish_reason == "length"


def test_first_token_waits_for_the_scripted_ttft(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.script("capital", confident("Late.", ttft_s=0.3))
    started = time.monotonic()
    stream = client.chat.completions.create(model="fake-drafter", messages=USER, stream=True)
    next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert time.monotonic() - started >= 0.3


def test_tokens_arrive_no_faster_than_the_scripted_rate(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.script("capital", confident(" ".join(["tick"] * 11), tokens_per_s=50))
    started = time.monotonic()
    stream = client.chat.completions.create(model="fake-drafter", messages=USER, stream=True)
    arrivals = [time.monotonic() for c in stream if c.choices and c.choices[0].delta.content]
    assert len(arrivals) == 11
    # Ten 20 ms gaps at least between the first token and the last, measured from before the request:
    # the gap between two arrivals would depend on how the client's reads happen to batch the chunks.
    assert arrivals[-1] - started >= 0.2


def test_models_lists_tiers_and_requested_models(fake: FakeUpstream, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="some-other-model", messages=USER)
    assert {"fake-drafter", "fake-heavy", "some-other-model"} <= {m.id for m in client.models.list()}


def test_seen_is_a_snapshot(fake: FakeUpstream, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fake-drafter", messages=USER)
    snapshot = fake.seen
    snapshot[0].tokens_sent = -1
    assert isinstance(snapshot[0], Seen) and fake.seen[0].tokens_sent == 6


def test_cli_serves_until_sigterm_with_an_uncertain_marker() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.upstream", "--port", "0", "--tokens", "4",
                             "--uncertain-marker", "UNSURE", "--uncertain-bits", "2.0"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        with openai.OpenAI(base_url=url, api_key="test", max_retries=0) as client:
            def entropies(prompt: str) -> list[float]:
                reply = client.chat.completions.create(model="fake-drafter", logprobs=True, top_logprobs=5,
                                                       messages=[{"role": "user", "content": prompt}])
                assert reply.choices[0].logprobs and reply.choices[0].logprobs.content
                return [_bits(t.top_logprobs) for t in reply.choices[0].logprobs.content]

            assert entropies("hello") == pytest.approx([0.05] * 4, abs=1e-6)
            assert entropies("I am UNSURE") == pytest.approx([2.0] * 4, abs=1e-6)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_entropy_helper_matches_a_uniform_distribution() -> None:
    assert entropy_bits([math.log(0.25)] * 4) == pytest.approx(2.0)


STREAM_REQUEST = {"model": "fake-drafter", "messages": USER, "stream": True, "logprobs": True, "top_logprobs": 3}


def raw_frames(fake: FakeUpstream, request: dict) -> list[str]:
    with httpx.stream("POST", f"{fake.url}/chat/completions", json=request) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return [line.removeprefix("data: ") for line in response.iter_lines() if line]


@pytest.mark.parametrize("mode", sorted(DATA_MODES))
def test_data_garbage_comes_after_the_good_tokens_and_the_stream_goes_on(fake: FakeUpstream, mode: str) -> None:
    fake.script("capital", replace(confident("one two three four"), garbage=mode, garbage_after=2))
    frames = raw_frames(fake, STREAM_REQUEST)
    assert frames[-1] == "[DONE]"
    good = [ChatCompletionChunk.model_validate(json.loads(f)) for f in frames[:3]]
    assert [c.choices[0].delta.content for c in good] == ["", "one", " two"]
    with pytest.raises(ValueError):  # not JSON, or not a chunk by the SDK's own model
        ChatCompletionChunk.model_validate(json.loads(frames[3]))
    rest = [ChatCompletionChunk.model_validate(json.loads(f)) for f in frames[4:-1]]
    assert [c.choices[0].delta.content for c in rest] == [" three", " four", None]


def test_data_garbage_can_come_first(fake: FakeUpstream) -> None:
    fake.script("capital", replace(confident("one two"), garbage="number", garbage_after=0))
    frames = raw_frames(fake, STREAM_REQUEST)
    assert frames[0] == "42" and json.loads(frames[1])["choices"][0]["delta"]["role"] == "assistant"


def test_a_truncated_stream_ends_cleanly_without_finish_or_done(fake: FakeUpstream) -> None:
    fake.script("capital", replace(confident("one two three four"), garbage="truncated", garbage_after=3))
    frames = raw_frames(fake, STREAM_REQUEST)
    assert [json.loads(f)["choices"][0]["delta"]["content"] for f in frames] == ["", "one", " two", " three"]
    assert all(json.loads(f)["choices"][0]["finish_reason"] is None for f in frames)


def test_a_stream_cut_mid_json_drops_the_connection(fake: FakeUpstream) -> None:
    fake.script("capital", replace(confident("one two three"), garbage="cut_mid_json", garbage_after=1))
    received: list[str] = []
    with (pytest.raises(httpx.RemoteProtocolError),
          httpx.stream("POST", f"{fake.url}/chat/completions", json=STREAM_REQUEST) as response):
        received.extend(response.iter_lines())
    assert not any("[DONE]" in line for line in received)


@pytest.mark.parametrize(("mode", "status", "content_type"), [("html_500", 500, "text/html"),
                                                              ("html_502", 502, "text/html"),
                                                              ("html_200", 200, "text/html"),
                                                              ("not_sse", 200, "application/json")])
@pytest.mark.parametrize("stream", [False, True])
def test_page_garbage_answers_any_request(fake: FakeUpstream, mode: str, status: int, content_type: str,
                                          stream: bool) -> None:
    fake.script_model("fake-heavy", replace(confident("unused"), garbage=mode))
    response = httpx.post(f"{fake.url}/chat/completions", json={"model": "fake-heavy", "messages": USER,
                                                                "stream": stream})
    assert response.status_code == status and response.headers["content-type"].startswith(content_type)
    assert b"data:" not in response.content


@pytest.mark.parametrize("mode", ["number", "logprobs_not_object", "truncated"])
def test_a_whole_answer_with_garbage_is_no_completion(fake: FakeUpstream, mode: str) -> None:
    fake.script("capital", replace(confident("one two"), garbage=mode))
    response = httpx.post(f"{fake.url}/chat/completions", json={**STREAM_REQUEST, "stream": False})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        ChatCompletion.model_validate(json.loads(response.content))
