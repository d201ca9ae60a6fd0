"""`calibrate fit` on synthetic, separable drafts: the model recovers the separation (AUROC about 1, the
signal's coefficient positive), the threshold meets its target counting the entropy window's aborts, and
the policy file it writes is one the router's risk.py loads and scores the same way."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.router import calibrate
from services.router.calibration import learn
from services.router.calibration.dataset import Item
from services.router.calibration.features import SIGNALS, Rows
from services.router.calibration.learn import Candidate
from services.router.calibration.traces import Trace
from services.router.risk import TRACE_ONLY, WITH_EMBEDDING, load_policy, risk
from services.router.signals import TokenTrace
from tests.fakes.scripts import top_logprobs_for

K = 5


def synthetic_rows(n: int = 120, families: int = 12, seed: int = 3, embeddings: bool = False) -> Rows:
    """Wrong drafts have a larger max_entropy (separable); every other signal is noise. With embeddings,
    the prompt's vector says nothing about the label except along one direction."""
    rng = np.random.default_rng(seed)
    wrong = np.asarray([i % 2 for i in range(n)], dtype=float)
    signals = {name: rng.normal(size=n) for name in SIGNALS}
    signals["max_entropy"] = np.where(wrong == 1, 2.0, 0.5) + rng.uniform(-0.4, 0.4, size=n)
    vectors = None
    if embeddings:
        vectors = rng.normal(size=(n, 16))
        vectors[:, 0] += np.where(wrong == 1, 3.0, -3.0)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Rows(ids=tuple(f"i{i}" for i in range(n)), split=("train",) * n,
                family=tuple(f"f{i % families}" for i in range(n)), category=("factual",) * n,
                texts=tuple(f"q{i}" for i in range(n)), wrong=wrong, heavy_right=np.ones(n, dtype=bool),
                window_escalated=np.zeros(n, dtype=bool), window_metric=signals["mean_entropy"], signals=signals,
                embeddings=vectors)


def test_fit_recovers_a_separable_signal_with_the_right_sign() -> None:
    rows = synthetic_rows()
    candidate = Candidate(TRACE_ONLY, "entropy", 1.0)
    [scored] = learn.search(rows, [candidate])
    assert scored.cv_auroc == pytest.approx(1.0, abs=0.01)
    variant = learn.fit_model(rows, candidate).variant(0.5)
    coef = dict(zip(variant.features, variant.coef, strict=True))
    assert coef["max_entropy"] > 0
    assert coef["max_entropy"] == max(coef.values(), key=abs)


def test_the_search_keeps_the_candidate_with_the_best_cross_validated_auroc() -> None:
    rows = synthetic_rows()
    scored = learn.search(rows, [Candidate(TRACE_ONLY, "logprob", 1.0), Candidate(TRACE_ONLY, "entropy", 1.0)])
    assert scored[0].cv_auroc is not None and scored[0].cv_auroc < 0.8  # noise only
    assert learn.best(scored).candidate.feature_set == "entropy"


def test_the_embedding_variant_learns_from_the_projected_prompt() -> None:
    rows = synthetic_rows(embeddings=True)
    rows = Rows(**{**rows.__dict__, "signals": {name: np.zeros(len(rows)) for name in SIGNALS}})  # no trace signal
    candidate = Candidate(WITH_EMBEDDING, "entropy", 1.0, components=4)
    [scored] = learn.search(rows, [candidate])
    assert scored.cv_auroc is not None and scored.cv_auroc > 0.95
    model = learn.fit_model(rows, candidate)
    variant = model.variant(0.5, "test-model")
    assert variant.embedding is not None and len(variant.embedding.components) == 4
    assert variant.features[-4:] == ("emb_0", "emb_1", "emb_2", "emb_3")
    # The file's dot product gives what scikit-learn gives.
    signals = {name: 0.0 for name in SIGNALS}
    assert [variant.risk(signals, v.tolist()) for v in rows.embeddings[:10]] == pytest.approx(
        model.risks(rows.where(np.arange(len(rows)) < 10)).tolist())


def test_the_stacked_embedding_is_one_projection_the_file_scores_as_scikit_learn_does() -> None:
    rows = synthetic_rows(embeddings=True)
    rows = Rows(**{**rows.__dict__, "signals": {name: np.zeros(len(rows)) for name in SIGNALS}})  # no trace signal
    candidate = Candidate(WITH_EMBEDDING, "entropy", 1.0, components=learn.STACKED)
    [scored] = learn.search(rows, [candidate])
    assert scored.cv_auroc is not None and scored.cv_auroc > 0.95
    assert candidate.to_json()["embedding"] == "stacked"
    model = learn.fit_model(rows, candidate)
    variant = model.variant(0.5, "test-model")
    assert variant.embedding is not None and len(variant.embedding.components) == 1
    assert variant.features[-1] == "emb_0" and "emb_1" not in variant.features
    signals = {name: 0.0 for name in SIGNALS}
    assert [variant.risk(signals, v.tolist()) for v in rows.embeddings[:10]] == pytest.approx(
        model.risks(rows.where(np.arange(len(rows)) < 10)).tolist())


def test_a_stacked_candidate_that_cannot_be_cross_validated_inside_its_folds_scores_none() -> None:
    rows = synthetic_rows(n=40, families=2, embeddings=True)  # each fold's part is one family: no inner folds
    [scored] = learn.search(rows, [Candidate(WITH_EMBEDDING, "entropy", 1.0, components=learn.STACKED)])
    assert scored.cv_auroc is None


def test_nested_cv_does_not_flatter_the_winner_of_a_search_among_noise() -> None:
    """Labels that no signal predicts: the best of the candidates' CV AUROCs is above its honest value,
    the AUROC with the choice made inside each fold is not; a real signal survives nesting."""
    tried = learn.candidates(TRACE_ONLY)

    def choose(inner: Rows) -> dict[str, Candidate]:
        return {TRACE_ONLY: learn.best(learn.search(inner, tried)).candidate}

    rows = synthetic_rows(n=120)
    noise = dataclasses.replace(rows, wrong=np.random.default_rng(11).permutation(rows.wrong))
    winner = learn.best(learn.search(noise, tried))
    nested = learn.nested_out_of_fold(noise, choose)[TRACE_ONLY]
    assert winner.cv_auroc is not None and roc_auc_score(noise.wrong, nested) < winner.cv_auroc
    separable = learn.nested_out_of_fold(rows, choose)[TRACE_ONLY]
    assert roc_auc_score(rows.wrong, separable) == pytest.approx(1.0, abs=0.01)


def test_the_all_set_reads_every_signal_and_the_v1_sets_only_version_1_signals() -> None:
    from services.router.risk import V1_FEATURES

    assert set(learn.TRACE_SETS["all"]) == set(SIGNALS)
    assert all(set(learn.TRACE_SETS[name]) <= V1_FEATURES for name in ("entropy", "logprob", "trace", "trace+prompt"))


def test_folds_hold_out_whole_families() -> None:
    rows = synthetic_rows()
    for train, held in learn.folds(rows):
        assert not {rows.family[i] for i in train} & {rows.family[i] for i in held}


def test_the_escalation_threshold_counts_the_windows_aborts() -> None:
    risks = np.asarray([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    window = np.zeros(10, dtype=bool)
    assert learn.threshold_for_escalation(risks, window, 0.3) == pytest.approx(0.7)  # 0.8, 0.9, 0.95 escalate
    window[0] = True  # the window aborts one more: risk may escalate only two
    assert learn.threshold_for_escalation(risks, window, 0.3) == pytest.approx(0.8)
    window[:4] = True  # the window alone is over the budget: risk escalates nothing
    assert learn.threshold_for_escalation(risks, window, 0.3) == 1.0


def test_the_accuracy_threshold_escalates_the_fewest_that_reach_the_target() -> None:
    risks = np.asarray([0.1, 0.2, 0.3, 0.4, 0.9])
    wrong = np.asarray([0.0, 0.0, 1.0, 0.0, 1.0])
    heavy_right = np.ones(5, dtype=bool)
    window = np.zeros(5, dtype=bool)
    assert learn.threshold_for_accuracy(risks, window, wrong, heavy_right, 0.8) == pytest.approx(0.4)
    assert learn.threshold_for_accuracy(risks, window, wrong, heavy_right, 1.0) == pytest.approx(0.2)
    assert learn.threshold_for_accuracy(risks, window, wrong, np.zeros(5, dtype=bool), 1.0) is None


def test_caught_at_counts_wrong_drafts_among_the_riskiest() -> None:
    risks = np.asarray([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05])
    wrong = np.asarray([1, 0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    assert learn.caught_at(risks, wrong, 0.3) == pytest.approx(2 / 3)
    assert learn.caught_at(risks, np.zeros(10), 0.3) is None


def trace_tokens(bits: list[float]) -> list[TokenTrace]:
    out = []
    for i, b in enumerate(bits):
        top = top_logprobs_for(b, K)
        out.append(TokenTrace(f" t{i}", top[0], tuple(top)))
    return out


def write_dataset(root: Path, n: int = 80, seed: int = 5) -> tuple[Path, Path, Path]:
    """prompts, traces and grades files: wrong drafts are uncertain (1.2-1.8 bits, under the router's
    2.0 so the window lets them through), right ones sure (0.05-0.4 bits)."""
    rng = random.Random(seed)
    prompts, traces, grades = root / "prompts.jsonl", root / "traces.jsonl", root / "grades.jsonl"
    with prompts.open("w") as p, traces.open("w") as t, grades.open("w") as g:
        for i in range(n):
            wrong = i % 3 == 0
            item = Item(id=f"q{i:03}", category="factual", family=f"fam{i % 10}",
                        split="test" if i % 10 >= 7 else "train",
                        messages=({"role": "user", "content": f"Question number {i}?"},), max_tokens=32,
                        grader={"kind": "aliases", "answers": ["x"]})
            p.write(item.dumps() + "\n")
            bits = [rng.uniform(1.2, 1.8) if wrong else rng.uniform(0.05, 0.4) for _ in range(12)]
            trace = Trace(id=item.id, tier="drafter", model="fake-drafter", category="factual", split=item.split,
                          text="".join(f" t{j}" for j in range(12)), tokens=tuple(trace_tokens(bits)), top_k=K,
                          finish_reason="stop", ttft_s=0.01, latency_s=0.1)
            t.write(json.dumps(trace.to_json()) + "\n")
            g.write(json.dumps({"v": 1, "id": item.id, "tier": "drafter", "correct": not wrong,
                                "method": "aliases", "score": None, "detail": ""}) + "\n")
    return prompts, traces, grades


def test_the_fit_step_writes_a_policy_the_router_loads_and_it_separates_the_test_split(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts, traces, grades = write_dataset(tmp_path)
    out = tmp_path / "policy.json"
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(out), "--no-embedding", "--quiet", "--max-escalation", "0.4"])
    assert status == 0
    policy = load_policy(out)
    assert set(policy.variants) == {TRACE_ONLY}
    assert policy.top_k == 5
    metrics = policy.metrics
    assert metrics["cv_auroc"] == pytest.approx(1.0, abs=0.01)
    assert metrics["test_auroc"] == pytest.approx(1.0, abs=0.01)
    assert metrics["caught_at_30"] == pytest.approx(7 / 8)  # 8 of 24 test drafts are wrong; the 7 riskiest are
    assert metrics["signals"]["max_entropy"]["test"]["auroc"] == pytest.approx(1.0)
    assert len(metrics["tried"]) == len(learn.TRACE_SETS) * len(learn.C_GRID)
    assert metrics["variants"][TRACE_ONLY]["train_at_threshold"]["escalation_rate"] <= 0.4
    assert policy.trained_on["n"] == 56 and policy.trained_on["families"] == 7
    assert policy.trained_on["target"] == {"max_escalation": 0.4}
    # The router's scoring of a recorded draft: an uncertain one is held above the threshold, a sure one below.
    messages = [{"role": "user", "content": "Question number 1?"}]
    assert not risk(policy, trace_tokens([1.5] * 12), messages).accept
    assert risk(policy, trace_tokens([0.1] * 12), messages).accept
    printed = capsys.readouterr().out
    assert f"policy written to {out}" in printed and "trace_only:" in printed
    assert "nested_cv" not in metrics["variants"][TRACE_ONLY], "only with --nested-cv"


def test_fit_with_nested_cv_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts, traces, grades = write_dataset(tmp_path)
    out = tmp_path / "policy.json"
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(out), "--no-embedding", "--quiet", "--nested-cv"])
    assert status == 0
    nested = load_policy(out).metrics["variants"][TRACE_ONLY]["nested_cv"]
    assert nested["auroc"] == pytest.approx(1.0, abs=0.01) and len(nested["ci"]) == 2
    assert "nested CV AUROC 1.000" in capsys.readouterr().out


def test_fit_says_so_when_the_accuracy_target_cannot_be_met(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    prompts, traces, grades = write_dataset(tmp_path)
    with grades.open("a") as g:  # the heavyweight is wrong on everything too
        for line in prompts.read_text().splitlines():
            g.write(json.dumps({"v": 1, "id": json.loads(line)["id"], "tier": "heavyweight", "correct": False}) + "\n")
    heavy = [Trace(id=json.loads(line)["id"], tier="heavyweight", model="fake-heavy", category="factual",
                   split=json.loads(line)["split"], text="no").to_json() for line in prompts.read_text().splitlines()]
    with traces.open("a") as t:
        t.writelines(json.dumps(h) + "\n" for h in heavy)
    out = tmp_path / "policy.json"
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(out), "--no-embedding", "--quiet", "--min-accuracy", "0.99"])
    assert status == 1
    assert "no threshold reaches accuracy 0.99" in capsys.readouterr().err
    assert not out.exists()


def test_fit_refuses_traces_recorded_with_fewer_alternatives_than_asked(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    prompts, traces, grades = write_dataset(tmp_path)
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(tmp_path / "p.json"), "--no-embedding", "--quiet", "--top-k", "10"])
    assert status == 1
    assert "recorded with 5 alternatives per token" in capsys.readouterr().err


def test_entropy_of_the_synthetic_tokens_is_what_was_asked() -> None:
    """The dataset above relies on it: a token scripted at b bits has b bits of entropy at k=5."""
    from services.router.entropy import token_entropy_bits

    [token] = trace_tokens([1.5])
    assert token_entropy_bits(token.top_logprobs) == pytest.approx(1.5, abs=1e-6)
    assert math.isfinite(token.logprob or 0.0)


def test_the_fit_step_fits_the_embedding_variant_with_the_configured_embedder(tmp_path: Path) -> None:
    """The real MiniLM (the default onnx backend, in process): the with_embedding variant is written with a
    384-dimension projection named for its model, and is what the router would score a draft with."""
    prompts, traces, grades = write_dataset(tmp_path)
    out = tmp_path / "policy.json"
    status = calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                             "--out", str(out), "--quiet"])
    assert status == 0
    policy = load_policy(out)
    embedded = policy.with_embedding
    assert embedded is not None and embedded.embedding is not None
    assert embedded.embedding.model == "all-MiniLM-L6-v2" and len(embedded.embedding.center) == 384
    assert policy.threshold == policy.threshold_of(embedded)
    assert policy.metrics["variants"][WITH_EMBEDDING]["test"]["auroc"] == pytest.approx(1.0, abs=0.05)
    assert {t["variant"] for t in policy.metrics["tried"]} == {TRACE_ONLY, WITH_EMBEDDING}
    vector = [0.0] * 384
    vector[0] = 1.0
    scored = risk(policy, trace_tokens([1.5] * 12), [{"role": "user", "content": "Question number 1?"}], vector)
    assert scored.variant == WITH_EMBEDDING and not scored.accept
