"""Sessions and the cache, through real gateway, router, cache and embedder processes: a session's
turn answered from the cache is still saved and marked, the ledger records the hit, and a question
asked inside a conversation is never answered from an entry made without that conversation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from shared.keys import LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import Account, LedgerRecord, decode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, running_cached_stack
from tests.support import Service

QUESTION = "what's the capital city of France"
ANSWER = "Paris is the capital of France."
LATER = "And its population?"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def cached_stack(redis_server: str, fake: FakeUpstream,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Service]]:
    with running_cached_stack(redis_server, tmp_path_factory.mktemp("sessions-cache"), fake) as running:
        yield running


def wait_for_an_entry(stack: Stack, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while int(httpx.get(f"{stack.url}/cache/stats", timeout=10).json()["exact"]["entries"]) < 1:
        assert time.monotonic() < deadline, "the accepted answer was not cached"
        time.sleep(0.1)


def ledger_record(stack: Stack, request_id: str, timeout_s: float = 20) -> LedgerRecord:
    deadline = time.monotonic() + timeout_s
    while True:
        for _, fields in redis.Redis.from_url(stack.redis_url).xrange(LEDGER_STREAM):
            record = decode(LedgerRecord, fields[MESSAGE_FIELD])
            if record.request_id == request_id:
                return record
        assert time.monotonic() < deadline, f"no ledger record for {request_id}"
        time.sleep(0.05)


def cached_question(stack: Stack, fake: FakeUpstream) -> openai.OpenAI:
    """QUESTION asked once without a session and its answer in the cache; the client that asked it."""
    fake.script("capital", confident(ANSWER))
    client = stack.client()
    client.chat.completions.create(model="auto", messages=[user(QUESTION)])  # no session: cached
    wait_for_an_entry(stack)
    return client


def test_a_session_turn_from_the_cache_is_saved_and_recorded(cached_stack: tuple[Stack, Service],
                                                              fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    fake.script("population", confident("About two million."))
    client = cached_question(stack, fake)

    # A new session's first turn is the same request: served from the cache, and still a turn of the session.
    hit = client.chat.completions.with_raw_response.create(model="auto", messages=[user(QUESTION)],
                                                           extra_body={"session_id": "from-cache"},
                                                           extra_headers={"X-Request-ID": "session-hit"})
    assert (hit.headers["X-Routing-Decision"], hit.headers["X-Cache"]) == ("cache_hit", "exact")
    assert hit.headers["X-Session-Id"] == "from-cache"
    assert hit.parse().model_extra["session_id"] == "from-cache"
    record = ledger_record(stack, "session-hit")
    assert (record.decision, record.cache, record.session_id, record.status) == ("cache_hit", "exact",
                                                                                   "from-cache", 200)
    assert record.account is not None and Account.from_wire(record.account).cost_usd == 0.0

    # A streamed hit is marked on every chunk too.
    with client.chat.completions.with_streaming_response.create(model="auto", messages=[user(QUESTION)], stream=True,
                                                                extra_body={"session_id": "streamed-hit"}) as streamed:
        assert streamed.headers["X-Routing-Decision"] == "cache_hit"
        assert all(chunk.model_extra["session_id"] == "streamed-hit" for chunk in streamed.parse())

    client.chat.completions.create(model="auto", messages=[user(LATER)], extra_body={"session_id": "from-cache"})
    (later,) = [seen for seen in fake.seen if seen.body["messages"][-1] == user(LATER)]
    assert later.body["messages"] == [user(QUESTION), {"role": "assistant", "content": ANSWER}, user(LATER)]


def test_a_question_inside_a_conversation_is_not_served_from_a_bare_entry(cached_stack: tuple[Stack, Service],
                                                                          fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    fake.script("Japan", confident("Japan is an island nation."))
    client = cached_question(stack, fake)
    client.chat.completions.create(model="auto", messages=[user("Tell me about Japan")],
                                   extra_body={"session_id": "about-japan"})
    inside = client.chat.completions.with_raw_response.create(model="auto", messages=[user(QUESTION)],
                                                              extra_body={"session_id": "about-japan"})
    assert inside.headers["X-Routing-Decision"] != "cache_hit"
    assert "X-Cache" not in inside.headers
