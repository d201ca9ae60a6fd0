"""`calibrate fit --from-audit` on synthetic audited drafts: labels become graded drafts (unusable ones counted),
an export round-trips, and the refit learns a confident failure the running policy accepts — the drafter is
sure of itself and wrong on "implement ..." prompts, which the shipped-like prior never showed it — while
nothing is written without --write-config."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from services.router import calibrate
from services.router.calibration import audit_source
from services.router.calibration.traces import Trace, Usage
from services.router.risk import load_policy, risk
from shared.config import load_config
from shared.messages import AuditLabel
from tests.unit.test_calibration_fit import K, trace_tokens, write_dataset

CONFIDENT_BITS = (0.05, 0.4)


def code_prompt(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Implement the function number {i}."}]


def plain_prompt(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Question number {i}?"}]


def label(request_id: str, messages: list[dict[str, Any]], bits: list[float], correct: bool | None,
          top_k: int = K, heavy: bool = True) -> AuditLabel:
    """An audited draft as the auditor stores it: the draft's trace, the heavyweight's, the verdict as a grade."""
    tokens = trace_tokens(bits)
    if top_k != K:
        tokens = [dataclasses.replace(t, top_logprobs=t.top_logprobs[:top_k]) for t in tokens]
    trace = Trace(id=request_id, tier="drafter", model="fake-drafter", category="", split="audit",
                  text="".join(t.token for t in tokens), tokens=tuple(tokens), top_k=top_k, finish_reason="stop")
    heavy_trace = Trace(id=request_id, tier="heavyweight", model="fake-heavy", category="", split="audit",
                        text="the answer", usage=Usage(12, 8), finish_reason="stop", latency_s=0.2)
    grade = {"v": 1, "id": request_id, "tier": "drafter", "correct": correct, "method": "audit_similarity",
             "score": None, "detail": "cosine"}
    return AuditLabel(request_id=request_id, time=1.0, tenant="t1", verdict="agree" if correct else "disagree",
                      method="similarity", similarity=0.9 if correct else 0.3, messages=messages,
                      trace=trace.to_json(), heavy_trace=heavy_trace.to_json() if heavy else {}, grade=grade)


def confidently_wrong_on_code(n: int = 40, seed: int = 7) -> list[AuditLabel]:
    """Half the audited drafts answer "implement ..." prompts, sure and wrong; the other half plain questions,
    sure and right. Every draft is as confident as the prior's right ones: only the prompt tells them apart."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        bits = [rng.uniform(*CONFIDENT_BITS) for _ in range(12)]
        code = i % 2 == 0
        out.append(label(f"req_{i:03}", code_prompt(100 + i) if code else plain_prompt(100 + i), bits, not code))
    return out


def write_labels(path: Path, labels: list[AuditLabel]) -> Path:
    audit_source.write_export(labels, path)
    return path


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped-like prior (wrong drafts uncertain, right ones sure) and the running policy fitted on it."""
    root = tmp_path_factory.mktemp("prior")
    prompts, traces, grades = write_dataset(root)
    policy = root / "running.json"
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(policy), "--no-embedding", "--quiet", "--max-escalation", "0.4"])
    assert status == 0
    return {"prompts": prompts, "traces": traces, "grades": grades, "policy": policy}


def from_audit(prior: dict[str, Path], *extra: str) -> int:
    return calibrate.main(["fit", "--from-audit", "--traces", str(prior["traces"]), "--grades", str(prior["grades"]),
                           "--prompts", str(prior["prompts"]), "--policy", str(prior["policy"]), "--no-embedding",
                           "--quiet", "--max-escalation", "0.4", *extra])


def test_labels_become_graded_drafts_and_unusable_ones_are_counted() -> None:
    good = label("req_a", plain_prompt(1), [0.1] * 6, True)
    wrong = label("req_b", code_prompt(2), [0.1] * 6, False, heavy=False)
    labels = [good, wrong,
              dataclasses.replace(good, request_id="req_c", messages=[]),
              dataclasses.replace(good, request_id="req_d", grade={**good.grade, "correct": None}),
              dataclasses.replace(good, request_id="req_e", trace={**good.trace, "id": "req_e", "tokens": []}),
              dataclasses.replace(good, request_id="req_f", trace={"tier": "drafter"}),
              dataclasses.replace(good, request_id="req_g", trace={**good.trace, "id": "req_g", "error": "boom"})]
    drafts = audit_source.audited_drafts(labels)
    assert [item.id for item in drafts.items] == ["req_a", "req_b"]
    assert [item.draft_correct for item in drafts.items] == [True, False]
    assert drafts.items[0].heavy_measured and not drafts.items[1].heavy_measured
    assert all(item.heavy_correct for item in drafts.items)  # the heavyweight is the audit's reference
    assert drafts.skipped == {"no_messages": 1, "no_verdict": 1, "no_tokens": 1, "bad_trace": 1, "draft_error": 1}
    assert drafts.top_k == K and drafts.models == {"drafter": "fake-drafter", "heavyweight": "fake-heavy"}
    assert drafts.messages["req_b"] == code_prompt(2)


def test_drafts_of_one_prompt_share_a_cross_validation_group() -> None:
    first, again, other = (label(f"r{i}", m, [0.1] * 4, True) for i, m in
                           enumerate([plain_prompt(1), plain_prompt(1), plain_prompt(2)]))
    groups = audit_source.audited_drafts([first, again, other]).groups
    assert groups["r0"] == groups["r1"] != groups["r2"]


def test_an_export_round_trips(tmp_path: Path) -> None:
    labels = confidently_wrong_on_code(6)
    path = write_labels(tmp_path / "audit.jsonl", labels)
    assert audit_source.read_export(path) == labels
    (tmp_path / "bad.jsonl").write_text(json.dumps({"nothing": 1}) + "\n")
    with pytest.raises(ValueError, match="record 1: not an audit label"):
        audit_source.read_export(tmp_path / "bad.jsonl")


def test_the_refit_learns_a_confident_failure_and_writes_only_when_asked(
        prior: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = write_labels(tmp_path / "audit.jsonl", confidently_wrong_on_code())
    config = tmp_path / "config.yaml"
    config.write_text(Path("config.yaml").read_text())
    before = config.read_text()
    out, comparison = tmp_path / "new.json", tmp_path / "comparison.json"

    assert from_audit(prior, "--audit-file", str(audit), "--out", str(out), "--comparison-out", str(comparison)) == 0
    printed = capsys.readouterr().out
    assert "audited drafts: 40 usable (20 judged wrong)" in printed and "nothing written" in printed
    assert not out.exists() and config.read_text() == before
    result = json.loads(comparison.read_text())["comparison"]["trace_only"]
    running_auroc, new_auroc = result["running"]["auroc"]["auroc"], result["new"]["auroc"]["auroc"]
    assert running_auroc < 0.75  # all drafts look alike to it: confident
    assert new_auroc > 0.95  # out-of-fold: each audited prompt scored by a model that never saw it
    assert result["auroc_gain"]["ci"][0] > 0
    assert result["running"]["at_threshold"]["wrong_caught"]["value"] < 0.3
    assert result["new"]["at_threshold"]["wrong_caught"]["value"] > 0.8
    low, high = result["new"]["at_threshold"]["wrong_caught"]["ci"]
    assert low <= result["new"]["at_threshold"]["wrong_caught"]["value"] <= high

    assert from_audit(prior, "--audit-file", str(audit), "--out", str(out), "--write-config", str(config)) == 0
    new, running = load_policy(out), load_policy(prior["policy"])
    sure = trace_tokens([0.1] * 12)
    assert risk(running, sure, code_prompt(999)).accept  # the running policy lets it by
    assert not risk(new, sure, code_prompt(999)).accept  # the refitted one escalates it
    assert risk(new, sure, plain_prompt(999)).accept  # and still accepts a sure answer to a plain question
    assert not risk(new, trace_tokens([1.5] * 12), plain_prompt(999)).accept  # the prior's lesson is kept
    assert new.trained_on["from_audit"]["audited"]["n"] == 40
    assert new.trained_on["from_audit"]["prior"]["n"] == 56
    routing = load_config(config).routing
    assert routing.policy == "learned" and routing.risk_model == str(out)
    assert config.read_text().count("\n") == before.count("\n")  # two values changed in place, comments kept


def test_no_usable_audited_drafts_is_an_error_that_says_why(prior: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    audit = write_labels(tmp_path / "audit.jsonl", [dataclasses.replace(lab, messages=[])
                                                    for lab in confidently_wrong_on_code(4)])
    assert from_audit(prior, "--audit-file", str(audit)) == 1
    assert "no usable audited drafts" in capsys.readouterr().err


def test_audited_drafts_with_fewer_alternatives_than_the_policy_are_refused(
        prior: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(1)
    labels = [label(f"r{i}", plain_prompt(i), [rng.uniform(0.05, 0.4) for _ in range(8)], i % 2 == 0, top_k=3)
              for i in range(10)]
    assert from_audit(prior, "--audit-file", str(write_labels(tmp_path / "a.jsonl", labels))) == 1
    assert "carry 3 alternatives per token" in capsys.readouterr().err


def test_a_missing_export_is_reported(prior: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert from_audit(prior, "--audit-file", str(tmp_path / "none.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err
