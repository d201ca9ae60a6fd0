"""`calibrate report`: a sweep of a small seeded trace file renders to Markdown with its three plots; a
policy file is scored on the same drafts as the router scores them; --write-config writes the chosen
point (and the policy) into a config YAML, comments kept."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.router import calibrate
from services.router.calibration.traces import Trace, Usage
from services.router.risk import TRACE_ONLY, RiskPolicy, Variant, dump_policy
from services.router.signals import TokenTrace

CATEGORIES = ("factual", "reasoning", "code", "creative")
CONFIG = """\
drafter:
  base_url: http://127.0.0.1:1
  model: d
  input_usd_per_mtok: 0.1
  output_usd_per_mtok: 0.4
heavyweight:
  base_url: http://127.0.0.1:1
  model: h
  input_usd_per_mtok: 2.0
  output_usd_per_mtok: 8.0

routing:
  entropy_threshold: 2.0       # bits; escalate when the window mean exceeds it
  window: 10                   # tokens in the sliding window
  top_logprobs: 5              # k
  early_exit_tokens: 10        # any single token above the threshold this early escalates
"""


def uniform(n: int) -> tuple[float, ...]:
    return (math.log(1 / n),) * n


def draft(rng: random.Random, wrong: bool) -> tuple[TokenTrace, ...]:
    """Wrong drafts lean towards flatter alternatives (more entropy), right ones towards one sure token."""
    out = []
    for i in range(rng.randint(12, 30)):
        spread = rng.choice((1, 2, 4, 5, 5) if wrong else (1, 1, 1, 2, 4))
        alternatives = uniform(spread) + (math.log(1e-6),) * (20 - spread)
        out.append(TokenTrace(f" w{i}", alternatives[0], alternatives))
    return tuple(out)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = random.Random(5)
    traces, grades, prompts = [], [], []
    for n in range(48):
        item_id, category, split = f"i{n}", CATEGORIES[(n // 2) % 4], ("train", "test")[n % 2]
        wrong = rng.random() < 0.4
        traces.append(Trace(id=item_id, tier="drafter", model="smol", category=category, split=split, text="x",
                            tokens=draft(rng, wrong), top_k=20, usage=Usage(30, 20)).to_json())
        grades.append({"v": 1, "id": item_id, "tier": "drafter", "correct": not wrong, "method": "exact",
                       "score": None, "detail": ""})
        prompts.append({"id": item_id, "category": category, "family": f"f{n}", "split": split, "max_tokens": 64,
                        "messages": [{"role": "user", "content": f"question {n}" + "?" * rng.randint(0, 30)}],
                        "grader": {"kind": "exact", "answer": "x"}})
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("traces", "grades", "prompts")}
    for name, records in (("traces", traces), ("grades", grades), ("prompts", prompts)):
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    paths["config"] = tmp_path / "config.yaml"
    paths["config"].write_text(CONFIG)
    paths["sweep"] = tmp_path / "sweep.json"
    args = ["sweep", "--traces", str(paths["traces"]), "--grades", str(paths["grades"]),
            "--prompts", str(paths["prompts"]), "--config", str(paths["config"]), "--thresholds", "0.5:2.5:0.25",
            "--windows", "5,10", "--early-exit", "0,5", "--min-accuracy", "0.9", "--resamples", "200",
            "--out", str(paths["sweep"]), "--quiet"]
    assert calibrate.main(args) == 0
    return paths


def report(files: dict[str, Path], out: Path, *extra: str) -> int:
    return calibrate.main(["report", "--sweep", str(files["sweep"]), "--out", str(out), "--traces",
                           str(files["traces"]), "--grades", str(files["grades"]), "--prompts", str(files["prompts"]),
                           "--quiet", *extra])


def test_the_report_renders_its_tables_and_plots_and_links_them(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report(files, out) == 0
    text = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == ["cost_accuracy.png", "entropy_distributions.png", "roc.png"]
    for name in linked:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000
    sweep = json.loads(files["sweep"].read_text())
    chosen = sweep["chosen"]
    assert f"threshold {chosen['threshold']} bits, window {chosen['window']} tokens" in text
    (test_row,) = [r for r in chosen["rows"] if (r["split"], r["category"]) == ("test", "all")]
    assert f"cuts cost by **{test_row['cost_reduction']:.1%}**" in text
    for category in CATEGORIES:
        assert re.search(rf"^\| {category} \| 6 \|", text, re.MULTILINE)  # a row per category, test split
    for baseline in ("random", "prompt length", "min logprob", "max entropy", "q80 neglogprob", "always drafter",
                     "always heavyweight"):
        assert f"| {baseline} |" in text
    assert "| window_mean_w10 |" in text and "assumed right (no graded heavyweight answer was collected)" in text
    assert "policy:" not in text


def test_a_policy_is_scored_on_the_same_drafts_and_ranks_as_its_feature_does(files: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    # Risk rises with the largest token entropy alone: its ROC and AUROC must be that signal's.
    policy = RiskPolicy(threshold=0.5, top_k=5, variants={TRACE_ONLY: Variant(
        name=TRACE_ONLY, features=("max_entropy",), mean=(1.0,), scale=(0.5,), coef=(2.0,), intercept=-0.5)},
        metrics={"test_auroc": 0.77})
    dump_policy(policy, tmp_path / "policy.json")
    out = tmp_path / "report"
    assert report(files, out, "--policy", str(tmp_path / "policy.json")) == 0
    text = (out / "report.md").read_text()
    rows = dict(re.findall(r"^\| \**([\w:]+)\** \| ([0-9.]+ \([0-9.]+ to [0-9.]+\)) \|", text, re.MULTILINE))
    assert rows["policy:trace_only"] == rows["max_entropy"]
    assert "test AUROC 0.77" in text
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "draftgate-risk-policy", "version": 1}')
    assert report(files, out, "--policy", str(broken)) == 2


def test_write_config_sets_the_chosen_point_and_the_policy_keeping_comments(files: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    sweep = json.loads(files["sweep"].read_text())
    chosen = sweep["chosen"]
    assert report(files, tmp_path / "report", "--write-config", str(files["config"])) == 0
    written = files["config"].read_text()
    routing = yaml.safe_load(written)["routing"]
    assert (routing["entropy_threshold"], routing["window"], routing["early_exit_tokens"]) == (
        chosen["threshold"], chosen["window"], chosen["early_exit"])
    assert "# bits; escalate when the window mean exceeds it" in written and "policy" not in routing
    policy = tmp_path / "p.json"
    dump_policy(RiskPolicy(threshold=0.5, top_k=5, variants={TRACE_ONLY: Variant(
        name=TRACE_ONLY, features=("max_entropy",), mean=(0.0,), scale=(1.0,), coef=(1.0,), intercept=0.0)}), policy)
    assert report(files, tmp_path / "report", "--policy", str(policy), "--write-config", str(files["config"])) == 0
    routing = yaml.safe_load(files["config"].read_text())["routing"]
    assert (routing["policy"], routing["risk_model"]) == ("learned", str(policy))


def test_write_config_refuses_when_the_sweep_chose_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    sweep: dict[str, Any] = json.loads(files["sweep"].read_text())
    sweep["chosen"] = None
    files["sweep"].write_text(json.dumps(sweep))
    before = files["config"].read_text()
    assert report(files, tmp_path / "report", "--write-config", str(files["config"])) == 1
    assert files["config"].read_text() == before
    assert "no operating point was chosen" in (tmp_path / "report" / "report.md").read_text()
