"""Ledger records as the gateway emits them: one per finished request (answered, refused, failed),
read back from the Redis stream, with the fields the ledger service stores; and records kept while
Redis is down and written once it is back (a real redis-server killed and restarted by the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from services.gateway.auth import key_hash
from shared.keys import LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import LedgerRecord, decode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, start_stack
from tests.redis_servers import RedisServer

KEY = "ledger-key"
ANSWER = "Recorded and answered."
KEYS_ENV = {"DRAFTGATE_GATEWAY_API_KEYS_ENV": "LEDGER_TEST_KEYS", "LEDGER_TEST_KEYS": KEY}


def records(redis_url: str) -> dict[str, LedgerRecord]:
    client = redis.Redis.from_url(redis_url)
    found = {}
    for _, fields in client.xrange(LEDGER_STREAM):
        record = decode(LedgerRecord, fields[MESSAGE_FIELD])
        found[record.request_id] = record
    return found


def wait_for_records(redis_url: str, ids: set[str], timeout_s: float = 20) -> dict[str, LedgerRecord]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = records(redis_url)
        if ids <= found.keys():
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no ledger record for {sorted(ids - found.keys())} within {timeout_s} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(redis_server, tmp_path_factory.mktemp("ledger"), fake, **KEYS_ENV,
                          DRAFTGATE_GATEWAY_TEMPLATES='[{"id": "greet", "system": "Greet {name}."}]')
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident(ANSWER))


def client(stack: Stack, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)


def test_a_plain_answer_is_recorded_with_its_decision_and_key(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="auto", messages=ask("hello"), metadata={"template_id": "greet"},
        extra_body={"variables": {"name": "Ada"}, "session_id": "ledger-s1"}, extra_headers={"X-Request-ID": "plain-1"})
    raw.parse()
    record = wait_for_records(stack.redis_url, {"plain-1"})["plain-1"]
    assert record.status == 200
    assert record.decision == raw.headers["X-Routing-Decision"] == "accept"
    assert record.tier == "drafter"
    assert record.key_id == key_hash(KEY)
    assert record.tenant == key_hash(KEY)
    assert (record.template_id, record.session_id, record.model) == ("greet", "ledger-s1", "auto")
    assert record.cache == ""  # this gateway has no cache: nothing was looked up
    assert record.error == ""
    assert record.stream is False
    assert record.latency_ms is not None and record.latency_ms > 0
    assert record.draft_entropy is not None


def test_a_streamed_answer_is_recorded_with_its_final_decision_and_ttft(stack: Stack) -> None:
    with client(stack).chat.completions.with_streaming_response.create(
            model="auto", messages=ask("hello"), stream=True, extra_headers={"X-Request-ID": "stream-1"}) as response:
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == ANSWER
    record = wait_for_records(stack.redis_url, {"stream-1"})["stream-1"]
    assert record.status == 200
    assert record.stream is True
    assert record.decision == "accept"  # a progressive stream's decision, from its last chunk
    assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.latency_ms


@pytest.mark.parametrize(("request_id", "body", "key", "status", "error"), [
    ("bad-json", b"{nope", KEY, 400, "invalid_json"),
    ("bad-key", b'{"messages": [{"role": "user", "content": "hi"}]}', "nope", 401, "invalid_api_key"),
    ("no-model", b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}', KEY, 404, "model_not_found"),
    ("no-template", b'{"messages": [{"role": "user", "content": "hi"}], "metadata": {"template_id": "x"}}', KEY, 404,
     "template_not_found"),
    ("no-variable", b'{"messages": [{"role": "user", "content": "hi"}], "metadata": {"template_id": "greet"}}', KEY,
     400, "missing_template_variable"),
])
def test_a_refused_request_is_recorded_with_its_error(stack: Stack, request_id: str, body: bytes, key: str,
                                                      status: int, error: str) -> None:
    response = httpx.post(f"{stack.url}/v1/chat/completions", content=body,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                   "X-Request-ID": request_id})
    assert response.status_code == status
    record = wait_for_records(stack.redis_url, {request_id})[request_id]
    assert (record.status, record.error, record.decision) == (status, error, "error")


def test_each_request_has_exactly_one_record(stack: Stack) -> None:
    api = client(stack)
    ids = {f"count-{i}" for i in range(10)}
    for request_id in ids:
        api.chat.completions.create(model="auto", messages=ask("hello"), extra_headers={"X-Request-ID": request_id})
    wait_for_records(stack.redis_url, ids)
    stream_ids = [records for records in (decode(LedgerRecord, f[MESSAGE_FIELD]).request_id for _, f in
                                          redis.Redis.from_url(stack.redis_url).xrange(LEDGER_STREAM))]
    assert sorted(i for i in stream_ids if i in ids) == sorted(ids)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def private_redis(redis_flavour: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_flavour).start()
    yield server
    server.close()


def test_records_made_while_redis_is_down_reach_the_stream_once_it_is_back(
        private_redis: RedisServer, fake: FakeUpstream, tmp_path: Path) -> None:
    stack = start_stack(private_redis.url, tmp_path, fake, **KEYS_ENV, DRAFTGATE_BUS_OUTAGE_GRACE_S="1",
                        DRAFTGATE_REDIS_RETRIES="1")
    try:
        api = client(stack)
        api.chat.completions.create(model="auto", messages=ask("hello"), extra_headers={"X-Request-ID": "before"})
        wait_for_records(stack.redis_url, {"before"})
        private_redis.kill()
        down = [f"down-{i}" for i in range(3)]
        for request_id in down:  # the bus is down: each is a 503, and each is recorded in the gateway
            with pytest.raises(openai.APIStatusError) as caught:
                api.chat.completions.create(model="auto", messages=ask("hello"),
                                            extra_headers={"X-Request-ID": request_id})
            assert caught.value.status_code == 503
        private_redis.start()  # back, and empty: the records kept in the gateway are written to it
        found = wait_for_records(stack.redis_url, set(down), timeout_s=30)
        assert all(found[i].status == 503 and found[i].error == "bus_unavailable" for i in down)
        assert metric(stack.url, "draftgate_ledger_records_total") >= 1
        dropped = [line for line in httpx.get(f"{stack.url}/metrics").text.splitlines()
                   if line.startswith('draftgate_ledger_records_total{result="dropped"}')]
        assert all(line.endswith(" 0.0") for line in dropped)
    finally:
        stack.stop()
