"""Degraded mode (routing.degraded_mode) through real gateway and router processes: a draft escalates
while the heavyweight is full (its cluster queue's one slot held by another router, or every deployment's
breaker open). serve_draft: the draft is served, marked X-Degraded: true (or, in a progressive stream
already under way, decision `degraded` in its last chunk), counted, and accounted; reject: 503
heavyweight_unavailable with Retry-After. A forced heavyweight request with the heavyweight full: 503."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from shared.keys import queue_slots
from shared.messages import DECISION_FIELD, ReplyKind
from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.router_replies import ask_router
from tests.integration.stack import Stack, ask, running_stack
from tests.support import free_port

# Aborted at its second token (early_token): nothing of it is shown, even in a progressive stream.
EARLY = Script(tokens=[" e0", " e1", " e2", " e3", " e4"], entropies=[0.1, 3.0, 3.0, 0.1, 0.1])
# Calm past the early-exit region (shown), then critical for good: the stream is under way when it escalates.
TURNING = Script(tokens=[f" w{i}" for i in range(40)], entropies=[0.05] * 20 + [2.3] * 20, tokens_per_s=100)
FULL = {"DRAFTGATE_HEAVYWEIGHT_CLUSTER_MAX_CONCURRENT": "1", "DRAFTGATE_HEAVYWEIGHT_QUEUE_TIMEOUT_S": "0.3",
        "DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "null",
        "DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK": "0.10", "DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK": "0.40",
        "DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK": "2.00", "DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK": "8.00"}


def hold_the_heavyweight(stack: Stack) -> None:
    """Another router's lease on the heavyweight's only slot, for ten minutes (on Redis's clock)."""
    client = redis.Redis.from_url(stack.redis_url)
    seconds, _ = client.time()
    client.zadd(queue_slots("heavyweight"), {"another-router:1": (seconds + 600) * 1000})


@pytest.fixture(scope="module")
def serving(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("degraded"), fake, **FULL) as stack:
        hold_the_heavyweight(stack)
        yield stack


@pytest.fixture(scope="module")
def rejecting(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("rejecting"), fake, **FULL,
                       DRAFTGATE_ROUTING_DEGRADED_MODE="reject") as stack:
        hold_the_heavyweight(stack)
        yield stack


def degraded_count(stack: Stack, reason: str) -> float:
    text = httpx.get(f"{stack.routers[0].url}/metrics", timeout=10).text
    found = re.search(rf'^draftgate_degraded_total\{{reason="{reason}",tier="heavyweight"\}} (\S+)$', text,
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_plain_escalation_with_the_heavyweight_full_serves_the_draft(serving: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", EARLY)
    before = degraded_count(serving, "queue_timeout")
    raw = serving.client().chat.completions.with_raw_response.create(model="auto", messages=ask("degrade me"))
    assert raw.headers["X-Degraded"] == "true"
    assert raw.headers["X-Routing-Decision"] == "degraded" and raw.headers["X-Routing-Tier"] == "drafter"
    assert raw.headers["X-Escalation-Reason"] == "early_token"
    assert raw.parse().choices[0].message.content == EARLY.text  # the drafter's whole answer
    assert degraded_count(serving, "queue_timeout") == before + 1
    assert not [seen for seen in fake.seen if seen.model == "fake-heavy"]  # never sent: no slot


def test_a_degraded_answer_accounts_the_aborted_draft_and_the_served_one(serving: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", EARLY)
    answer = ask_router(serving.redis_url, {"model": "auto", "messages": ask("degrade me")})
    assert answer.head.degraded and answer.head.decision == "degraded"
    assert answer.last.kind == ReplyKind.COMPLETION and answer.last.degraded
    aborted, served = answer.account.calls
    assert (aborted.role, aborted.tier, aborted.completion_tokens) == ("aborted_draft", "drafter", 2)
    assert (served.role, served.tier, served.completion_tokens) == ("draft", "drafter", len(EARLY.tokens))
    assert answer.account.cost_usd is not None and answer.account.cost_usd > 0


def test_a_stream_escalated_before_anything_was_shown_says_degraded_in_its_headers(serving: Stack,
                                                                                   fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", EARLY)
    with serving.client().chat.completions.with_streaming_response.create(
            model="auto", messages=ask("stream degraded"), stream=True) as response:
        assert response.headers["X-Degraded"] == "true"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EARLY.text
    assert json.loads(chunks[-1].model_dump_json())[DECISION_FIELD]["decision"] == "degraded"


def test_a_progressive_stream_under_way_is_continued_by_the_drafter(serving: Stack, fake: FakeUpstream) -> None:
    """The client has the calm part of the draft already; the drafter goes on past the seam (its
    continuation restates the shown text, which the seam drops): the client reads the whole draft."""
    fake.script_model("fake-drafter", TURNING)
    with serving.client().chat.completions.with_streaming_response.create(
            model="auto", messages=ask("long degraded"), stream=True) as response:
        assert response.headers["X-Routing-Decision"] == "progressive"
        assert "X-Degraded" not in response.headers  # sent before the draft turned
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TURNING.text
    decision = json.loads(chunks[-1].model_dump_json())[DECISION_FIELD]
    assert decision["decision"] == "degraded" and decision["tier"] == "drafter" and decision["seam_tokens"] > 0
    continuation = [seen for seen in fake.seen if seen.model == "fake-drafter"][-1]
    assert continuation.body["messages"][-2]["role"] == "assistant"  # the shown text, continued


def test_the_end_of_a_degraded_stream_carries_the_flag_and_the_account(serving: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", TURNING)
    answer = ask_router(serving.redis_url, {"model": "auto", "messages": ask("wire"), "stream": True})
    assert answer.last.kind == ReplyKind.END and answer.last.degraded
    draft, continuation = answer.account.calls
    assert draft.role == "draft" and continuation.role == "continuation"
    assert draft.tier == continuation.tier == "drafter"


def test_a_forced_heavyweight_request_with_the_heavyweight_full_is_503(serving: Stack) -> None:
    with pytest.raises(openai.InternalServerError) as refused:
        serving.client().chat.completions.create(model="heavyweight", messages=ask("forced"))
    assert refused.value.status_code == 503
    assert refused.value.code == "heavyweight_unavailable"
    assert int(refused.value.response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_reject_mode_answers_503_with_retry_after(rejecting: Stack, fake: FakeUpstream, stream: bool) -> None:
    fake.script_model("fake-drafter", EARLY)
    response = httpx.post(f"{rejecting.url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": "Bearer test-key"},
                          json={"model": "auto", "messages": ask("reject me"), "stream": stream})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "heavyweight_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert "X-Degraded" not in response.headers


def test_every_heavyweight_breaker_open_serves_the_draft(redis_server: str, fake: FakeUpstream,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two heavyweight deployments nobody listens on: the first escalation fails on both and opens their
    breakers (one failure each); the next finds no deployment able to take the call and serves the draft."""
    dead = [{"name": f"dead-{i}", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "gone"}
            for i in range(2)]
    with running_stack(redis_server, tmp_path_factory.mktemp("breakers"), fake,
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=json.dumps(dead), DRAFTGATE_HEAVYWEIGHT_BREAKER_FAILURES="1",
                       DRAFTGATE_HEAVYWEIGHT_RETRIES="1", DRAFTGATE_HEAVYWEIGHT_RETRY_BACKOFF_MS="1",
                       DRAFTGATE_ROUTING_SPECULATION_THRESHOLD="null") as stack:
        fake.script_model("fake-drafter", EARLY)
        first = httpx.post(f"{stack.url}/v1/chat/completions", timeout=30, headers={"Authorization": "Bearer k"},
                           json={"model": "auto", "messages": ask("breakers")})
        assert first.status_code == 502  # both deployments refused the connection: an upstream failure
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("breakers"))
        assert raw.headers["X-Degraded"] == "true"
        assert raw.parse().choices[0].message.content == EARLY.text
        assert degraded_count(stack, "unavailable") == 1


def test_an_accepted_draft_is_not_degraded(serving: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident("Calm and sure."))
    raw = serving.client().chat.completions.with_raw_response.create(model="auto", messages=ask("calm"))
    assert raw.headers["X-Routing-Decision"] == "accept" and "X-Degraded" not in raw.headers


def test_a_speculation_without_a_slot_costs_nothing_and_the_escalation_degrades(
        redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Speculation on, the heavyweight's slot held: the early heavyweight call is refused at once (it
    never waits), sends nothing and is not paid for; the escalation then waits its queue_timeout_s and
    serves the draft."""
    speculating = {key: value for key, value in FULL.items() if key != "DRAFTGATE_ROUTING_SPECULATION_THRESHOLD"}
    with running_stack(redis_server, tmp_path_factory.mktemp("speculating"), fake, **speculating) as stack:
        hold_the_heavyweight(stack)
        # Paced: the refusal (one Redis round trip) is in before the draft ends. A speculation cancelled
        # while still asking for its slot is charged its prompt, as any cancelled one (it may have been sent).
        fake.script_model("fake-drafter", Script(tokens=[f" a{i}" for i in range(15)], entropies=[1.5] * 15,
                                                 tokens_per_s=50))
        accepted = ask_router(stack.redis_url, {"model": "auto", "messages": ask("elevated")})
        assert accepted.head.decision == "accept"
        assert [call.role for call in accepted.account.calls] == ["draft"]
        fake.script_model("fake-drafter", Script(tokens=[f" d{i}" for i in range(30)],
                                                 entropies=[1.5] * 12 + [2.3] * 18))
        degraded = ask_router(stack.redis_url, {"model": "auto", "messages": ask("drift")})
        assert degraded.head.decision == "degraded" and degraded.last.degraded
        assert [call.role for call in degraded.account.calls] == ["aborted_draft", "draft"]
        assert degraded.text == "".join(f" d{i}" for i in range(30))
        assert not [seen for seen in fake.seen if seen.model == "fake-heavy"]


def test_a_heavyweight_saturated_by_real_traffic_serves_the_draft(redis_server: str, fake: FakeUpstream,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """No lease planted: a slow forced-heavyweight request holds the one slot through a router, and an
    escalation meanwhile is served degraded; once it is done, the next escalation reaches the heavyweight."""
    with running_stack(redis_server, tmp_path_factory.mktemp("saturated"), fake, **FULL) as stack:
        fake.script_model("fake-heavy", Script(tokens=[f" h{i}" for i in range(40)], tokens_per_s=10))
        fake.script_model("fake-drafter", EARLY)
        holder = threading.Thread(target=lambda: stack.client(timeout=60).chat.completions.create(
            model="heavyweight", messages=ask("hold the slot")))
        holder.start()
        fake.wait_for(lambda seen: any(s.model == "fake-heavy" for s in seen))
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("meanwhile"))
        assert raw.headers["X-Degraded"] == "true"
        assert raw.parse().choices[0].message.content == EARLY.text
        holder.join(60)
        fake.script_model("fake-heavy", confident("The heavyweight again."))
        raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("afterwards"))
        assert "X-Degraded" not in raw.headers and raw.headers["X-Routing-Decision"] == "escalate"
        assert raw.parse().choices[0].message.content == "The heavyweight again."


def test_a_heavyweight_at_its_rate_limit_serves_the_draft(redis_server: str, fake: FakeUpstream,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """rpm 1 on the heavyweight's one deployment (held in Redis for every router): the first escalation
    spends it; the next would wait about a minute, past the request's 30 s deadline, so the pool refuses
    at once (429) and the draft is served, reason rate_limited."""
    limited = [{"name": "heavy-limited", "base_url": fake.url, "model": "fake-heavy", "rpm": 1}]
    with running_stack(redis_server, tmp_path_factory.mktemp("rate-limited"), fake,
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=json.dumps(limited), DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="30",
                       DRAFTGATE_ROUTING_SPECULATION_THRESHOLD="null") as stack:
        fake.script_model("fake-drafter", EARLY)
        fake.script_model("fake-heavy", confident("Within the limit."))
        first = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("first"))
        assert first.headers["X-Routing-Decision"] == "escalate" and "X-Degraded" not in first.headers
        second = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("second"))
        assert second.headers["X-Degraded"] == "true"
        assert second.parse().choices[0].message.content == EARLY.text
        assert degraded_count(stack, "rate_limited") == 1
        assert len([seen for seen in fake.seen if seen.model == "fake-heavy"]) == 1
