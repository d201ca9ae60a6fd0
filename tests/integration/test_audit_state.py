"""The audit's Redis side on both supported Redis versions: the daily budget (atomic reservations that
routers auditing at once cannot overshoot together), the verdict windows and their scopes, and the
auditor's consumer loop end to end against a fake heavyweight that judges: samples audited, labelled,
acked; one left pending by an auditor that died is taken over by another."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.router.audit import store
from services.router.audit.auditor import Auditor
from services.router.audit.budget import KEEP_S, Budget, utc_day
from services.router.audit.metrics import create_audit_metrics
from services.router.queue import Bound, ClusterQueue
from services.router.upstream import create_tier
from shared import bus
from shared.config import load_config
from shared.keys import AUDIT_GROUP, AUDIT_LABELLED_STREAM, AUDIT_STREAM, MESSAGE_FIELD, audit_spend
from shared.messages import AuditLabel, AuditSample, decode, encode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.redis_flavours

NOW = 1_800_000_000.0  # a fixed UTC day


async def test_reservations_stop_at_the_daily_budget_even_when_made_at_once(redis_client: Redis):
    budgets = [Budget(redis_client, 1.0) for _ in range(4)]  # four routers
    taken = await asyncio.gather(*(budgets[i % 4].reserve(0.1, NOW) for i in range(25)))
    assert sum(r is not None for r in taken) == 10
    key = audit_spend(utc_day(NOW))
    assert float(await redis_client.get(key)) == pytest.approx(1.0)
    assert 0 < await redis_client.ttl(key) <= KEEP_S
    # A call that cost less than reserved gives the rest back; the next reservation fits again.
    reservation = next(r for r in taken if r is not None)
    await budgets[0].settle(reservation, 0.04)
    assert await budgets[1].spent(NOW) == pytest.approx(0.94)
    assert await budgets[2].reserve(0.05, NOW) is not None
    assert await budgets[2].reserve(0.05, NOW) is None
    # Each UTC day has its own counter; a budget of 0 audits nothing.
    assert await budgets[3].reserve(0.1, NOW + 86_400) is not None
    assert await Budget(redis_client, 0.0).reserve(0.0, NOW + 86_400) is None


def entry(verdict: str, tenant: str = "", category: str = "", n: int = 0) -> dict[str, Any]:
    return {"request_id": f"r{n}", "time": NOW + n, "tenant": tenant, "category": category, "verdict": verdict}


async def test_windows_keep_the_last_verdicts_per_scope_and_a_tenant_sees_only_its_own(redis_client: Redis):
    for n in range(6):
        await store.record(redis_client, "agree" if n < 4 else "disagree", 3,
                           entry("agree" if n < 4 else "disagree", "acme", "math", n))
    await store.record(redis_client, "disagree", 3, entry("disagree", "globex", "", 6))
    await store.record(redis_client, "skipped_budget", 3)
    everything = await store.snapshot(redis_client)
    assert [r["request_id"] for r in everything.recent] == ["r6", "r5", "r4"]  # the window: newest 3
    assert everything.overall == store.Rate(3, 3)
    assert everything.tenants == {"acme": store.Rate(3, 2), "globex": store.Rate(1, 1)}
    assert everything.categories == {"math": store.Rate(3, 2)}
    assert everything.counts == {"agree": 4, "disagree": 3, "skipped_budget": 1}
    acme = await store.snapshot(redis_client, "acme")
    assert acme.overall == store.Rate(3, 2) and {r["tenant"] for r in acme.recent} == {"acme"}
    assert acme.categories == {} and acme.counts == {}
    assert (await store.snapshot(redis_client, "nobody")).overall == store.Rate(0, 0)
    # A scope gone quiet expires (its window, then its name), and its gauge with it.
    assert 0 < await redis_client.ttl(store.scope_key("tenant:globex")) <= store.SCOPE_KEEP_S
    await redis_client.delete(store.scope_key("tenant:globex"))  # as if SCOPE_KEEP_S had passed
    quiet = await store.snapshot(redis_client)
    assert "globex" not in quiet.tenants and quiet.gone == ["tenant:globex"]
    await store.prune(redis_client, quiet.gone)
    assert (await store.snapshot(redis_client)).gone == [] and await redis_client.hexists(store.AUDIT_SCOPES,
                                                                                          "tenant:acme")


@pytest.fixture(scope="module")
def heavyweight() -> Any:
    with FakeUpstream(default=confident("Canberra is the capital of Australia.")) as upstream:
        yield upstream


@pytest.fixture
async def auditors(redis_client: Redis, heavyweight: FakeUpstream) -> AsyncIterator[Callable[..., Auditor]]:
    """Auditors on the fake heavyweight, without an embedder: with the judge on, the judge decides."""
    heavyweight.reset()
    config = load_config(env={"DRAFTGATE_HEAVYWEIGHT_BASE_URL": heavyweight.url,
                              "DRAFTGATE_HEAVYWEIGHT_MODEL": "fake-heavy",
                              "DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK": "2",
                              "DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK": "8",
                              "DRAFTGATE_AUDIT_JUDGE": "true"})
    tier = create_tier("heavyweight", config.heavyweight, {})
    started: list[Auditor] = []

    def start(name: str, reclaim_idle_ms: int = 15_000, queue: ClusterQueue | None = None) -> Auditor:
        auditor = Auditor(redis_client, tier, config.audit,
                          dataclasses.replace(config.bus, reclaim_idle_ms=reclaim_idle_ms, reclaim_interval_ms=100),
                          name, create_audit_metrics(CollectorRegistry(), config.audit.alert_disagreement_rate),
                          queue=queue)
        auditor.start()
        started.append(auditor)
        return auditor

    yield start
    for auditor in started:
        await auditor.shutdown()
    await tier.client.close()


def sample(request_id: str, question: str, draft: str) -> AuditSample:
    tokens = [{"token": word, "logprob": -0.01, "top_logprobs": [-0.01, -5.0]} for word in draft.split()]
    return AuditSample(request_id=request_id, body={"messages": [{"role": "user", "content": question}]},
                       text=draft, tokens=tokens, top_k=2, model="drafter", tenant="acme", time=time.time())


async def labels(redis: Redis, count: int, timeout_s: float = 30.0) -> list[AuditLabel]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [decode(AuditLabel, fields[MESSAGE_FIELD]) for _, fields in await redis.xrange(AUDIT_LABELLED_STREAM)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_the_auditor_labels_samples_by_the_judge_and_acks_them(redis_client: Redis,
                                                                    heavyweight: FakeUpstream,
                                                                    auditors: Callable[..., Auditor]):
    heavyweight.script("Answer:\nSydney", confident('{"score": 1, "reasoning": "Canberra is."}'))
    heavyweight.script("Answer:\nCanberra", confident('{"score": 5, "reasoning": "right"}'))
    auditor = auditors("router-a")
    await bus.publish(redis_client, AUDIT_STREAM, encode(sample("r1", "Capital of Australia?", "Sydney.")), 100)
    await bus.publish(redis_client, AUDIT_STREAM, encode(sample("r2", "Capital of Australia?", "Canberra.")), 100)
    found = {label.request_id: label for label in await labels(redis_client, 2)}
    assert (found["r1"].verdict, found["r1"].method, found["r1"].judge_score) == ("disagree", "judge", 1)
    assert (found["r2"].verdict, found["r2"].judge_score) == ("agree", 5)
    assert found["r1"].grade["correct"] is False and found["r2"].grade["correct"] is True
    assert (await redis_client.xpending(AUDIT_STREAM, AUDIT_GROUP))["pending"] == 0
    # Each audit paid the heavyweight's answer and the judge's estimated call, within the day's budget.
    assert await auditor.budget.spent(time.time()) > 0
    assert await until(lambda: auditor.metrics.rate._value.get() == 0.5)  # the gauge follows Redis
    assert auditor.metrics.audits.labels("disagree")._value.get() == 1


async def test_a_sample_left_by_a_dead_auditor_is_taken_over(redis_client: Redis, heavyweight: FakeUpstream,
                                                            auditors: Callable[..., Auditor]):
    heavyweight.script("Answer:\nSydney", confident('{"score": 2, "reasoning": "no"}'))
    await bus.ensure_group(redis_client, AUDIT_STREAM, AUDIT_GROUP)
    await bus.publish(redis_client, AUDIT_STREAM, encode(sample("r9", "Capital of Australia?", "Sydney.")), 100)
    taken = await bus.read_group(redis_client, AUDIT_STREAM, AUDIT_GROUP, "router-dead", 10, 100)
    assert len(taken) == 1  # read, never acked: its auditor died
    auditors("router-b", reclaim_idle_ms=200)
    [label] = await labels(redis_client, 1)
    assert label.request_id == "r9" and label.verdict == "disagree"
    assert (await redis_client.xpending(AUDIT_STREAM, AUDIT_GROUP))["pending"] == 0


async def test_the_audit_yields_to_live_traffic_when_the_heavyweights_cluster_queue_is_full(
        redis_client: Redis, heavyweight: FakeUpstream, auditors: Callable[..., Auditor]):
    live = ClusterQueue(redis_client, {"heavyweight": Bound(1, 5.0)}, "router-live")
    lease = await live.acquire("heavyweight")  # the one slot, held by a live request
    mine = ClusterQueue(redis_client, {"heavyweight": Bound(1, 5.0)}, "router-c")
    auditor = auditors("router-c", queue=mine)
    try:
        await bus.publish(redis_client, AUDIT_STREAM, encode(sample("r5", "Capital of Australia?", "Sydney.")), 100)
        assert await until(lambda: auditor.metrics.audits.labels("skipped_busy")._value.get() == 1)
        assert heavyweight.seen == []  # never called past the queue
        assert await auditor.budget.spent(time.time()) == 0.0  # the reservation given back
        assert (await redis_client.xpending(AUDIT_STREAM, AUDIT_GROUP))["pending"] == 0
    finally:
        await live.release(lease)
    # A free slot: the next sample is audited, holding it while the heavyweight answers.
    heavyweight.script("Answer:\nSydney", confident('{"score": 1, "reasoning": "no"}'))
    await bus.publish(redis_client, AUDIT_STREAM, encode(sample("r6", "Capital of Australia?", "Sydney.")), 100)
    [label] = await labels(redis_client, 1)
    assert label.request_id == "r6" and label.verdict == "disagree"
