"""The draft-and-verify pipeline through real gateway and router processes and real Redis."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis as sync_redis
from openai.types.chat import ChatCompletionChunk

from shared.keys import CACHE_WRITE_STREAM
from tests.fakes.scripts import Script, confident, split_tokens, uncertain
from tests.fakes.upstream import FakeUpstream
from tests.integration.conftest import DEFAULT_ANSWER
from tests.integration.stack import Stack, ask

HEAVY_ANSWER = "The heavyweight model answers carefully and at length."


def drafts(seen: list) -> list:
    return [s for s in seen if s.model == "fake-drafter"]


def heavies(seen: list) -> list:
    return [s for s in seen if s.model == "fake-heavy"]


def test_accepts_a_confident_draft_with_routing_headers(stack: Stack, fake: FakeUpstream) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="auto", messages=ask("capital of France?"), extra_headers={"X-Request-ID": "client-id-1"})
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_ANSWER
    assert completion.object == "chat.completion"
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert raw.headers["X-Request-ID"] == "client-id-1"
    assert raw.headers["X-Draft-Entropy"] == "0.050"
    assert raw.headers["X-Speculation"] == "none"
    assert float(raw.headers["X-Request-Duration-Ms"]) > 0
    (draft,) = fake.seen
    assert draft.model == "fake-drafter"
    assert draft.body["logprobs"] is True and draft.body["top_logprobs"] == 5


def test_concurrent_calls_reusing_one_request_id_each_get_their_own_answer(stack: Stack, fake: FakeUpstream) -> None:
    answers = {"apples": "Apples are red.", "pears": "Pears are green."}
    for topic, answer in answers.items():
        fake.script(topic, confident(answer, ttft_s=0.3))
    client = stack.client()

    def call(topic: str) -> tuple[str, str | None]:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ask(f"tell me about {topic}"), extra_headers={"X-Request-ID": "reused"})
        return raw.parse().choices[0].message.content or "", raw.headers["X-Request-ID"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(answers, pool.map(call, answers), strict=True))
    assert results == {topic: (answer, "reused") for topic, answer in answers.items()}


def test_a_gateway_without_a_cache_queues_no_cache_writes(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("store me?"))
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert sync_redis.Redis.from_url(stack.redis_url).xlen(CACHE_WRITE_STREAM) == 0


def test_escalates_when_window_mean_exceeds_threshold(stack: Stack, fake: FakeUpstream) -> None:
    tokens = [f" t{i}" for i in range(30)]
    fake.script_model("fake-drafter", Script(tokens=tokens, entropies=[0.1] * 12 + [2.3] * 18,
                                                 tokens_per_s=100))
    fake.script_model("fake-heavy", confident(HEAVY_ANSWER))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("drifting topic"))
    assert raw.parse().choices[0].message.content == HEAVY_ANSWER
    assert raw.headers["X-Routing-Decision"] == "escalate"
    assert raw.headers["X-Escalation-Reason"] == "window_mean"
    assert float(raw.headers["X-Draft-Entropy"]) > 2.0
    seen = fake.wait_for(lambda s: len(drafts(s)) == 1 and drafts(s)[0].ended is not None)
    # The window first exceeds 2.0 bits at the 21st token: 1 x 0.1 + 9 x 2.3 over 10 tokens.
    assert drafts(seen)[0].tokens_sent < len(tokens)


def test_accepts_when_early_tokens_stay_below_threshold(stack: Stack, fake: FakeUpstream) -> None:
    fake.script("wobbly", Script(tokens=[f" w{i}" for i in range(20)], entropies=[1.9] * 20))
    raw = stack.client().chat.completions.with_raw_response.create(
        model="auto", messages=ask("wobbly"), extra_body={"stream": False})
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert raw.headers["X-Draft-Entropy"] == "1.900"


def test_early_abort_closes_the_drafter_connection(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", uncertain("one two three four five six seven eight nine ten " * 3, bits=2.3,
                                    tokens_per_s=50))
    fake.script_model("fake-heavy", confident(HEAVY_ANSWER))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("unsure"))
    assert raw.headers["X-Routing-Decision"] == "escalate"
    assert raw.headers["X-Escalation-Reason"] == "early_token"
    assert raw.parse().choices[0].message.content == HEAVY_ANSWER
    seen = fake.wait_for(lambda s: any(d.ended for d in drafts(s)))
    (draft,) = drafts(seen)
    assert draft.closed_early
    assert draft.tokens_sent < 5


def test_streams_an_accepted_draft_as_sse_ending_in_done(stack: Stack) -> None:
    body = {"model": "auto", "stream": True, "messages": ask("capital of France?"),
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{stack.url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["X-Routing-Decision"] == "accept"
        assert response.headers["X-Draft-Entropy"] == "0.050"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(line.removeprefix("data: "))) for line in lines[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_ANSWER
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.choices[0].logprobs is None for c in chunks if c.choices)


def test_streams_escalated_answers_live_not_buffered(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", uncertain("hmm " * 20, bits=2.3))
    fake.script_model("fake-heavy", confident("a b c d e f g h i j", tokens_per_s=20))
    arrivals = []
    stream = stack.client().chat.completions.create(model="auto", stream=True, messages=ask("hard question"))
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 10
    # 10 tokens at 20 tokens/s: relayed one by one, the first arrives long before the last.
    assert arrivals[-1] - arrivals[0] > 0.3


def test_usage_chunk_only_when_asked(stack: Stack) -> None:
    chunks = list(stack.client().chat.completions.create(model="auto", stream=True, messages=ask("hi")))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize(("model", "tier", "decision"), [
    ("drafter", "fake-drafter", "accept"),
    ("fake-drafter", "fake-drafter", "accept"),
    ("heavyweight", "fake-heavy", "escalate"),
    ("fake-heavy", "fake-heavy", "escalate"),
])
def test_forced_tiers_call_only_that_tier(stack: Stack, fake: FakeUpstream, model: str, tier: str,
                                          decision: str) -> None:
    fake.script("unsure", uncertain("maybe maybe maybe", bits=2.3))
    raw = stack.client().chat.completions.with_raw_response.create(model=model, messages=ask("unsure"))
    assert raw.headers["X-Routing-Decision"] == decision
    assert raw.parse().choices[0].message.content == "maybe maybe maybe"
    assert [s.model for s in fake.seen] == [tier]
    assert "logprobs" not in fake.seen[0].body


def test_passes_client_logprobs_and_unknown_fields_through(stack: Stack, fake: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    completion = stack.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": [{"type": "text", "text": "capital?"}]}],
        logprobs=True, top_logprobs=2, seed=7, temperature=0.2, tools=tools, extra_body={"custom_field": 1})
    entries = completion.choices[0].logprobs.content
    assert len(entries) == len(split_tokens(DEFAULT_ANSWER))
    assert all(len(entry.top_logprobs) == 2 for entry in entries)
    body = fake.seen[0].body
    assert body["seed"] == 7 and body["temperature"] == 0.2 and body["tools"] == tools
    assert body["custom_field"] == 1
    assert body["top_logprobs"] == 5


def test_drafter_without_logprobs_escalates(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident("no logprobs here", logprobs=False))
    fake.script_model("fake-heavy", confident(HEAVY_ANSWER))
    for _ in range(2):
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("plain"))
        assert raw.headers["X-Routing-Decision"] == "escalate"
        assert raw.headers["X-Escalation-Reason"] == "no_logprobs"
        assert raw.parse().choices[0].message.content == HEAVY_ANSWER
    warnings = [line for router in stack.routers for line in router.logs().splitlines()
                if "returned no log-probs" in line]
    assert len(warnings) == 1


def test_sentinel_logprobs_do_not_break_the_math(stack: Stack, fake: FakeUpstream) -> None:
    fake.script("sentinel", confident("steady answer text", sentinel=True))
    raw = stack.client().chat.completions.with_raw_response.create(
        model="auto", messages=ask("sentinel"), logprobs=True, top_logprobs=5)
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert raw.headers["X-Draft-Entropy"] == "0.050"


def test_models_health_ready_and_metrics(stack: Stack) -> None:
    models = [m.id for m in stack.client().models.list()]
    assert models[:3] == ["auto", "drafter", "heavyweight"]
    assert {"fake-drafter", "fake-heavy"} <= set(models)
    health = httpx.get(f"{stack.url}/health").json()
    assert health["status"] == "ok" and health["version"] and health["uptime_s"] >= 0
    ready = httpx.get(f"{stack.url}/ready")
    assert ready.status_code == 200 and ready.json()["routers"] == 1
    stack.client().chat.completions.create(model="auto", messages=ask("count me"))
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'draftgate_requests_total{decision="accept",status="200"}' in metrics
    router_metrics = httpx.get(f"{stack.routers[0].url}/metrics").text
    assert 'draftgate_router_decisions_total{decision="accept",tier="drafter"}' in router_metrics
