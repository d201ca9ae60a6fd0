"""An audit's conclusion and its records: the labelled trace is the calibration dataset's own format
(traces.jsonl + grades.jsonl records that graded.load reads unchanged), and the rates count right."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from services.router.audit.auditor import completion_estimate
from services.router.audit.store import Rate, disagreement
from services.router.audit.verdicts import (
    AGREE,
    DISAGREE,
    JUDGE,
    SIMILARITY,
    SKIPPED_BUDGET,
    Audit,
    by_judge,
    by_similarity,
    cosine,
    label,
    needs_judge,
    verdict_record,
)
from services.router.calibration.grade import Grade
from services.router.calibration.graded import load
from services.router.calibration.traces import Trace
from shared.messages import AuditLabel, AuditSample, decode, encode

TOKENS = [{"token": "Sydney", "logprob": -0.01, "top_logprobs": [-0.01, -5.0, -6.0]},
          {"token": ".", "logprob": -0.001, "top_logprobs": [-0.001, -7.0, -8.0]}]
SAMPLE = AuditSample(request_id="req_9", body={"messages": [{"role": "user", "content": "Capital of Australia?"}],
                                               "max_tokens": 32},
                     text="Sydney.", tokens=TOKENS, top_k=3, model="drafter", tenant="acme", category="factual",
                     usage={"prompt_tokens": 7, "completion_tokens": 2}, finish_reason="stop", draft_entropy=0.05,
                     time=1.0)
HEAVY = {"heavy_text": "Canberra.", "heavy_usage": {"prompt_tokens": 7, "completion_tokens": 3},
         "heavy_model": "heavy", "heavy_latency_s": 0.5, "cost_usd": 0.0001}


def test_cosine():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine([1, 1], [1, 0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([0, 0], [1, 0]) == 0.0


def test_similar_enough_agrees_the_judge_is_asked_only_when_on_and_not_similar():
    assert by_similarity(0.8, 0.8) == AGREE and by_similarity(0.79, 0.8) == DISAGREE
    assert not needs_judge(0.9, 0.8, True)
    assert needs_judge(0.5, 0.8, True) and needs_judge(None, 0.8, True)
    assert not needs_judge(0.5, 0.8, False)
    assert by_judge(3) == AGREE and by_judge(5) == AGREE and by_judge(2) == DISAGREE


def test_the_label_is_a_calibration_trace_and_grade_that_graded_load_reads(tmp_path):
    audit = Audit(DISAGREE, JUDGE, 0.61, 1, detail="judge 1/5: wrong city", **HEAVY)
    record = decode(AuditLabel, encode(label(SAMPLE, audit, 2.0)))
    assert record.verdict == DISAGREE and record.method == JUDGE and record.judge_score == 1
    assert record.messages == SAMPLE.body["messages"] and record.max_tokens == 32 and record.tenant == "acme"
    draft = Trace.from_json(record.trace)
    assert (draft.id, draft.tier, draft.split, draft.category) == ("req_9", "drafter", "audit", "factual")
    assert draft.top_k == 3
    assert draft.text == "Sydney." and [t.to_json() for t in draft.tokens] == TOKENS
    heavy = Trace.from_json(record.heavy_trace)
    assert heavy.tier == "heavyweight" and heavy.text == "Canberra." and heavy.usage.completion_tokens == 3
    grade = Grade.from_json(record.grade)
    assert grade == Grade("req_9", "drafter", False, "audit_judge", 1, "judge 1/5: wrong city")
    traces, grades = tmp_path / "traces.jsonl", tmp_path / "grades.jsonl"
    traces.write_text(json.dumps(record.trace) + "\n" + json.dumps(record.heavy_trace) + "\n")
    grades.write_text(json.dumps(record.grade) + "\n")
    [item] = load(traces, grades).items
    assert item.id == "req_9" and item.draft_correct is False and item.heavy_completion_tokens == 3
    assert item.drafter_prompt_tokens == 7 and item.split == "audit"


def test_an_agreeing_label_grades_the_draft_right():
    record = label(SAMPLE, Audit(AGREE, SIMILARITY, 0.93, detail="cosine 0.930 >= 0.8", **HEAVY), 2.0)
    assert record.grade["correct"] is True and record.grade["method"] == "audit_similarity"
    assert record.grade["score"] is None and record.similarity == 0.93


def test_the_verdict_record_is_short():
    entry = verdict_record(SAMPLE, Audit(AGREE, SIMILARITY, 0.912345, **{**HEAVY, "heavy_text": "C" * 1000}), 3.0)
    assert entry["similarity"] == 0.9123 and entry["tenant"] == "acme" and entry["category"] == "factual"
    assert len(entry["heavyweight"]) == 160 and entry["draft"] == "Sydney."
    assert not Audit(SKIPPED_BUDGET).decided and Audit(DISAGREE).decided


def test_the_rate_counts_decided_verdicts_only():
    records = [{"verdict": AGREE}, {"verdict": DISAGREE}, {"verdict": DISAGREE}, {"verdict": "error"}, {}]
    assert disagreement(records) == Rate(3, 2)
    assert disagreement(records).rate == pytest.approx(2 / 3)
    assert Rate(0, 0).rate == 0.0 and Rate(4, 1).to_json() == {"verdicts": 4, "disagreements": 1, "rate": 0.25}


def test_the_budget_reserves_the_requests_max_tokens_else_twice_the_draft():
    assert completion_estimate(SAMPLE) == 32
    assert completion_estimate(AuditSample("r", {"messages": []}, "x", TOKENS * 20, 3)) == 80
    assert completion_estimate(AuditSample("r", {"messages": [], "max_completion_tokens": 9}, "x", [], 3)) == 9
    assert completion_estimate(AuditSample("r", {"messages": []}, "x", [], 3)) == 256


def test_the_label_names_the_request_as_the_client_does_and_its_traces_by_the_unique_call():
    reused = dataclasses.replace(SAMPLE, request_id="my-id:0f0f", client_request_id="my-id")
    record = label(reused, Audit(AGREE, SIMILARITY, 0.93, **HEAVY), 2.0)
    assert record.request_id == "my-id"  # as the ledger and POST /v1/feedback name it
    assert record.trace["id"] == record.heavy_trace["id"] == record.grade["id"] == "my-id:0f0f"
    assert verdict_record(reused, Audit(AGREE, SIMILARITY, 0.93, **HEAVY), 2.0)["request_id"] == "my-id"
    assert label(SAMPLE, Audit(AGREE, SIMILARITY, 0.93, **HEAVY), 2.0).request_id == "req_9"
