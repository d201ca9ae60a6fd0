"""A cache hit is indistinguishable in shape from a live answer to the same request, log-probs
included: real gateway, router, cache and embedder processes, compared through the official
client's parsed objects field by field (ids, timestamps and usage figures aside)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from redis.asyncio import Redis

from services.gateway.auth import tenant_of
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.cache_helpers import written
from tests.integration.stack import Stack, running_cached_stack

ANSWER = "Paris is the capital of France."
VARIANTS = {"no-logprobs": {}, "logprobs": {"logprobs": True}, "top-2": {"logprobs": True, "top_logprobs": 2}}


@pytest.fixture(scope="module")
def cached_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_cached_stack(redis_server, tmp_path_factory.mktemp("cached-logprobs"), fake) as (stack, _):
        yield stack


def stored(stack: Stack) -> None:
    """Wait until the cache writer has stored every answer routers queued so far."""
    async def drained() -> None:
        redis = Redis.from_url(stack.redis_url)
        try:
            await written(redis)
        finally:
            await redis.aclose()
    asyncio.run(drained())


def ask(stack: Stack, question: str, params: dict[str, Any], stream: bool,
        **headers: str) -> tuple[str, ChatCompletion | list[ChatCompletionChunk]]:
    messages = [{"role": "user", "content": question}]
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    raw = stack.client().chat.completions.with_raw_response.create(
        model="auto", messages=messages, stream=stream, extra_headers=headers, **params, **extra)  # type: ignore[arg-type]
    parsed = raw.parse()
    return raw.headers["X-Routing-Decision"], list(parsed) if stream else parsed  # type: ignore[arg-type]


def strip_decision(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({k: v for k, v in chunk.model_dump(exclude_unset=True).items()
                                               if k != "draftgate"})


def comparable(value: Any) -> Any:
    """A parsed object's fields as the client sees them (only those the server set), with ids,
    timestamps and usage figures reduced to their presence and keys."""
    if isinstance(value, openai.BaseModel):
        value = value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("id", "created"):
                out[key] = type(item).__name__
            elif key == "usage" and isinstance(item, dict):
                out[key] = sorted(item)
            else:
                out[key] = comparable(item)
        return out
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_plain_cache_hit_has_the_live_answers_shape(cached_stack: Stack, fake: FakeUpstream, variant: str) -> None:
    question = f"capital of France, plain, {variant}"
    fake.script(question, confident(ANSWER))
    decision, live = ask(cached_stack, question, VARIANTS[variant], stream=False)
    assert decision == "accept"
    stored(cached_stack)
    decision, hit = ask(cached_stack, question, VARIANTS[variant], stream=False)
    assert decision == "cache_hit"
    assert isinstance(live, ChatCompletion) and isinstance(hit, ChatCompletion)
    assert comparable(hit) == comparable(live)
    assert hit.id != live.id and hit.usage is not None and hit.usage.total_tokens == 0
    logprobs = hit.choices[0].logprobs
    if "logprobs" not in VARIANTS[variant]:
        assert logprobs is None
    else:
        assert logprobs is not None and logprobs.content is not None
        assert "".join(t.token for t in logprobs.content) == ANSWER
        assert all(len(t.top_logprobs) == VARIANTS[variant].get("top_logprobs", 0) for t in logprobs.content)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_streamed_cache_hit_has_the_live_streams_shape(cached_stack: Stack, fake: FakeUpstream,
                                                         variant: str) -> None:
    question = f"capital of France, streamed, {variant}"
    fake.script(question, confident(ANSWER))
    decision, live = ask(cached_stack, question, VARIANTS[variant], stream=True)
    assert decision == "accept"
    stored(cached_stack)
    decision, hit = ask(cached_stack, question, VARIANTS[variant], stream=True)
    assert decision == "cache_hit"
    assert isinstance(live, list) and isinstance(hit, list)
    # The last chunk's decision field says how each was answered; everything else is alike.
    assert (live[-1].model_extra["draftgate"]["decision"], hit[-1].model_extra["draftgate"]["decision"]) == (
        "accept", "cache_hit")
    hit, live = [strip_decision(c) for c in hit], [strip_decision(c) for c in live]
    if "logprobs" in VARIANTS[variant]:  # token by token, each with its log-prob, exactly as streamed
        assert comparable(hit) == comparable(live)
        content = [t for c in hit if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
        assert "".join(t.token for t in content) == ANSWER
    else:  # no token boundaries are kept: the same chunks, the content in one
        def folded(chunks: list[ChatCompletionChunk]) -> list[Any]:
            content = [c for c in chunks if c.choices and c.choices[0].delta.content]
            shapes = [comparable(c.model_copy(update={"choices": [c.choices[0].model_copy(
                update={"delta": c.choices[0].delta.model_copy(update={"content": "..."})})]})) for c in content]
            return [comparable(chunks[0]), "".join(c.choices[0].delta.content or "" for c in content),
                    shapes[-1], comparable(chunks[-2]), comparable(chunks[-1])]
        assert folded(hit) == folded(live)
        assert all(c.choices[0].logprobs is None for c in hit if c.choices)
    assert hit[-1].usage is not None and hit[-1].usage.total_tokens == 0


def test_a_plain_answer_stored_with_log_probs_serves_a_streamed_hit(cached_stack: Stack, fake: FakeUpstream) -> None:
    question = "capital of France, plain then streamed"
    params = VARIANTS["top-2"]
    fake.script(question, confident(ANSWER))
    assert ask(cached_stack, question, params, stream=False)[0] == "accept"
    stored(cached_stack)
    decision, live = ask(cached_stack, question, params, stream=True, **{"Cache-Control": "no-cache, no-store"})
    decision_hit, hit = ask(cached_stack, question, params, stream=True)
    assert (decision, decision_hit) == ("accept", "cache_hit")
    assert isinstance(live, list) and isinstance(hit, list)
    assert comparable([strip_decision(c) for c in hit]) == comparable([strip_decision(c) for c in live])


def test_answers_stored_without_log_probs_carry_none(cached_stack: Stack, fake: FakeUpstream) -> None:
    """No bloat: what did not ask for log-probs is stored without them (read from the cache service
    itself, under the tenant the gateway derives from the stack client's key)."""
    question = "capital of France, no logprobs stored"
    fake.script(question, confident(ANSWER))
    ask(cached_stack, question, {}, stream=False)
    stored(cached_stack)
    body = {"model": "auto", "messages": [{"role": "user", "content": question}]}
    found = httpx.post(f"{cached_stack.env['DRAFTGATE_GATEWAY_CACHE_URL']}/lookup", timeout=10,
                       json={"tenant": tenant_of("test-key", {}), "body": body}).json()
    assert found["hit"] and found["completion"]["choices"][0]["logprobs"] is None
