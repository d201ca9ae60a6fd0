"""End to end on the real local model: llama.cpp serving SmolLM2, then the real router and gateway.

The model server is started once per module the way `make run` starts it (scripts.local_model);
gateway and router are fresh per test on a clean Redis database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import Service, free_port

pytestmark = pytest.mark.real_model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TOP_K = 5


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The llama.cpp server, found and started by scripts.local_model from the tier config."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    env = {"DRAFTGATE_DRAFTER_BASE_URL": url, "DRAFTGATE_DRAFTER_MODEL": "smollm2",
           "DRAFTGATE_HEAVYWEIGHT_BASE_URL": url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "smollm2"}
    log = tmp_path_factory.mktemp("model") / "model.log"
    server = Service("scripts.local_model", env, port, log).start(wait_path="/v1/models", timeout_s=180)
    yield url
    server.stop()


@pytest.fixture
def gateway_url(model_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A real router and gateway in front of the local model, on a clean Redis database."""
    env = {
        "DRAFTGATE_REDIS_URL": redis_url,
        "DRAFTGATE_DRAFTER_BASE_URL": model_url, "DRAFTGATE_DRAFTER_MODEL": "smollm2",
        "DRAFTGATE_HEAVYWEIGHT_BASE_URL": model_url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "smollm2",
        "DRAFTGATE_GATEWAY_PORT": str(free_port()), "DRAFTGATE_ROUTER_PORT": str(free_port()),
        "DRAFTGATE_GATEWAY_CACHE_URL": "null",
    }
    router = Service("services.router", env, int(env["DRAFTGATE_ROUTER_PORT"]), tmp_path / "router.log").start()
    try:
        gateway = Service("services.gateway", env, int(env["DRAFTGATE_GATEWAY_PORT"]),
                          tmp_path / "gateway.log").start()
        yield f"{gateway.url}/v1"
        gateway.stop()
    finally:
        router.stop()


@pytest.fixture
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url, api_key="unused", max_retries=0, timeout=120) as client:
        yield client


def test_the_model_server_streams_top_logprobs_for_every_token(model_url: str):
    with openai.OpenAI(base_url=model_url, api_key="unused", max_retries=0, timeout=120) as direct:
        stream = direct.chat.completions.create(model="smollm2", messages=QUESTION, stream=True, max_tokens=8,
                                                temperature=0, logprobs=True, top_logprobs=TOP_K)
        tokens = [entry for chunk in stream if chunk.choices and chunk.choices[0].logprobs
                  for entry in chunk.choices[0].logprobs.content or []]
    assert tokens
    assert all(1 <= len(token.top_logprobs) <= TOP_K + 1 for token in tokens)
    assert all(alt.logprob <= 0 for token in tokens for alt in token.top_logprobs)


def test_a_short_factual_question_is_answered_with_the_routing_headers(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION, max_tokens=24,
                                                           temperature=0)
    completion = raw.parse()
    assert "paris" in (completion.choices[0].message.content or "").lower()
    assert raw.headers["x-routing-decision"] in ("accept", "escalate")
    assert raw.headers["x-request-id"]
    assert float(raw.headers["x-request-duration-ms"]) >= 0
    entropy = float(raw.headers["x-draft-entropy"])
    assert 0 <= entropy <= math.log2(TOP_K)


def test_streaming_through_draftgate_yields_chunks_of_one_answer(client: openai.OpenAI):
    stream = client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=24, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "paris" in text.lower()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])


def test_raw_stream_is_well_formed_server_sent_events_ending_in_done(gateway_url: str):
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 16, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{gateway_url}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-routing-decision"] in ("accept", "escalate")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
