"""The closed-loop audit through real processes: a gateway and a router on a private Redis, the MiniLM
embedder service, and two fake upstreams, a drafter that is confidently wrong on marked prompts and a
heavyweight that knows better (and judges, where a test scripts its verdict).

Every accepted draft is sampled (audit.sample_rate 1.0, the judge on); the auditor flags the wrong
ones, the disagreement gauge rises, GET /v1/system/audit shows the verdicts (a client key its own
tenant's only), the labelled traces are calibration records, the audit never delays an answer (a held
heavyweight holds only the audit), the budget stops it, no-store and opted-out requests are never
sampled, and client feedback is published and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from services.gateway.auth import key_hash
from services.router.audit.budget import utc_day
from services.router.calibration.grade import Grade
from services.router.calibration.traces import Trace
from shared.keys import AUDIT_GROUP, AUDIT_LABELLED_STREAM, AUDIT_STREAM, FEEDBACK_STREAM, MESSAGE_FIELD, audit_spend
from shared.messages import AuditLabel, AuditSample, Feedback, decode
from tests.fakes.scripts import confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.conftest import DEFAULT_ANSWER
from tests.integration.stack import Stack, ask, start_stack
from tests.support import Service, free_port

T = TypeVar("T")
CLIENT_KEY, OTHER_KEY, ADMIN_KEY = "test-key", "other-key", "admin-key"
TENANT = key_hash(CLIENT_KEY)
OPTED_OUT = f"{TENANT}:private"  # X-Tenant-ID: private
INPUT_USD, OUTPUT_USD = 2.0, 8.0  # the heavyweight's price per million tokens

# (question, the drafter's confident answer, the heavyweight's)
FRANCE = ("What is the capital of France?", DEFAULT_ANSWER, DEFAULT_ANSWER)
PRIDE = ("Who wrote Pride and Prejudice?", "Charles Dickens wrote Pride and Prejudice in 1850.",
         "Jane Austen wrote Pride and Prejudice; it was published in 1813.")
MOUNTAIN = ("What is the tallest mountain on Earth?", "The tallest mountain on Earth is Mont Blanc in the Alps.",
            "Mount Everest, at 8,849 metres, is the tallest mountain on Earth.")
EMMA = ("Who wrote Emma?", "Austen.", "Jane Austen wrote Emma; it was published in 1815.")


@pytest.fixture(scope="module")
def drafter() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=confident(DEFAULT_ANSWER)) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def heavyweight() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=confident(DEFAULT_ANSWER)) as upstream:
        yield upstream


@pytest.fixture(autouse=True)
def _fresh_fakes(drafter: FakeUpstream, heavyweight: FakeUpstream) -> None:
    drafter.reset()
    heavyweight.reset()


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    logs = tmp_path_factory.mktemp("embedder")
    service = Service("services.embedder", {"DRAFTGATE_EMBEDDER_PORT": str(port)}, port, logs / "embedder.log")
    service.start(timeout_s=180)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def stack(redis_server: str, drafter: FakeUpstream, heavyweight: FakeUpstream, embedder: Service,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        redis_server, tmp_path_factory.mktemp("audit"), drafter,
        DRAFTGATE_HEAVYWEIGHT_BASE_URL=heavyweight.url,
        DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK=str(INPUT_USD),
        DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK=str(OUTPUT_USD),
        DRAFTGATE_CACHE_EMBEDDER_URL=embedder.url,
        DRAFTGATE_AUDIT_SAMPLE_RATE="1.0", DRAFTGATE_AUDIT_JUDGE="true",
        DRAFTGATE_AUDIT_OPT_OUT_TENANTS=f'["{OPTED_OUT}"]',
        DRAFTGATE_GATEWAY_API_KEYS_ENV="DG_AUDIT_TEST_KEYS", DG_AUDIT_TEST_KEYS=f"{CLIENT_KEY},{OTHER_KEY}",
        DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV="DG_AUDIT_TEST_ADMIN", DG_AUDIT_TEST_ADMIN=ADMIN_KEY)
    yield running
    running.stop()


@pytest.fixture
def db(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def script(drafter: FakeUpstream, heavyweight: FakeUpstream, case: tuple[str, str, str], **heavy: Any) -> None:
    question, drafted, answered = case
    drafter.script(question, confident(drafted))
    heavyweight.script(question, confident(answered, **heavy))


def judged(heavyweight: FakeUpstream, draft: str, score: int) -> None:
    """The judge (the heavyweight, asked after the request itself) scores this draft so."""
    heavyweight.script(f"Answer:\n{draft}", confident(f'{{"score": {score}, "reasoning": "scripted"}}'))


def wait_for(get: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = get()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s; last: {value!r}")
        time.sleep(0.05)


def labels(db: redis.Redis) -> list[AuditLabel]:
    return [decode(AuditLabel, fields[MESSAGE_FIELD]) for _, fields in db.xrange(AUDIT_LABELLED_STREAM)]


def samples(db: redis.Redis) -> list[AuditSample]:
    return [decode(AuditSample, fields[MESSAGE_FIELD]) for _, fields in db.xrange(AUDIT_STREAM)]


def question_of(messages: list[dict[str, Any]]) -> str:
    return messages[-1]["content"]


def labelled(db: redis.Redis, question: str) -> AuditLabel | None:
    return next((label for label in labels(db) if question_of(label.messages) == question), None)


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(url: str, name: str, **labels: str) -> float:
    return metrics(url).get((name, tuple(sorted(labels.items()))), 0.0)


def system_audit(stack: Stack, key: str, **params: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/system/audit", params=params, headers={"Authorization": f"Bearer {key}"},
                     timeout=10)


def test_confidently_wrong_drafts_are_flagged_and_the_disagreement_rate_rises(stack: Stack, db: redis.Redis,
                                                                              drafter: FakeUpstream,
                                                                              heavyweight: FakeUpstream):
    for case in (FRANCE, PRIDE, MOUNTAIN, EMMA):
        script(drafter, heavyweight, case)
    judged(heavyweight, PRIDE[1], 1)  # wrong: Jane Austen wrote it
    judged(heavyweight, EMMA[1], 4)  # terse but right
    router = stack.routers[0].url
    client = stack.client()
    for _ in range(2):
        answer = client.chat.completions.create(model="auto", messages=ask(FRANCE[0]), metadata={"category": "geo"})
        assert answer.choices[0].message.content == DEFAULT_ANSWER
    wait_for(lambda: labels(db), lambda found: len(found) == 2)
    assert [label.verdict for label in labels(db)] == ["agree", "agree"]
    wait_for(lambda: metric(router, "draftgate_audit_window_verdicts"), lambda n: n == 2)
    assert metric(router, "draftgate_audit_disagreement_rate") == 0.0

    served = client.chat.completions.create(model="auto", messages=ask(PRIDE[0]), metadata={"category": "books"})
    assert served.choices[0].message.content == PRIDE[1]  # accepted: the drafter was sure
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="auto", messages=ask(MOUNTAIN[0]), stream=True) if chunk.choices)  # progressive
    assert streamed == MOUNTAIN[1]
    client.chat.completions.create(model="auto", messages=ask(EMMA[0]), metadata={"category": "books"})
    wait_for(lambda: labels(db), lambda found: len(found) == 5)

    pride, mountain, emma = (labelled(db, case[0]) for case in (PRIDE, MOUNTAIN, EMMA))
    assert pride is not None and mountain is not None and emma is not None
    assert (pride.verdict, pride.method, pride.judge_score) == ("disagree", "judge", 1)
    assert pride.similarity is not None and pride.similarity < 0.8
    assert (mountain.verdict, mountain.method, mountain.judge_score) == ("disagree", "similarity", None)  # no score
    assert (emma.verdict, emma.method, emma.judge_score) == ("agree", "judge", 4)
    assert pride.category == "books" and pride.tenant == TENANT and mountain.category == ""
    # The labelled trace is the calibration dataset's format, with the drafter's top-k log-probs.
    trace = Trace.from_json(mountain.trace)
    assert trace.tier == "drafter" and trace.split == "audit" and trace.text == MOUNTAIN[1] and trace.top_k == 5
    assert len(trace.tokens) == len(MOUNTAIN[1].split()) and all(len(t.top_logprobs) == 5 for t in trace.tokens)
    assert Grade.from_json(mountain.grade).correct is False and Grade.from_json(emma.grade).correct is True
    assert Trace.from_json(pride.heavy_trace).text == PRIDE[2]

    # 2 of 5 disagree: the gauge rises, per category too; every verdict is counted.
    wait_for(lambda: metric(router, "draftgate_audit_window_verdicts"), lambda n: n == 5)
    assert metric(router, "draftgate_audit_disagreement_rate") == pytest.approx(0.4)
    assert metric(router, "draftgate_audit_category_disagreement_rate", category="books") == pytest.approx(0.5)
    assert metric(router, "draftgate_audit_category_disagreement_rate", category="geo") == 0.0
    assert metric(router, "draftgate_audit_tenant_disagreement_rate", tenant=TENANT) == pytest.approx(0.4)
    assert metric(router, "draftgate_audit_total", verdict="disagree") == 2
    assert metric(router, "draftgate_audit_total", verdict="agree") == 3
    assert metric(router, "draftgate_audit_alert_disagreement_rate") == 0.2

    # GET /v1/system/audit: the operator sees everything; a client key only its own tenant's.
    everything = system_audit(stack, ADMIN_KEY).json()
    assert everything["scope"] == "all" and everything["overall"] == {"verdicts": 5, "disagreements": 2, "rate": 0.4}
    assert everything["categories"]["books"]["rate"] == 0.5 and everything["counts"]["disagree"] == 2
    assert len(everything["recent"]) == 5
    assert everything["recent"][0]["draft"] == EMMA[1]  # newest first
    own = system_audit(stack, CLIENT_KEY, limit="2").json()
    assert own["scope"] == "tenant" and own["tenant"] == TENANT and own["overall"]["verdicts"] == 5
    assert len(own["recent"]) == 2 and "counts" not in own and "categories" not in own
    other = system_audit(stack, OTHER_KEY).json()
    assert other["overall"]["verdicts"] == 0 and other["recent"] == []
    assert system_audit(stack, "not-a-key").status_code == 401
    bad = system_audit(stack, ADMIN_KEY, limit="100000")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    ready = httpx.get(f"{router}/ready", timeout=10).json()
    assert ready["status"] == "ready" and ready["audit_loops"] == {"audit": True, "audit_keep_claimed": True,
                                                                   "audit_state": True}


def test_the_audit_never_delays_an_answer(stack: Stack, db: redis.Redis, drafter: FakeUpstream,
                                          heavyweight: FakeUpstream):
    """The heavyweight holds the audit's call until released: the client has its whole answer before the
    audit call even gets a byte back, and the verdict comes only after the release."""
    question = "Name a prime number."
    release = threading.Event()
    try:
        script(drafter, heavyweight, (question, "Two is a prime number.", "Two is a prime number."), hold=release)
        for stream in (False, True):
            answer = stack.client().chat.completions.create(model="auto", messages=ask(question), stream=stream)
            text = ("".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream
                    else answer.choices[0].message.content)
            assert text == "Two is a prime number."
        held = heavyweight.wait_for(lambda seen: sum(question_of(s.body["messages"]) == question for s in seen) == 2)
        assert all(s.ended is None for s in held)  # both audit calls are still waiting
        assert labelled(db, question) is None
        assert db.xpending(AUDIT_STREAM, AUDIT_GROUP)["pending"] >= 2  # taken, not done
    finally:
        release.set()
    wait_for(lambda: [label for label in labels(db) if question_of(label.messages) == question],
             lambda found: len(found) == 2)


def test_no_store_requests_and_opted_out_tenants_are_never_sampled(stack: Stack, db: redis.Redis):
    client = stack.client()
    client.chat.completions.create(model="auto", messages=ask("no-store question"),
                                   extra_headers={"Cache-Control": "no-store"})
    client.chat.completions.create(model="auto", messages=ask("opted-out question"),
                                   extra_headers={"X-Tenant-ID": "private"})
    client.chat.completions.create(model="auto", messages=ask("another tenant's question"),
                                   extra_headers={"X-Tenant-ID": "public", "X-Request-ID": "my-own-id"})
    sampled = wait_for(lambda: {question_of(s.body["messages"]): s for s in samples(db)},
                       lambda found: "another tenant's question" in found)
    assert sampled["another tenant's question"].tenant == f"{TENANT}:public"
    # Named as the client named it (the ledger's and feedback's request_id); its traces by the unique call.
    label = wait_for(lambda: labelled(db, "another tenant's question"), lambda found: found is not None)
    assert label.request_id == "my-own-id" and label.trace["id"].startswith("my-own-id:")
    assert "no-store question" not in sampled and "opted-out question" not in sampled


def test_the_budget_is_charged_at_the_heavyweights_price_and_stops_the_audit(stack: Stack, db: redis.Redis,
                                                                             drafter: FakeUpstream,
                                                                             heavyweight: FakeUpstream):
    router = stack.routers[0].url
    spend = audit_spend(utc_day(time.time()))
    db.delete(spend)
    priced = ("Which ocean is the largest?", "The Pacific Ocean is the largest.", "The Pacific Ocean is the largest.")
    script(drafter, heavyweight, priced)
    stack.client().chat.completions.create(model="auto", messages=ask(priced[0]), max_tokens=50)
    label = wait_for(lambda: labelled(db, priced[0]), lambda found: found is not None)
    usage = Trace.from_json(label.heavy_trace).usage
    assert usage is not None and usage.completion_tokens == len(priced[2].split())
    expected = (usage.prompt_tokens * INPUT_USD + usage.completion_tokens * OUTPUT_USD) / 1e6
    assert float(db.get(spend)) == pytest.approx(expected)  # the reservation (50 tokens) settled to the real cost

    skipped = metric(router, "draftgate_audit_total", verdict="skipped_budget")
    db.set(spend, "1.0")  # audit.max_cost_usd_per_day (1.0) spent today, by any router
    try:
        over = ("Which desert is the largest?", "The Sahara is the largest hot desert.", "Antarctica.")
        script(drafter, heavyweight, over)
        stack.client().chat.completions.create(model="auto", messages=ask(over[0]))
        wait_for(lambda: metric(router, "draftgate_audit_total", verdict="skipped_budget"),
                 lambda n: n == skipped + 1)
        assert not [s for s in heavyweight.seen if question_of(s.body["messages"]) == over[0]]  # never re-asked
        assert labelled(db, over[0]) is None
        wait_for(lambda: db.xpending(AUDIT_STREAM, AUDIT_GROUP)["pending"], lambda n: n == 0)  # acked, not retried
        assert system_audit(stack, ADMIN_KEY).json()["budget"]["spent_usd"] == 1.0
    finally:
        db.delete(spend)


def test_feedback_is_published_for_the_ledger_and_counted(stack: Stack, db: redis.Redis):
    answer = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("Say hi."))
    request_id = answer.headers["X-Request-ID"]
    sent = httpx.post(f"{stack.url}/v1/feedback", json={"request_id": request_id, "verdict": "bad",
                                                         "comment": "not what I asked"},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert sent.status_code == 202
    assert sent.json()["object"] == "feedback" and sent.json()["request_id"] == request_id
    [feedback] = [decode(Feedback, fields[MESSAGE_FIELD]) for _, fields in db.xrange(FEEDBACK_STREAM)
                  if decode(Feedback, fields[MESSAGE_FIELD]).request_id == request_id]
    assert (feedback.verdict, feedback.comment, feedback.tenant) == ("bad", "not what I asked", TENANT)
    assert feedback.key_id == key_hash(CLIENT_KEY) and feedback.time > 0
    httpx.post(f"{stack.url}/v1/feedback", json={"request_id": request_id, "verdict": "good"},
               headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10).raise_for_status()
    assert metric(stack.url, "draftgate_audit_total", verdict="client_bad") == 1
    assert metric(stack.url, "draftgate_audit_total", verdict="client_good") == 1
    counts = system_audit(stack, ADMIN_KEY).json()["counts"]
    assert counts["client_bad"] == 1 and counts["client_good"] == 1

    invalid = httpx.post(f"{stack.url}/v1/feedback", json={"request_id": request_id, "verdict": "meh"},
                         headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "verdict"
    refused = httpx.post(f"{stack.url}/v1/feedback", json={"request_id": request_id, "verdict": "good"},
                         headers={"Authorization": "Bearer not-a-key"}, timeout=10)
    assert refused.status_code == 401
    assert metric(stack.url, "draftgate_audit_total", verdict="client_good") == 1  # the refused ones were not counted


def test_a_virtual_key_gives_feedback_and_reads_its_own_tenants_audit(stack: Stack, db: redis.Redis):
    created = httpx.post(f"{stack.url}/admin/keys", json={"tenant": "initech"},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    question = "What colour is the sky on a clear day?"
    answer = client.chat.completions.with_raw_response.create(model="auto", messages=ask(question))
    wait_for(lambda: labelled(db, question), lambda found: found is not None)
    assert labelled(db, question).tenant == "initech"
    own = system_audit(stack, key).json()
    assert own["scope"] == "tenant" and own["tenant"] == "initech" and own["overall"]["verdicts"] == 1
    assert [entry["tenant"] for entry in own["recent"]] == ["initech"]
    sent = httpx.post(f"{stack.url}/v1/feedback", json={"request_id": answer.headers["X-Request-ID"],
                                                         "verdict": "good"},
                      headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert sent.status_code == 202
    [feedback] = [f for f in (decode(Feedback, fields[MESSAGE_FIELD]) for _, fields in db.xrange(FEEDBACK_STREAM))
                  if f.request_id == answer.headers["X-Request-ID"]]
    assert (feedback.tenant, feedback.key_id) == ("initech", key_id)
