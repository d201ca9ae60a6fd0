"""`calibrate sweep` against hand-computed rows: a four-prompt trace file replayed at three settings,
the costs worked out by hand from the prices; the replay against the router's own judge(); the
bootstrap's determinism; the operating point and the knee; the baselines' ties; AUROC's intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.router import calibrate
from services.router.calibration import baselines, bootstrap, graded, operating
from services.router.calibration.auroc import auroc, weighted
from services.router.calibration.graded import Prices
from services.router.calibration.outcomes import Grid
from services.router.calibration.replay import Replayed, Setting, replay, token_bits
from services.router.calibration.summary import Summary
from services.router.calibration.sweeping import Options, sweep
from services.router.calibration.traces import Trace, Usage
from services.router.drafting import judge
from services.router.entropy import Decision, EntropyWindow
from services.router.signals import TokenTrace
from shared.pricing import Price

# Exact entropies: one alternative is 0 bits, two equal ones 1 bit, four equal ones 2 bits.
ALTERNATIVES = {0: (0.0,), 1: (math.log(0.5),) * 2, 2: (math.log(0.25),) * 4}
# Prices that make costs whole numbers: the drafter costs prompt + 2 x completion tokens (USD), the
# heavyweight 10 x prompt + 20 x completion.
PRICES = Prices(drafter=Price(1e6, 2e6), heavyweight=Price(1e7, 2e7))


def tokens(*bits: int) -> tuple[TokenTrace, ...]:
    return tuple(TokenTrace(f" t{i}", ALTERNATIVES[b][0], ALTERNATIVES[b]) for i, b in enumerate(bits))


def trace(item_id: str, tier: str, category: str, split: str, bits: tuple[int, ...] = (), prompt: int = 0,
          completion: int = 0, error: str | None = None) -> dict[str, Any]:
    return Trace(id=item_id, tier=tier, model=f"m-{tier}", category=category, split=split, text="x",
                 tokens=tokens(*bits), top_k=20, usage=Usage(prompt, completion), error=error).to_json()


def grade(item_id: str, tier: str, correct: bool | None) -> dict[str, Any]:
    return {"v": 1, "id": item_id, "tier": tier, "correct": correct, "method": "exact", "score": None, "detail": ""}


# A: calm and right. B: unsure from the first token, wrong. C: one 2-bit token in the middle, right,
# its heavyweight answer never collected. D: steadily 1 bit, wrong, and the heavyweight wrong too.
TRACES = [
    trace("A", "drafter", "factual", "train", (0, 0, 0, 0), 10, 4),
    trace("A", "heavyweight", "factual", "train", (), 10, 5),
    trace("B", "drafter", "code", "train", (2, 2, 2, 2), 10, 4),
    trace("B", "heavyweight", "code", "train", (), 10, 6),
    trace("C", "drafter", "factual", "test", (0, 1, 2, 1, 0, 0), 20, 6),
    trace("C", "heavyweight", "factual", "test", error="HTTP 500"),
    trace("D", "drafter", "code", "test", (1, 1, 1, 1, 1, 1), 20, 6),
    trace("D", "heavyweight", "code", "test", (), 20, 8),
    trace("E", "drafter", "code", "test", error="timed out"),  # left out: no draft
    trace("F", "drafter", "code", "test", (0,), 5, 1),  # left out: never graded
]
GRADES = [grade("A", "drafter", True), grade("A", "heavyweight", True), grade("B", "drafter", False),
          grade("B", "heavyweight", True), grade("C", "drafter", True), grade("D", "drafter", False),
          grade("D", "heavyweight", False), grade("F", "drafter", None)]
GRID = Grid(thresholds=(0.5, 1.5), windows=(2,), early_exit=(0, 2))


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def loaded(tmp_path: Path) -> graded.Loaded:
    return graded.load(write_lines(tmp_path / "traces.jsonl", TRACES), write_lines(tmp_path / "grades.jsonl", GRADES))


def row(result: dict[str, Any], setting: tuple[float, int, int], split: str = "all",
        category: str = "all") -> dict[str, Any]:
    (found,) = [r for r in result["rows"] if (r["threshold"], r["window"], r["early_exit"]) == setting
                and r["split"] == split and r["category"] == category]
    return found


def test_the_join_fills_in_what_was_not_collected_and_leaves_out_what_cannot_be_replayed(
        loaded: graded.Loaded) -> None:
    assert [i.id for i in loaded.items] == ["A", "B", "C", "D"]
    assert dict(loaded.skipped) == {"drafter_error": 1, "drafter_ungraded": 1}
    by_id = {i.id: i for i in loaded.items}
    # C's heavyweight failed: assumed right, its length taken as the draft's, its prompt as the drafter's.
    assert (by_id["C"].heavy_graded, by_id["C"].heavy_correct, by_id["C"].heavy_measured) == (False, True, False)
    assert (by_id["C"].heavy_prompt_tokens, by_id["C"].heavy_completion_tokens) == (20, 6)
    assert (by_id["D"].heavy_graded, by_id["D"].heavy_correct, by_id["D"].heavy_completion_tokens) == (True, False, 8)
    assert [PRICES.heavy(i) for i in loaded.items] == [200, 220, 320, 360]
    assert [PRICES.drafted(i, i.drafter_completion_tokens) for i in loaded.items] == [18, 18, 32, 32]


def test_replay_aborts_where_the_router_would_and_counts_the_tokens_drafted_by_then() -> None:
    b, c, d = tokens(2, 2, 2, 2), tokens(0, 1, 2, 1, 0, 0), tokens(1, 1, 1, 1, 1, 1)
    # Window of 2, no early exit: B's first full window is 2 bits, C's second window is 1.5 bits.
    assert decided(replay(b, Setting(0.5, 2, 0), 5)) == (True, "window_mean", 2)
    assert decided(replay(c, Setting(0.5, 2, 0), 5)) == (True, "window_mean", 3)
    assert decided(replay(c, Setting(1.5, 2, 0), 5)) == (False, None, 6)  # 1.5 is not above 1.5
    assert replay(d, Setting(1.5, 2, 0), 5).metric == pytest.approx(1.0)
    # Early exit of 2: a single token above the threshold among the first two aborts at once.
    assert decided(replay(b, Setting(1.5, 2, 2), 5)) == (True, "early_token", 1)
    assert decided(replay(c, Setting(0.5, 2, 2), 5)) == (True, "early_token", 2)
    # Nothing judgeable (no alternatives recorded) escalates, as the router's "unjudged".
    blind = (TokenTrace(" x", None, ()),) * 3
    assert decided(replay(blind, Setting(2.0, 10, 10), 5)) == (True, "unjudged", 3)


def test_replay_judges_each_token_at_the_routers_k_as_drafting_judge_does() -> None:
    eight = (math.log(1 / 8),) * 8
    draft = (TokenTrace(" a", eight[0], eight), *tokens(1, 2, 0, 2, 2, 2))
    assert token_bits(draft, 8)[0] == pytest.approx(3.0)
    assert token_bits(draft, 5)[0] == pytest.approx(math.log2(5))  # the 5 most likely, renormalised
    for k in (2, 5, 8):
        for setting in (Setting(1.2, 3, 2), Setting(2.0, 2, 0), Setting(2.5, 4, 10)):
            window = EntropyWindow(setting.threshold, setting.window, setting.early_exit)
            judged_at = None
            for position, token in enumerate(draft, start=1):
                if judge(chunk_of(token), window, k) is Decision.ESCALATE:
                    judged_at = position
                    break
            replayed = replay(draft, setting, k)
            assert (replayed.drafted if replayed.escalated else None) == judged_at, (k, setting)
            assert replayed.metric == pytest.approx(window.metric)


def decided(replayed: Replayed) -> tuple[bool, str | None, int]:
    return replayed.escalated, replayed.reason, replayed.drafted


def chunk_of(token: TokenTrace) -> dict[str, Any]:
    """One streamed chunk carrying this token as a server sends it (alternatives as objects)."""
    alternatives = [{"token": f"<{i}>", "logprob": lp} for i, lp in enumerate(token.top_logprobs)]
    return {"choices": [{"index": 0, "delta": {"content": token.token},
                         "logprobs": {"content": [{"token": token.token, "logprob": token.logprob,
                                                   "top_logprobs": alternatives}]}}]}


def test_sweep_rows_match_the_hand_computed_escalations_accuracies_and_costs(loaded: graded.Loaded) -> None:
    result = sweep(loaded, PRICES, Options(grid=GRID, choose_split="train", min_accuracy=0.9, resamples=200,
                                           progress=False))
    # All-heavyweight: 200 + 220 + 320 + 360 = 1100, 275 per request.
    # (0.5, 2, 0): A accepted (18); B aborted after 2 tokens (10 + 2x2 + 220 = 234); C after 3
    # (20 + 2x3 + 320 = 346); D after 2 (20 + 2x2 + 360 = 384). 982 in all.
    strict = row(result, (0.5, 2, 0))
    assert strict["escalation_rate"] == 0.75 and strict["accepted_accuracy"] == 1.0
    assert strict["overall_accuracy"] == 0.75  # A right; B's and C's heavyweight right (C assumed); D's wrong
    assert strict["cost_per_request_usd"] == pytest.approx(982 / 4)
    assert strict["heavyweight_cost_per_request_usd"] == pytest.approx(275)
    assert strict["cost_reduction"] == pytest.approx(1 - 982 / 1100, abs=1e-6)
    assert strict["escalation_reasons"] == {"window_mean": 3, "early_token": 0, "unjudged": 0}
    assert strict["wrong_escalated"] == 1.0  # B and D
    # (1.5, 2, 0): only B escalates (234); A 18, C 32, D 32: 316 in all.
    loose = row(result, (1.5, 2, 0))
    assert (loose["escalation_rate"], loose["overall_accuracy"]) == (0.25, 0.75)
    assert loose["accepted_accuracy"] == pytest.approx(2 / 3, abs=1e-6)  # A and C right, D wrong
    assert loose["cost_reduction"] == pytest.approx(1 - 316 / 1100, abs=1e-6)
    assert loose["wrong_escalated"] == 0.5  # B, not D
    # (1.5, 2, 2): B aborts at its first token (10 + 2 + 220 = 232): 314 in all.
    early = row(result, (1.5, 2, 2))
    assert early["cost_reduction"] == pytest.approx(1 - 314 / 1100, abs=1e-6)
    assert early["escalation_reasons"] == {"window_mean": 0, "early_token": 1, "unjudged": 0}
    # Per split and category at (1.5, 2, 0). Train (A, B): 18 + 234 = 252 against 420.
    train = row(result, (1.5, 2, 0), "train")
    assert (train["n"], train["escalation_rate"], train["overall_accuracy"]) == (2, 0.5, 1.0)
    assert train["cost_reduction"] == pytest.approx(1 - 252 / 420, abs=1e-6)
    # Test (C, D): both accepted, 64 against 680; D's draft wrong.
    test = row(result, (1.5, 2, 0), "test")
    assert (test["escalation_rate"], test["accepted_accuracy"], test["overall_accuracy"]) == (0.0, 0.5, 0.5)
    assert test["cost_reduction"] == pytest.approx(1 - 64 / 680, abs=1e-6)
    # Code (B, D), both splits: B escalated (234), D accepted wrong (32), against 580.
    code = row(result, (1.5, 2, 0), "all", "code")
    assert (code["escalation_rate"], code["accepted_accuracy"], code["overall_accuracy"]) == (0.5, 0.0, 0.5)
    assert code["cost_reduction"] == pytest.approx(1 - 266 / 580, abs=1e-6)
    assert result["assumptions"]["escalated_answers"].startswith("graded heavyweight answers for 3 prompts; "
                                                                 "assumed right for 1")
    assert "for 1 the heavyweight's answer was not collected" in result["assumptions"]["heavyweight_cost"]
    assert result["inputs"]["left_out"] == {"drafter_error": 1, "drafter_ungraded": 1}


def test_the_operating_point_is_chosen_on_the_train_split_and_measured_on_every_split(
        loaded: graded.Loaded) -> None:
    result = sweep(loaded, PRICES, Options(grid=GRID, choose_split="train", min_accuracy=0.9, resamples=200,
                                           progress=False))
    # Train: every point is right on both (B always escalated); early exit 2 saves most (B aborted at
    # token 1: 250 against 420), at both thresholds: the tie goes to the lower, more cautious one.
    chosen = result["chosen"]
    assert (chosen["threshold"], chosen["window"], chosen["early_exit"]) == (0.5, 2, 2)
    (on_train,) = [r for r in chosen["rows"] if (r["split"], r["category"]) == ("train", "all")]
    assert on_train["cost_reduction"] == pytest.approx(1 - 250 / 420, abs=1e-6)
    (on_test,) = [r for r in chosen["rows"] if (r["split"], r["category"]) == ("test", "all")]
    assert on_test["escalation_rate"] == 1.0  # C and D abort at their first token above 0.5 bits
    # Chosen on everything at 75%: the most saving point, (1.5, 2, 2).
    everything = sweep(loaded, PRICES, Options(grid=GRID, choose_split="all", min_accuracy=0.75, resamples=200,
                                               progress=False))
    assert (everything["chosen"]["threshold"], everything["chosen"]["early_exit"]) == (1.5, 2)
    unreachable = sweep(loaded, PRICES, Options(grid=GRID, choose_split="all", min_accuracy=0.8, resamples=200,
                                                progress=False))
    assert unreachable["chosen"] is None


def test_bootstrap_intervals_are_the_same_for_the_same_seed_and_bracket_the_estimate(loaded: graded.Loaded) -> None:
    options = Options(grid=GRID, resamples=300, progress=False)
    first, second = sweep(loaded, PRICES, options), sweep(loaded, PRICES, options)
    assert first["rows"] == second["rows"] and first["auroc"] == second["auroc"]
    other = sweep(loaded, PRICES, Options(grid=GRID, resamples=300, seed=1, progress=False))
    assert [r["ci"] for r in other["rows"]] != [r["ci"] for r in first["rows"]]
    for r in first["rows"]:
        low, high = r["ci"]["cost_reduction"]
        assert low <= r["cost_reduction"] + 1e-9 and r["cost_reduction"] <= high + 1e-9
    counts = bootstrap.resamples(7, "x", count=50, seed=3).counts
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts == bootstrap.resamples(7, "x", count=50, seed=3).counts).all()
    assert not (counts == bootstrap.resamples(7, "y", count=50, seed=3).counts).all()


def summary(reduction: float, accuracy: float) -> Summary:
    return Summary(n=10, escalation_rate=0.5, accepted_accuracy=accuracy, overall_accuracy=accuracy,
                   cost_per_request_usd=1.0, heavyweight_cost_per_request_usd=2.0, cost_reduction=reduction,
                   wrong_escalated=0.5, ci={})


def point(threshold: float, reduction: float, accuracy: float, window: int = 10) -> operating.Point:
    return operating.Point(Setting(threshold, window, 10), summary(reduction, accuracy))


def test_choose_takes_the_most_saving_point_that_keeps_the_accuracy() -> None:
    points = [point(1.0, 0.2, 0.99), point(1.5, 0.5, 0.95), point(2.0, 0.5, 0.96), point(2.5, 0.7, 0.89),
              point(1.8, 0.5, 0.96, window=5)]
    chosen = operating.choose(points, min_accuracy=0.95)
    assert chosen is not None and (chosen.setting.threshold, chosen.setting.window) == (1.8, 5)  # ties: lower
    assert operating.choose(points, min_accuracy=0.89).setting.threshold == 2.5  # type: ignore[union-attr]
    assert operating.choose(points, min_accuracy=0.995) is None


def test_the_knee_is_the_front_point_farthest_above_the_chord() -> None:
    # Front from (0, 1.0) to (0.8, 0.5): (0.5, 0.95) bends farthest; (0.3, 0.9) is dominated by it.
    points = [point(0.5, 0.0, 1.0), point(1.0, 0.3, 0.9), point(1.5, 0.5, 0.95), point(2.0, 0.6, 0.8),
              point(2.5, 0.8, 0.5)]
    assert [p.setting.threshold for p in operating.front(points)] == [0.5, 1.5, 2.0, 2.5]
    assert operating.knee(points).setting.threshold == 1.5  # type: ignore[union-attr]
    straight = [point(0.5, 0.0, 1.0), point(1.0, 0.5, 0.75), point(1.5, 1.0, 0.5)]
    assert operating.knee(straight) is None
    assert operating.knee(points[:2]) is None


def test_a_baseline_escalates_its_highest_scores_and_splits_ties_at_the_cut() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.5, 0.2])
    assert baselines.shares(scores, 2).tolist() == pytest.approx([1, 0, 1 / 3, 1 / 3, 1 / 3, 0])
    assert baselines.shares(scores, 0).tolist() == [0] * 6
    assert baselines.shares(scores, 6).tolist() == [1] * 6
    assert baselines.shares(scores, 1.5).sum() == pytest.approx(1.5)


def test_baselines_pay_the_draft_only_when_they_decide_after_it(loaded: graded.Loaded) -> None:
    items = loaded.items
    signals = [baselines.item_signals(i, 5) for i in items]
    usable = baselines.available(baselines.BASELINES, signals)
    assert "prompt_length" not in [b.name for b in usable]  # no prompt set given
    columns, rules = baselines.rules(usable, [0.5], items, signals, PRICES)
    names = [b.name for b, _ in columns]
    assert names == ["random", "min_logprob", "max_entropy", "q80_neglogprob", "always_drafter",
                     "always_heavyweight"]
    by_name = dict(zip(names, rules.cost.T, strict=True))
    # Random escalates half of each item before drafting: half the draft and half the heavyweight.
    assert by_name["random"].tolist() == pytest.approx([(18 + 200) / 2, (18 + 220) / 2, (32 + 320) / 2,
                                                        (32 + 360) / 2])
    # Largest token entropy: B (2 bits) and C (2 bits) escalate after their whole draft.
    assert by_name["max_entropy"].tolist() == pytest.approx([18, 18 + 220, 32 + 320, 32])
    assert by_name["always_heavyweight"].tolist() == pytest.approx([200, 220, 320, 360])
    assert by_name["always_drafter"].tolist() == pytest.approx([18, 18, 32, 32])


def test_auroc_intervals_are_sklearns_auroc_on_each_resample() -> None:
    wrong = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1.0])
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.2, 0.3, 0.3, 0.3, 0.05, 0.7])
    resamples = bootstrap.resamples(10, "auroc", count=40)
    per_row = weighted(wrong, scores, resamples.counts)
    for counts, value in zip(resamples.counts, per_row, strict=True):
        if counts[wrong == 1].sum() and counts[wrong == 0].sum():
            assert value == pytest.approx(roc_auc_score(wrong, scores, sample_weight=counts))
    result = auroc(wrong, scores, resamples)
    assert result.auroc == pytest.approx(roc_auc_score(wrong, scores))
    assert result.ci is not None and result.ci[0] <= result.auroc <= result.ci[1]
    assert auroc(np.zeros(4), np.arange(4.0), resamples).auroc is None


def test_the_cli_writes_the_sweep_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("drafter:\n  base_url: http://127.0.0.1:1\n  model: d\n  input_usd_per_mtok: 1000000\n"
                      "  output_usd_per_mtok: 2000000\nheavyweight:\n  base_url: http://127.0.0.1:1\n  model: h\n"
                      "  input_usd_per_mtok: 10000000\n  output_usd_per_mtok: 20000000\n")
    out = tmp_path / "sweep.json"
    args = ["sweep", "--traces", str(write_lines(tmp_path / "t.jsonl", TRACES)),
            "--grades", str(write_lines(tmp_path / "g.jsonl", GRADES)), "--prompts", str(tmp_path / "none.jsonl"),
            "--config", str(config), "--thresholds", "0.5:1.5:1.0", "--windows", "2", "--early-exit", "0,2",
            "--min-accuracy", "0.9", "--resamples", "100", "--out", str(out), "--quiet"]
    assert calibrate.main(args) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "draftgate-sweep" and result["grid"]["thresholds"] == [0.5, 1.5]
    assert row(result, (1.5, 2, 0))["cost_reduction"] == pytest.approx(1 - 316 / 1100, abs=1e-6)
    assert "chosen: threshold 0.5 window 2 early_exit 2" in capsys.readouterr().out
    assert calibrate.main([*args, "--top-k", "21"]) == 2  # recorded with 20
