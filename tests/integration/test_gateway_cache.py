"""The semantic cache seen from the client: real gateway, router, cache and embedder processes,
the real MiniLM model, Redis and embedded Qdrant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from shared.config import CacheConfig
from tests.fakes.scripts import confident, uncertain
from tests.fakes.upstream import FakeUpstream
from tests.integration.cache_helpers import written
from tests.integration.raw_client import assert_logged_no_error, open_request, read_until, reset
from tests.integration.stack import Stack, running_cached_stack
from tests.support import Service

SYSTEM = "You are a concise geography assistant."
FIRST = "what's the capital city of France"
PARAPHRASE = "What is the capital of France?"
ANSWER = "Paris is the capital of France."


def chat(question: str, system: str = SYSTEM) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def cached_stack(redis_server: str, fake: FakeUpstream,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Service]]:
    with running_cached_stack(redis_server, tmp_path_factory.mktemp("cached"), fake) as running:
        yield running


def empty_cache(stack: Stack) -> None:
    """Flush once the cache writer has stored what earlier tests queued: a write still on the
    stream would land after the flush."""
    asyncio.run(_written(stack.redis_url))
    httpx.post(f"{stack.url}/cache/flush", timeout=10).raise_for_status()


async def _written(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await written(redis)
    finally:
        await redis.aclose()


def wait_for_entries(stack: Stack, count: int, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = httpx.get(f"{stack.url}/cache/stats", timeout=10).json()
        if stats_entries(stats) >= count or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def stats_entries(stats: dict) -> int:
    return int(stats["exact"]["entries"])


def test_accepted_answers_are_served_again_from_the_cache(cached_stack: tuple[Stack, Service],
                                                          fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    empty_cache(stack)
    fake.script("capital", confident(ANSWER))
    client = stack.client()
    first = client.chat.completions.with_raw_response.create(model="auto", messages=chat(FIRST))
    assert first.headers["X-Routing-Decision"] == "accept"
    assert wait_for_entries(stack, 1)["exact"]["entries"] >= 1
    upstream_calls = len(fake.seen)

    again = client.chat.completions.with_raw_response.create(model="auto", messages=chat(FIRST))
    assert (again.headers["X-Routing-Decision"], again.headers["X-Cache"]) == ("cache_hit", "exact")
    assert again.headers["X-Cache-Similarity"] == "1.0000"
    assert again.headers["X-Draft-Entropy"] == "0.000" and "X-Request-ID" in again.headers
    completion = again.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None and completion.usage.total_tokens == 0

    assert "X-Cache-Verified" not in again.headers  # the same normalised request needs no verifier

    paraphrased = client.chat.completions.with_raw_response.create(model="auto", messages=chat(PARAPHRASE))
    assert (paraphrased.headers["X-Routing-Decision"], paraphrased.headers["X-Cache"]) == ("cache_hit", "semantic")
    assert CacheConfig().similarity_floor <= float(paraphrased.headers["X-Cache-Similarity"]) <= 1.0
    assert paraphrased.headers["X-Cache-Verified"] == CacheConfig().verify
    assert paraphrased.parse().choices[0].message.content == ANSWER

    stream = client.chat.completions.with_raw_response.create(
        model="auto", messages=chat(PARAPHRASE), stream=True, stream_options={"include_usage": True})
    assert stream.headers["X-Routing-Decision"] == "cache_hit"
    chunks = list(stream.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 0
    assert len(fake.seen) == upstream_calls  # no model was called for any of the hits

    other_context = client.chat.completions.with_raw_response.create(
        model="auto", messages=chat(FIRST, system="You are a pirate."))
    assert other_context.headers["X-Routing-Decision"] == "accept"


def test_cache_control_skips_lookups_and_stores(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    empty_cache(stack)
    client = stack.client()
    client.chat.completions.create(model="auto", messages=chat("Name a river in Spain."),
                                   extra_headers={"Cache-Control": "no-store"})
    client.chat.completions.create(model="auto", messages=chat("Name a river in Italy."))
    stats = wait_for_entries(stack, 1)
    assert stats_entries(stats) == 1  # only the second one
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=chat("Name a river in Italy."),
                                                           extra_headers={"Cache-Control": "no-cache"})
    assert raw.headers["X-Routing-Decision"] == "accept"


def test_escalated_answers_are_never_stored(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    empty_cache(stack)
    fake.script("philosophy", uncertain("it depends on many things", bits=2.3))
    client = stack.client()
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=chat("philosophy of rivers"))
        assert raw.headers["X-Routing-Decision"] == "escalate"
    time.sleep(1.0)
    assert stats_entries(httpx.get(f"{stack.url}/cache/stats", timeout=10).json()) == 0


def test_a_cache_outage_degrades_to_misses(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    stack, cache = cached_stack
    cache.stop()
    try:
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=chat(FIRST))
        assert raw.headers["X-Routing-Decision"] == "accept"
        assert httpx.get(f"{stack.url}/cache/stats", timeout=10).status_code == 503
        metrics = httpx.get(f"{stack.url}/metrics").text
        assert 'draftgate_gateway_cache_lookups_total{result="error"}' in metrics
    finally:
        cache.start(timeout_s=60)


def test_operator_endpoints_are_proxied(cached_stack: tuple[Stack, Service]) -> None:
    stack, _ = cached_stack
    stats = httpx.get(f"{stack.url}/cache/stats", timeout=10)
    assert stats.status_code == 200 and "semantic" in stats.json()
    flushed = httpx.post(f"{stack.url}/cache/flush", json={"tenant": "nobody"}, timeout=10)
    assert flushed.status_code == 200 and "flushed" in flushed.json()
    bad = httpx.post(f"{stack.url}/cache/flush", content=b"{oops", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_cache_hits_name_their_tier_and_survive_clients_that_reset(cached_stack: tuple[Stack, Service],
                                                                  fake: FakeUpstream) -> None:
    """Every answer carries the README's headers, hits included (the cache holds accepted drafts:
    X-Routing-Tier is drafter); a client resetting its connection around a hit, plain or streamed,
    is no error and leaves the gateway answering."""
    stack, _ = cached_stack
    empty_cache(stack)
    question = chat("Which river flows through Paris?")
    client = stack.client()
    assert client.chat.completions.with_raw_response.create(
        model="auto", messages=question).headers["X-Routing-Decision"] == "accept"
    wait_for_entries(stack, 1)
    upstream_calls = len(fake.seen)
    for stream in (False, True):
        hit = client.chat.completions.with_raw_response.create(model="auto", messages=question, stream=stream)
        assert {name: hit.headers[name] for name in ("X-Routing-Decision", "X-Routing-Tier", "X-Speculation",
                                                     "X-Draft-Entropy")} == {
            "X-Routing-Decision": "cache_hit", "X-Routing-Tier": "drafter", "X-Speculation": "none",
            "X-Draft-Entropy": "0.000"}
        assert "X-Request-ID" in hit.headers and "X-Request-Duration-Ms" in hit.headers
    for attempt in range(30):
        sock = open_request(stack, {"model": "auto", "messages": question, "stream": attempt % 2 == 1})
        if attempt % 3 == 2:
            read_until(sock, b"HTTP/1.1 200")
        reset(sock)
    again = client.chat.completions.with_raw_response.create(model="auto", messages=question, stream=True)
    assert again.headers["X-Routing-Decision"] == "cache_hit" and list(again.parse())
    assert len(fake.seen) == upstream_calls
    assert_logged_no_error(stack)


def test_a_near_miss_is_answered_by_the_model_not_from_the_cache(cached_stack: tuple[Stack, Service],
                                                                 fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    empty_cache(stack)
    fake.script("miles", confident("100 miles is 160.9 kilometers."))
    client = stack.client()
    stored = client.chat.completions.with_raw_response.create(model="auto",
                                                              messages=chat("Convert 100 miles to kilometers"))
    assert stored.headers["X-Routing-Decision"] == "accept"
    _drain(stack)
    fake.script("kilometers to", confident("100 kilometers is 62.1 miles."))

    swapped = client.chat.completions.with_raw_response.create(model="auto",
                                                               messages=chat("Convert 100 kilometers to miles"))

    assert swapped.headers["X-Routing-Decision"] == "accept" and "X-Cache" not in swapped.headers
    assert swapped.parse().choices[0].message.content == "100 kilometers is 62.1 miles."
    assert sum(cache_stats(stack)["semantic"]["rejected"].values()) >= 1


def test_an_accepted_miss_costs_one_embedding(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    """Counted by the real embedder: its lookup embeds the question, the write of the accepted
    draft reuses that vector."""
    stack, cache = cached_stack
    empty_cache(stack)
    embedder = cache.env["DRAFTGATE_CACHE_EMBEDDER_URL"]
    before = embedder_counts(embedder)
    client = stack.client()
    questions = ["Name a lake in Finland.", "Name a desert in Chile.", "Name a volcano in Iceland."]
    for question in questions:
        assert client.chat.completions.with_raw_response.create(
            model="auto", messages=chat(question)).headers["X-Routing-Decision"] == "accept"
    _drain(stack)
    assert cache_stats(stack)["semantic"]["entries"] == len(questions)

    after = embedder_counts(embedder)
    assert (after[0] - before[0], after[1] - before[1]) == (len(questions), len(questions))  # requests, inputs


def test_semantic_hits_confirmed_by_the_drafter_say_so(cached_stack: tuple[Stack, Service],
                                                       fake: FakeUpstream) -> None:
    stack, cache = cached_stack
    empty_cache(stack)
    restart(cache, DRAFTGATE_CACHE_VERIFY_DRAFTER="true", DRAFTGATE_CACHE_VERIFY_DRAFTER_TIMEOUT_S="10")
    try:
        fake.script("Do these two requests ask for the same answer", confident("Yes"))
        client = stack.client()
        client.chat.completions.create(model="auto", messages=chat(FIRST))
        _drain(stack)

        hit = client.chat.completions.with_raw_response.create(model="auto", messages=chat(PARAPHRASE))

        verified = f"{CacheConfig().verify}+drafter"
        assert (hit.headers["X-Cache"], hit.headers["X-Cache-Verified"]) == ("semantic", verified)
        assert sum(1 for seen in fake.seen if seen.body.get("max_tokens") == 1) == 1
    finally:
        restart(cache, DRAFTGATE_CACHE_VERIFY_DRAFTER=None, DRAFTGATE_CACHE_VERIFY_DRAFTER_TIMEOUT_S=None)


def restart(service: Service, **env: str | None) -> None:
    """Start the service again with these variables set (None: removed)."""
    service.stop()
    for name, value in env.items():
        if value is None:
            service.env.pop(name, None)
        else:
            service.env[name] = value
    service.start(timeout_s=60)


def cache_stats(stack: Stack) -> dict:
    return httpx.get(f"{stack.url}/cache/stats", timeout=10).json()


def _drain(stack: Stack) -> None:
    asyncio.run(_written(stack.redis_url))


def embedder_counts(url: str) -> tuple[float, float]:
    """The embedder's own count of POST /v1/embeddings answered and of strings embedded."""
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith(("draftgate_embedder_requests_total", "draftgate_embedder_inputs_total"))}
    return values["draftgate_embedder_requests_total"], values["draftgate_embedder_inputs_total"]
