"""Which accepted drafts are sampled for the audit, and what a sample holds: the trace exactly as
`collect` records it, read before anything trims the log-probs for the client."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.router.assemble import shape_chunk
from services.router.audit.sampling import (
    AuditSampler,
    DraftTrace,
    audit_finish,
    audit_publications,
    audit_start,
    category_of,
    sample_rate,
    wants_audit,
)
from services.router.signals import TokenTrace, tokens_of
from shared.config import AuditConfig, TenantRateConfig
from shared.keys import AUDIT_STREAM
from shared.messages import AuditSample, ChatRequest, decode

CONFIG = AuditConfig(sample_rate=0.1, opt_out_tenants=("private",),
                     tenant_sample_rates=(TenantRateConfig("loud", 1.0), TenantRateConfig("quiet", 0.0)))


def request(tenant: str = "t1", auditable: bool = True, **body: Any) -> ChatRequest:
    return ChatRequest(request_id="req_1", reply_to="replies", tenant=tenant, auditable=auditable,
                       body={"messages": [{"role": "user", "content": "What is 2+2?"}], **body})


def chunk(token: str, probs: tuple[float, ...], finish: str | None = None) -> dict[str, Any]:
    entry = {"token": token, "logprob": math.log(probs[0]),
             "top_logprobs": [{"token": f"a{i}", "logprob": math.log(p)} for i, p in enumerate(probs)]}
    return {"model": "drafter-v2", "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": finish,
                                                "logprobs": {"content": [entry]}}]}


DRAFT = [chunk("4", (0.9, 0.05, 0.05)), chunk(".", (0.99, 0.01), finish="stop"),
         {"model": "drafter-v2", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}}]


def test_the_rate_is_the_tenants_override_else_the_default_and_zero_for_opted_out_tenants():
    assert sample_rate(CONFIG, "t1") == 0.1
    assert sample_rate(CONFIG, "loud") == 1.0
    assert sample_rate(CONFIG, "quiet") == 0.0
    assert sample_rate(CONFIG, "private") == 0.0
    assert sample_rate(AuditConfig(sample_rate=1.0, opt_out_tenants=("private",)), "private") == 0.0


def test_a_draw_below_the_rate_is_sampled_but_never_a_no_store_request_or_an_opted_out_tenant():
    assert wants_audit(CONFIG, request(), 0.05)
    assert not wants_audit(CONFIG, request(), 0.1)
    assert wants_audit(CONFIG, request("loud"), 0.999)
    assert not wants_audit(CONFIG, request("loud", auditable=False), 0.0)
    assert not wants_audit(CONFIG, request("private"), 0.0)
    assert not wants_audit(CONFIG, request("quiet"), 0.0)


def test_the_category_is_metadata_category_when_it_is_a_string():
    assert category_of({"metadata": {"category": "reasoning"}}) == "reasoning"
    assert category_of({"metadata": {"category": 3}}) == ""
    assert category_of({"metadata": "x"}) == ""
    assert category_of({}) == ""
    assert len(category_of({"metadata": {"category": "x" * 500}})) == 64


def test_a_trace_holds_what_collect_records_and_showing_the_chunks_later_does_not_change_it():
    trace = DraftTrace(top_k=2, model="fallback")
    chunks = copy.deepcopy(DRAFT)
    for c in chunks:
        trace.add(c)
        shape_chunk(c, None)  # progressive: the chunk is shown to a client that asked for no log-probs
    expected = [t.to_json() for c in DRAFT for t in tokens_of(c, 2)]
    assert trace.tokens == expected
    assert [TokenTrace.from_json(t).top_logprobs for t in trace.tokens] == [
        (math.log(0.9), math.log(0.05)), (math.log(0.99), math.log(0.01))]
    assert "".join(trace.text) == "4."
    assert trace.usage == {"prompt_tokens": 12, "completion_tokens": 2}
    assert trace.finish_reason == "stop" and trace.model == "drafter-v2" and not trace.broken


def test_a_sampled_draft_rides_along_as_a_publication_on_the_audit_stream():
    counter = Counter("sampled", "", registry=CollectorRegistry())
    sampler = AuditSampler(AuditConfig(sample_rate=1.0, stream_maxlen=77), 5, counter, draw=lambda: 0.5)
    [publication] = audit_publications(sampler, request(metadata={"category": "math"}), DRAFT, "fallback", 0.42)
    assert publication.stream == AUDIT_STREAM and publication.maxlen == 77
    sample = decode(AuditSample, publication.payload)
    assert sample.request_id == "req_1" and sample.tenant == "t1" and sample.category == "math"
    assert sample.text == "4." and sample.top_k == 5 and sample.model == "drafter-v2"
    assert sample.body["messages"][0]["content"] == "What is 2+2?"
    assert len(sample.tokens) == 2 and sample.draft_entropy == 0.42 and sample.usage == {"prompt_tokens": 12,
                                                                                          "completion_tokens": 2}
    assert counter._value.get() == 1


def test_nothing_is_published_when_not_drawn_no_store_off_or_broken():
    never = AuditSampler(AuditConfig(sample_rate=0.5), 5, draw=lambda: 0.5)
    assert audit_publications(never, request(), DRAFT, "m", 0.1) == []
    always = AuditSampler(AuditConfig(sample_rate=1.0), 5, draw=lambda: 0.0)
    assert audit_publications(always, request(auditable=False), DRAFT, "m", 0.1) == []
    assert audit_publications(None, request(), DRAFT, "m", 0.1) == []
    assert audit_start(None, request(), "m") is None and audit_finish(None, request(), None, 0.1) == []
    trace = audit_start(always, request(), "m")
    assert trace is not None
    trace.add({"choices": [{"delta": {"content": "x"}, "logprobs": {"content": [{"top_logprobs": "garbage"}]}}]})
    assert trace.broken
    assert audit_finish(always, request(), trace, 0.1) == []


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_the_share_sampled_follows_the_rate(rate: float):
    import random

    rng = random.Random(7)
    sampler = AuditSampler(AuditConfig(sample_rate=rate), 5, draw=rng.random)
    drawn = sum(bool(audit_publications(sampler, request(), DRAFT, "m", 0.1)) for _ in range(2000))
    assert drawn / 2000 == pytest.approx(rate, abs=0.03)
