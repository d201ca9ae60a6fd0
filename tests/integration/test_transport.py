"""The lean transport and the native providers against the fake upstream over real HTTP, then a whole stack
whose drafter is Gemini (routed by its log-probs) and whose heavyweight is Anthropic.

The fake speaks each API as its reference describes and checks requests as the real APIs do, so a
provider that translates wrongly gets the real 400 here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from services.router.assemble import assemble_completion
from services.router.failures import upstream_error_reply
from services.router.upstream import Tier, complete, create_tier, open_chunks, stream_params
from services.router.upstreams.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from services.router.upstreams.transport import create_session
from shared.config import UpstreamConfig
from tests.fakes.scripts import Script, ToolCall, confident, uncertain
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack
from tests.support import REPO, free_port

KEYS = {"TEST_ANTHROPIC_KEY": "sk-ant-test", "TEST_GEMINI_KEY": "AIza-test"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}}, "required": ["city"]}}}


class Connections:
    """Counts the TCP connections a session opens (aiohttp's own request hooks)."""

    def __init__(self) -> None:
        self.opened = 0
        self.config = aiohttp.TraceConfig()
        self.config.on_connection_create_end.append(self._opened)

    async def _opened(self, *_: Any) -> None:
        self.opened += 1


@pytest.fixture
async def session() -> AsyncIterator[tuple[aiohttp.ClientSession, Connections]]:
    connections = Connections()
    shared = create_session([connections.config])
    yield shared, connections
    await shared.close()


def tier_on(fake: FakeUpstream, provider: str = "openai", model: str = "fake-drafter",
            session: aiohttp.ClientSession | None = None, timeout_s: float = 30, name: str = "drafter") -> Tier:
    base_url = fake.url if provider == "openai" else fake.origin
    key_env = {"openai": None, "anthropic": "TEST_ANTHROPIC_KEY", "gemini": "TEST_GEMINI_KEY"}[provider]
    config = UpstreamConfig(base_url=base_url, model=model, provider=provider, api_key_env=key_env,
                            timeout_s=timeout_s)
    return create_tier(name, config, KEYS, session)


async def read_all(tier: Tier, body: dict[str, Any], top_k: int | None = None) -> list[dict[str, Any]]:
    async with open_chunks(tier, stream_params(body, tier.model, top_k)) as chunks:
        return [chunk async for chunk in chunks]


async def test_sequential_streams_reuse_one_pooled_connection(fake: FakeUpstream, session: Any) -> None:
    shared, connections = session
    tier = tier_on(fake, session=shared)
    for _ in range(5):
        chunks = await read_all(tier, {"messages": ask("hi")}, top_k=5)
        text = assemble_completion(chunks, None)["choices"][0]["message"]["content"]
        assert text == "Paris is the capital of France."
    assert connections.opened == 1
    assert [s.completed for s in fake.seen] == [True] * 5


async def test_leaving_the_block_early_closes_the_upstream_connection_at_once(fake: FakeUpstream,
                                                                            session: Any) -> None:
    shared, connections = session
    fake.script_model("fake-drafter", Script(tokens=[f" t{i}" for i in range(40)], tokens_per_s=20))
    tier = tier_on(fake, session=shared)
    async with open_chunks(tier, stream_params({"messages": ask("long")}, tier.model, 5)) as chunks:
        async for chunk in chunks:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break
    # In a thread: the socket closes on the loop's next turn, which a blocking wait would hold up.
    (seen,) = await asyncio.to_thread(fake.wait_for, lambda s: bool(s) and s[0].ended is not None, 5)
    assert seen.closed_early and seen.tokens_sent < 40
    fake.script_model("fake-drafter", confident("again"))
    await read_all(tier, {"messages": ask("again")})
    assert connections.opened == 2  # the abandoned connection was not put back in the pool


async def test_no_byte_before_the_timeout_is_a_retryable_timeout_and_a_504(fake: FakeUpstream) -> None:
    fake.script_model("fake-heavy", confident("too late", ttft_s=3))
    tier = tier_on(fake, model="fake-heavy", timeout_s=0.3, name="heavyweight")
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await read_all(tier, {"messages": ask("slow")})
    finally:
        await tier.client.close()
    assert caught.value.retryable and (caught.value.tier, caught.value.model) == ("heavyweight", "fake-heavy")
    assert upstream_error_reply("heavyweight", caught.value, "fake-heavy")[0] == 504


async def test_a_stream_that_stalls_mid_answer_is_a_timeout_that_is_not_retryable(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[" a", " b", " c"], tokens_per_s=1))
    tier = tier_on(fake, timeout_s=0.4)
    received: list[dict[str, Any]] = []
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            async with open_chunks(tier, stream_params({"messages": ask("stall")}, tier.model)) as chunks:
                async for chunk in chunks:
                    received.append(chunk)
    finally:
        await tier.client.close()
    assert not caught.value.retryable and received
    (seen,) = await asyncio.to_thread(fake.wait_for, lambda s: bool(s) and s[0].ended is not None, 5)
    assert seen.closed_early


async def test_a_refused_connection_is_a_retryable_connect_error() -> None:
    tier = create_tier("drafter", UpstreamConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"), {})
    try:
        with pytest.raises(UpstreamConnectError) as caught:
            await read_all(tier, {"messages": ask("anyone?")})
    finally:
        await tier.client.close()
    assert caught.value.retryable and caught.value.status is None
    assert upstream_error_reply("drafter", caught.value, "m") == (502, {"error": {
        "message": "The drafter model (m) failed.", "type": "upstream_error", "param": None,
        "code": "upstream_failed"}})


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_a_rate_limit_says_how_long_to_wait_on_every_wire(fake: FakeUpstream, provider: str) -> None:
    fake.script_model("limited", Script(tokens=["x"], status=429, retry_after_s=7))
    tier = tier_on(fake, provider, model="limited", name="heavyweight")
    try:
        with pytest.raises(UpstreamStatusError) as caught:
            await read_all(tier, {"messages": ask("hi")})
    finally:
        await tier.client.close()
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after_s) == (429, True, 7.0)
    status, error = upstream_error_reply("heavyweight", caught.value, "limited")
    assert status == 429 and error["error"]["type"] == "rate_limit_error"
    assert error["error"]["message"] == "scripted failure 429"


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
async def test_a_native_conversation_with_tools_passes_the_apis_checks_and_comes_back_as_openai(
        fake: FakeUpstream, provider: str) -> None:
    """System prompt, a tool call and its result, then a new question: the fake refuses what the real API would."""
    fake.script_model("native-model", confident("It is 18C in Paris; let me check Rome.",
                                                tool_calls=(ToolCall("get_weather", {"city": "Rome"}),)))
    tier = tier_on(fake, provider, model="native-model", name="heavyweight")
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
                {"role": "user", "content": "And Rome?"}]
    try:
        chunks = await read_all(tier, {"messages": messages, "tools": [WEATHER], "tool_choice": "auto",
                                       "max_tokens": 64, "temperature": 0.5, "stop": ["\n\n"]})
    finally:
        await tier.client.close()
    (seen,) = fake.seen
    assert (seen.api, seen.status, seen.completed) == (provider, 200, True)
    key = {"anthropic": ("x-api-key", "sk-ant-test"), "gemini": ("x-goog-api-key", "AIza-test")}[provider]
    assert seen.headers[key[0]] == key[1]
    completion = assemble_completion(chunks, None)
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "It is 18C in Paris; let me check Rome."
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"].replace(" ", "") == \
        '{"city":"Rome"}'
    assert completion["usage"]["completion_tokens"] > 0 and completion["usage"]["prompt_tokens"] > 0


async def test_gemini_log_probs_carry_the_scripted_entropy(fake: FakeUpstream) -> None:
    fake.script_model("gemini-draft", Script(tokens=[" a", " b", " c"], entropies=[0.1, 1.0, 2.0]))
    tier = tier_on(fake, "gemini", model="gemini-draft")
    try:
        completion = await complete(tier, {"messages": ask("how sure?")}, 5)
    finally:
        await tier.client.close()
    entries = completion["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == [" a", " b", " c"]
    assert all(len(e["top_logprobs"]) == 5 for e in entries)
    assert fake.seen[0].body["generationConfig"] == {"responseLogprobs": True, "logprobs": 5}


@pytest.mark.parametrize(("provider", "mode"), [("anthropic", "delta_not_object"), ("gemini", "logprob_not_number"),
                                                ("anthropic", "truncated"), ("gemini", "cut_mid_json")])
async def test_native_garbage_is_a_protocol_or_connect_error_naming_the_tier(fake: FakeUpstream, provider: str,
                                                                            mode: str) -> None:
    fake.script_model("broken", Script(tokens=[" a", " b", " c"], garbage=mode, garbage_after=1))
    tier = tier_on(fake, provider, model="broken", name="heavyweight")
    try:
        with pytest.raises((UpstreamProtocolError, UpstreamConnectError)) as caught:
            await read_all(tier, {"messages": ask("garbage?")}, top_k=3 if provider == "gemini" else None)
    finally:
        await tier.client.close()
    assert (caught.value.tier, caught.value.model) == ("heavyweight", "broken")
    assert not caught.value.retryable  # the upstream had begun answering
    if mode != "cut_mid_json":
        assert isinstance(caught.value, UpstreamProtocolError)


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
async def test_an_error_inside_a_native_stream_is_a_stream_error(fake: FakeUpstream, provider: str) -> None:
    fake.script_model("flaky", Script(tokens=[" a", " b", " c"], stream_error=529 if provider == "anthropic" else 503,
                                      garbage_after=1))
    tier = tier_on(fake, provider, model="flaky", name="heavyweight")
    try:
        with pytest.raises(UpstreamStreamError) as caught:
            await read_all(tier, {"messages": ask("flaky?")})
    finally:
        await tier.client.close()
    assert caught.value.tier == "heavyweight" and caught.value.body is not None
    assert upstream_error_reply("heavyweight", caught.value, "flaky")[0] == 502


@pytest.fixture(scope="module")
def native_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A drafter on the Gemini wire and a heavyweight on the Anthropic wire, both on the fake."""
    with running_stack(redis_server, tmp_path_factory.mktemp("native"), fake, **KEYS,
                       DRAFTGATE_DRAFTER_PROVIDER="gemini", DRAFTGATE_DRAFTER_BASE_URL=fake.origin,
                       DRAFTGATE_DRAFTER_MODEL="gemini-draft", DRAFTGATE_DRAFTER_API_KEY_ENV="TEST_GEMINI_KEY",
                       DRAFTGATE_HEAVYWEIGHT_PROVIDER="anthropic", DRAFTGATE_HEAVYWEIGHT_BASE_URL=fake.origin,
                       DRAFTGATE_HEAVYWEIGHT_MODEL="claude-heavy",
                       DRAFTGATE_HEAVYWEIGHT_API_KEY_ENV="TEST_ANTHROPIC_KEY") as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
def test_a_confident_gemini_draft_is_accepted_by_its_log_probs(native_stack: Stack, fake: FakeUpstream,
                                                               stream: bool) -> None:
    fake.script_model("gemini-draft", confident("Paris is the capital of France."))
    raw = native_stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("capital?"),
                                                                          stream=stream)
    text = ("".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) if stream
            else raw.parse().choices[0].message.content)
    assert text == "Paris is the capital of France."
    assert raw.headers["x-routing-tier"] == "drafter"
    assert [(s.api, s.model) for s in fake.seen] == [("gemini", "gemini-draft")]
    config = fake.seen[0].body["generationConfig"]
    assert config["responseLogprobs"] is True and config["logprobs"] >= 5


@pytest.mark.parametrize("stream", [False, True])
def test_an_uncertain_gemini_draft_escalates_to_the_anthropic_heavyweight(native_stack: Stack, fake: FakeUpstream,
                                                                          stream: bool) -> None:
    fake.script_model("gemini-draft", uncertain("Maybe Lyon, or not.", bits=3.0))
    fake.script_model("claude-heavy", confident("The capital of France is Paris."))
    raw = native_stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("capital?"),
                                                                          stream=stream)
    text = ("".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) if stream
            else raw.parse().choices[0].message.content)
    assert text == "The capital of France is Paris."
    assert (raw.headers["x-routing-decision"], raw.headers["x-routing-tier"]) == ("escalate", "heavyweight")
    assert raw.headers["x-escalation-reason"] == "early_token"
    heavy = [s for s in fake.seen if s.api == "anthropic"]
    assert len(heavy) == 1 and heavy[0].completed and heavy[0].headers["anthropic-version"] == "2023-06-01"


def test_an_anthropic_refusal_keeps_its_status_and_words(native_stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("claude-heavy", Script(tokens=["x"], status=400))
    with pytest.raises(openai.BadRequestError) as caught:
        native_stack.client().chat.completions.create(model="heavyweight", messages=ask("bad"))
    assert caught.value.message.endswith("scripted failure 400")


def test_an_anthropic_drafter_is_refused_at_start_with_one_line_saying_why(tmp_path: Path) -> None:
    env = {**os.environ, "DRAFTGATE_DRAFTER_PROVIDER": "anthropic", "DRAFTGATE_DRAFTER_MODEL": "claude-x",
           "DRAFTGATE_ROUTER_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-m", "services.router"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "draftgate router: invalid configuration: drafter.provider: 'anthropic' cannot be the drafter: its API "
        "returns no token log-probs, which the router judges every draft by (use openai or gemini for the drafter)"]
