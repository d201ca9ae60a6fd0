"""What the calibration report shows, read from a sweep's JSON (and a policy's scores): a View of one
split, the plots drawn from it, and the Markdown that explains it to someone who did not run it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.router.calibration import baselines, bootstrap, operating, plots
from services.router.calibration.auroc import auroc
from services.router.calibration.replay import Setting
from services.router.calibration.summary import Summary

if TYPE_CHECKING:
    from services.router.calibration.report import PolicyScores

ALL = "all"
CAUGHT_AT = 0.3  # the escalation rate at which the report counts the wrong drafts a signal catches
COST_PLOT, DISTRIBUTIONS_PLOT, ROC_PLOT = "cost_accuracy.png", "entropy_distributions.png", "roc.png"
POLICY = "policy"
DISTRIBUTION_SIGNALS = ("max_entropy", "mean_entropy")


@dataclass(frozen=True)
class Signal:
    name: str
    auroc: float | None
    ci: Sequence[float] | None
    caught: float | None  # share of wrong drafts among the CAUGHT_AT riskiest by this signal


@dataclass(frozen=True)
class View:
    result: Mapping[str, Any]
    split: str
    rows: list[dict[str, Any]]  # the grid on this split, all categories together
    front: list[dict[str, Any]]
    items: list[dict[str, Any]]
    scores: dict[str, list[float]]  # signal (and policy variant) -> score per item of `items`
    signals: list[Signal]  # best AUROC first
    policy: PolicyScores | None

    @classmethod
    def of(cls, result: Mapping[str, Any], split: str, policy: PolicyScores | None = None) -> View:
        rows = [r for r in result["rows"] if r["split"] == split and r["category"] == ALL]
        if not rows:
            raise ValueError(f"the sweep has no {split!r} split")
        points = [operating.Point(Setting(r["threshold"], r["window"], r["early_exit"]), Summary.from_json(r))
                  for r in rows]
        by_setting = {(r["threshold"], r["window"], r["early_exit"]): r for r in rows}
        front = [by_setting[p.setting.threshold, p.setting.window, p.setting.early_exit]
                 for p in operating.front(points)]
        items = [i for i in result["items"] if split in (ALL, i["split"])]
        scores = {name: [i["signals"][name] for i in items] for name in sorted(result["auroc"].get(split, {}))}
        aurocs = dict(result["auroc"].get(split, {}))
        if policy is not None:
            scores, aurocs = _with_policy(result, split, items, scores, aurocs, policy)
        wrong = np.array([0.0 if i["draft_correct"] else 1.0 for i in items])
        signals = [Signal(name, aurocs[name]["auroc"], aurocs[name]["ci"], _caught(wrong, scores[name]))
                   for name in scores]
        signals.sort(key=lambda s: -1.0 if s.auroc is None else -s.auroc)
        return cls(result, split, rows, front, items, scores, signals, policy)

    @property
    def wrong(self) -> list[bool]:
        return [not i["draft_correct"] for i in self.items]

    def at(self, label: str, category: str = ALL, split: str | None = None) -> dict[str, Any] | None:
        """The chosen point's (or the knee's) row on a split and category."""
        point = self.result.get(label)
        if point is None:
            return None
        split = split or self.split
        found = [r for r in point["rows"] if r["split"] == split and r["category"] == category]
        return found[0] if found else None


def _with_policy(result: Mapping[str, Any], split: str, items: Sequence[dict[str, Any]],
                 scores: dict[str, list[float]], aurocs: dict[str, Any], policy: PolicyScores
                 ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """The policy's variants as more scores, on the drafts the policy could score, with AUROC from the
    same resamples as the sweep's signals."""
    scores, aurocs = dict(scores), dict(aurocs)
    wrong = np.array([0.0 if i["draft_correct"] else 1.0 for i in items])
    resamples = bootstrap.resamples(len(items), f"auroc/{split}", result["bootstrap"]["resamples"],
                                    result["bootstrap"]["seed"])
    for variant, risks in policy.risks.items():
        missing = [i["id"] for i in items if i["id"] not in risks]
        if missing:
            raise ValueError(f"the policy could not score {len(missing)} drafts of the sweep (first: {missing[0]!r});"
                             " give the traces, grades and prompts the sweep was run on")
        name = f"{POLICY}:{variant}"
        scores[name] = [risks[i["id"]] for i in items]
        aurocs[name] = auroc(wrong, np.array(scores[name]), resamples).to_json()
    return scores, aurocs


def _caught(wrong: np.ndarray, scores: Sequence[float]) -> float | None:
    if not wrong.sum():
        return None
    share = baselines.shares(np.asarray(scores, dtype=float), CAUGHT_AT * len(wrong))
    return float((share * wrong).sum() / wrong.sum())


def draw(view: View, out: Path) -> None:
    result = view.result
    marked = []
    for label, name in (("chosen", "chosen"), ("knee", "knee")):
        row = view.at(label)
        if row is not None:
            point = result[label]
            marked.append(plots.Marked(f"{name}: {point['threshold']} bits, window {point['window']}, early exit "
                                       f"{point['early_exit']}", row["cost_reduction"], row["overall_accuracy"],
                                       row["ci"].get("cost_reduction"), row["ci"].get("overall_accuracy")))
    curves = result["baselines"].get(view.split, {}).get("curves", {})
    scored = {name: c for name, c in curves.items() if len(c) > 1}
    ends = {name: c[0] for name, c in curves.items() if len(c) == 1}
    target = result["min_accuracy"] if result["choose_split"] == view.split else None
    plots.cost_accuracy(view.rows, view.front, marked, scored, ends, target, out / COST_PLOT,
                        f"Cost against accuracy, {view.split} split ({len(view.items)} prompts)")
    shown = {name: view.scores[name] for name in (*DISTRIBUTION_SIGNALS, _router_signal(view)) if name in view.scores}
    plots.distributions(shown, view.wrong, out / DISTRIBUTIONS_PLOT,
                        f"Entropy of right and wrong drafts, {view.split} split")
    plots.roc(view.scores, view.wrong, {s.name: s.auroc for s in view.signals}, out / ROC_PLOT,
              f"Telling wrong drafts from right ones, {view.split} split",
              bold=[name for name in view.scores if name.startswith(POLICY) or name == _router_signal(view)])


def _router_signal(view: View) -> str:
    """The router's own score at the chosen window (the draft's largest full-window mean)."""
    chosen = view.result.get("chosen") or {}
    return f"window_mean_w{chosen.get('window', 10)}"


def markdown(view: View) -> str:
    result, inputs = view.result, view.result["inputs"]
    lines = [f"# draftgate calibration report: the {view.split} split", "", *_headline(view), "",
             "## Data", "", *_data(view), "", "## Operating point", "", *_operating(view), "",
             f"![cost reduction against overall accuracy]({COST_PLOT})", "",
             "## Baselines at the same escalation rate", "", *_baselines(view), "",
             "## Per category at the chosen point", "", *_categories(view), "",
             "## Signals: telling wrong drafts from right ones", "", *_signals(view), "",
             f"![ROC curves]({ROC_PLOT})", "", f"![entropy of right and wrong drafts]({DISTRIBUTIONS_PLOT})", "",
             "## Assumptions", "", *[f"- {name.replace('_', ' ')}: {text}" for name, text in
                                     result["assumptions"].items()],
             f"- intervals: bootstrap {result['bootstrap']['level']:.0%} percentile intervals, "
             f"{result['bootstrap']['resamples']} resamples of the prompts, seed {result['bootstrap']['seed']}",
             f"- tokens: each recorded token's {inputs['recorded_top_k']} alternatives cut to the router's "
             f"k={inputs['top_k']} before its entropy is taken", ""]
    return "\n".join(lines)


def _headline(view: View) -> list[str]:
    result = view.result
    row = view.at("chosen")
    if row is None:
        return [f"No setting of the grid kept overall accuracy at or above {result['min_accuracy']} on the "
                f"{result['choose_split']} split: no operating point was chosen."]
    chosen = result["chosen"]
    wrong = sum(view.wrong)
    return [f"Chosen on the {result['choose_split']} split (the most saving setting whose overall accuracy stays "
            f"at or above {result['min_accuracy']}): **threshold {chosen['threshold']} bits, window "
            f"{chosen['window']} tokens, early exit {chosen['early_exit']} tokens**. On the {view.split} split "
            f"({row['n']} prompts, {wrong} drafts wrong) it escalates {_pct(row['escalation_rate'])} of requests, "
            f"cuts cost by **{_pct(row['cost_reduction'])}** {_ci(row, 'cost_reduction')} against sending "
            f"everything to the heavyweight, at overall accuracy **{_num(row['overall_accuracy'])}** "
            f"{_ci(row, 'overall_accuracy')}, and escalates {_pct(row.get('wrong_escalated'))} of the wrong drafts."]


def _data(view: View) -> list[str]:
    inputs = view.result["inputs"]
    prices = inputs["prices_usd_per_mtok"]
    models = inputs.get("models") or {}
    left_out = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in inputs["left_out"].items()) or "none"
    return [f"- {inputs['items']} graded drafts ({inputs['wrong_drafts']} wrong); splits "
            f"{_counts(inputs['splits'])}; categories {_counts(inputs['categories'])}; left out: {left_out}",
            f"- drafter {models.get('drafter', '?')} at ${prices['drafter'][0]:g} / ${prices['drafter'][1]:g}, "
            f"heavyweight {models.get('heavyweight', 'not collected')} priced at ${prices['heavyweight'][0]:g} / "
            f"${prices['heavyweight'][1]:g} per million input / output tokens",
            f"- grid: thresholds {_span(view.result['grid']['thresholds'])} bits, windows "
            f"{view.result['grid']['windows']}, early exit {view.result['grid']['early_exit']}"]


def _operating(view: View) -> list[str]:
    lines = ["| point | setting | split | n | escalated | accepted-draft accuracy | overall accuracy | "
             "cost reduction | wrong drafts escalated |", "|---|---|---|---|---|---|---|---|---|"]
    for label in ("chosen", "knee"):
        point = view.result.get(label)
        if point is None:
            lines.append(f"| {label} | none | | | | | | | |")
            continue
        for split in (ALL, "train", "test"):
            row = view.at(label, split=split)
            if row is not None:
                setting = f"{point['threshold']} bits / {point['window']} / {point['early_exit']}"
                lines.append(f"| {label} | {setting} | {split} | {row['n']} | {_pct(row['escalation_rate'])} | "
                             f"{_num(row['accepted_accuracy'])} {_ci(row, 'accepted_accuracy')} | "
                             f"{_num(row['overall_accuracy'])} {_ci(row, 'overall_accuracy')} | "
                             f"{_pct(row['cost_reduction'])} {_ci(row, 'cost_reduction')} | "
                             f"{_pct(row.get('wrong_escalated'))} |")
    lines += ["", "Setting: threshold / window / early exit. The knee is the point of the best settings' curve "
              "where saving more starts to cost accuracy fastest."]
    return lines


def _baselines(view: View) -> list[str]:
    at = view.result["baselines"].get(view.split, {})
    lines: list[str] = []
    for label in ("chosen", "knee"):
        block, row = at.get(f"at_{label}"), view.at(label)
        if block is None or row is None:
            continue
        lines += [f"At the {label} point's escalation rate ({_pct(block['escalation_rate'])}):", "",
                  "| router | escalated | accepted-draft accuracy | overall accuracy | cost reduction | "
                  "wrong drafts escalated |", "|---|---|---|---|---|---|",
                  _baseline_row("entropy rule", row)]
        lines += [_baseline_row(b["name"].replace("_", " "), b) for b in block["rows"]]
        lines.append("")
    if not lines:
        return ["No operating point: nothing to compare at."]
    lines.append(view.result["assumptions"]["baselines"] + ".")
    return lines


def _baseline_row(name: str, row: Mapping[str, Any]) -> str:
    return (f"| {name} | {_pct(row['escalation_rate'])} | {_num(row['accepted_accuracy'])} | "
            f"{_num(row['overall_accuracy'])} {_ci(row, 'overall_accuracy')} | {_pct(row['cost_reduction'])} "
            f"{_ci(row, 'cost_reduction')} | {_pct(row.get('wrong_escalated'))} |")


def _categories(view: View) -> list[str]:
    point = view.result.get("chosen")
    if point is None:
        return ["No operating point was chosen."]
    rows = [r for r in point["rows"] if r["split"] == view.split and r["category"] != ALL]
    lines = ["| category | n | escalated | accepted-draft accuracy | overall accuracy | cost reduction | "
             "wrong drafts escalated |", "|---|---|---|---|---|---|---|"]
    for row in [*sorted(rows, key=lambda r: r["category"]), view.at("chosen")]:
        if row is not None:
            lines.append(f"| {row['category']} | {row['n']} | {_pct(row['escalation_rate'])} | "
                         f"{_num(row['accepted_accuracy'])} | {_num(row['overall_accuracy'])} "
                         f"{_ci(row, 'overall_accuracy')} | {_pct(row['cost_reduction'])} "
                         f"{_ci(row, 'cost_reduction')} | {_pct(row.get('wrong_escalated'))} |")
    return lines


def _signals(view: View) -> list[str]:
    lines = [f"| signal | AUROC (95% CI) | wrong drafts caught at {CAUGHT_AT:.0%} escalated |", "|---|---|---|"]
    for s in view.signals:
        ci = "" if s.ci is None else f" ({s.ci[0]:.3f} to {s.ci[1]:.3f})"
        name = f"**{s.name}**" if s.name.startswith(POLICY) else s.name
        lines.append(f"| {name} | {_num(s.auroc, 3)}{ci} | {_pct(s.caught)} |")
    wrong = sum(view.wrong)
    best = f" A perfect ranking catches {min(1.0, CAUGHT_AT * len(view.items) / wrong):.1%} here ({wrong} of " \
        f"{len(view.items)} drafts wrong)." if wrong else ""
    lines += ["", "Higher scores mean more likely wrong. window_mean_wN is the router's own rule as one score "
              "(the draft's largest mean entropy over N tokens); caught: the share of wrong drafts among the "
              f"{CAUGHT_AT:.0%} of drafts the signal scores highest (ties split).{best}"]
    if view.policy is not None:
        metrics = view.policy.metrics
        thresholds = ", ".join(f"{name} {value:.3f}" for name, value in view.policy.thresholds.items())
        lines += ["", f"Policy {view.policy.path}: risk thresholds {thresholds}; its own measurement: "
                  f"cross-validated AUROC {metrics.get('cv_auroc')}, test AUROC {metrics.get('test_auroc')}, "
                  f"wrong drafts caught at 30% {metrics.get('caught_at_30')}."]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{round(value, 6) + 0.0:.1%}"  # + 0.0: no "-0.0%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(row: Mapping[str, Any], name: str) -> str:
    pair = (row.get("ci") or {}).get(name)
    if pair is None:
        return ""
    if name in ("cost_reduction", "wrong_escalated"):
        return f"({_pct(pair[0])} to {_pct(pair[1])})"
    return f"({pair[0]:.3f} to {pair[1]:.3f})"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _span(values: Sequence[float]) -> str:
    return f"{values[0]} to {values[-1]} ({len(values)} values)" if len(values) > 2 else ", ".join(map(str, values))
