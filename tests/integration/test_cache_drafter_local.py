"""The drafter check against the real local model: SmolLM2 served by llama.cpp, as `make run` starts it.

What a 135M model answers is not ours to assert; what we assert is that its real log-probs are
read (a probability, not "unavailable"), and that the cache serves a would-be hit exactly when that
probability reaches cache.verify_drafter_min_prob.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from services.cache.app import create_app
from services.cache.drafter_verify import create_drafter_check
from services.cache.keys import request_keys
from shared.config import CacheConfig, UpstreamConfig
from tests.integration.cache_helpers import cache_config, chat, remember, written
from tests.integration.minilm import embedder_app
from tests.integration.test_local_model import model_url  # noqa: F401 - the module-scoped llama.cpp server

pytestmark = pytest.mark.real_model

STORED, ASKED = "What is the capital of Japan?", "Which city is Japan's capital?"
TIMEOUT_S = 30.0  # a busy 2-core machine: the model may queue behind other work


def semantic(text: str) -> str:
    form = request_keys(chat(text), "").semantic_text
    assert form is not None
    return form


async def test_the_real_models_logprobs_give_a_probability_that_decides(model_url: str) -> None:  # noqa: F811
    tier = UpstreamConfig(base_url=model_url, model="smollm2")
    probe = create_drafter_check(tier, min_prob=0.9, timeout_s=TIMEOUT_S, env={})
    try:
        probability = await probe.yes_probability(semantic(ASKED), semantic(STORED))
        assert probability is not None and 0.0 <= probability <= 1.0
        below = dataclasses.replace(probe, min_prob=max(probability - 0.01, 0.0))
        above = dataclasses.replace(probe, min_prob=probability + 0.01)
        assert (await below.check(semantic(ASKED), semantic(STORED))).reason == "passed"
        assert (await above.check(semantic(ASKED), semantic(STORED))).reason == "drafter_no"
    finally:
        await probe.close()


async def test_the_cache_serves_a_would_be_hit_only_on_the_real_drafters_confident_yes(
        model_url: str, aiohttp_client, aiohttp_server, redis_url: str, redis_client: Redis,  # noqa: F811
        tmp_path: Path) -> None:
    embedder: TestServer = await aiohttp_server(embedder_app())
    config = cache_config(redis_url, embedder_url=str(embedder.make_url("")).rstrip("/"),
                          qdrant_path=str(tmp_path / "q"))
    config = dataclasses.replace(config, drafter=UpstreamConfig(base_url=model_url, model="smollm2"),
                                 cache=dataclasses.replace(config.cache, verify_drafter=True,
                                                           verify_drafter_timeout_s=TIMEOUT_S))
    cache = await aiohttp_client(create_app(config))
    await remember(redis_client, chat(STORED), "Tokyo.")
    await written(redis_client)
    probe = create_drafter_check(config.drafter, config.cache.verify_drafter_min_prob, TIMEOUT_S, env={})
    try:
        probability = await probe.yes_probability(semantic(ASKED), semantic(STORED))
    finally:
        await probe.close()
    assert probability is not None

    response = await cache.post("/lookup", json={"body": chat(ASKED), "timeout_s": 2 * TIMEOUT_S})
    found = await response.json()

    rejected = (await (await cache.get("/cache/stats")).json())["semantic"]["rejected"]
    if probability >= CacheConfig().verify_drafter_min_prob:
        assert (found["hit"], found["verified"]) == (True, f"{CacheConfig().verify}+drafter")
        assert rejected == {}
    else:
        assert found == {"hit": False}
        assert rejected == {"drafter_no": 1}
