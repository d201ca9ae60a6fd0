"""`calibrate sweep`'s work: replay every graded draft at every grid point (outcomes.py), summarise each
point per split and category with intervals (summary.py), choose the operating point and the knee
(operating.py), hold the baselines against it (baselines.py) and measure each signal's AUROC (auroc.py),
as one JSON-able dict that `report` reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.router.calibration import baselines as base
from services.router.calibration import bootstrap, operating
from services.router.calibration.auroc import auroc
from services.router.calibration.graded import Item, Loaded, Prices
from services.router.calibration.operating import Point
from services.router.calibration.outcomes import REASONS, Grid, Outcomes, replay_grid
from services.router.calibration.replay import Setting, token_bits, window_metric
from services.router.calibration.summary import Rules, Summary, summarise
from services.router.calibration.sweep import (
    ALL,
    EARLY_EXIT,
    KIND,
    MIN_ACCURACY,
    THRESHOLDS,
    VERSION,
    WINDOWS,
)

DEFAULT_GRID = Grid(thresholds=THRESHOLDS, windows=WINDOWS, early_exit=EARLY_EXIT)
CURVE_RATES = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class Options:
    grid: Grid = DEFAULT_GRID
    top_k: int = 5
    choose_split: str = "train"
    min_accuracy: float = MIN_ACCURACY
    resamples: int = bootstrap.RESAMPLES
    seed: int = bootstrap.SEED
    progress: bool = True


def sweep(loaded: Loaded, prices: Prices, options: Options) -> dict[str, Any]:
    """The whole sweep as one JSON-able dict (see `report` for how it is read)."""
    items = loaded.items
    outcomes = replay_grid(items, options.grid.settings(), options.top_k, prices, options.progress)
    subsets = _subsets(items)
    summaries = {name: _summaries(outcomes, rows, name, options) for name, rows in subsets.items()}
    splits = [name for name in (ALL, "train", "test") if (name, ALL) in subsets]
    choose_on = options.choose_split if (options.choose_split, ALL) in subsets else ALL
    points = [Point(s, summary) for s, summary in zip(outcomes.settings, summaries[(choose_on, ALL)], strict=True)]
    chosen = operating.choose(points, options.min_accuracy)
    knee = operating.knee(points)
    signals = [base.item_signals(i, options.top_k) for i in items]
    _add_window_metrics(items, signals, options)
    return {
        "kind": KIND, "version": VERSION,
        "inputs": _inputs(loaded, prices, options),
        "assumptions": _assumptions(items),
        "grid": options.grid.to_json(),
        "bootstrap": {"resamples": options.resamples, "seed": options.seed, "level": bootstrap.LEVEL,
                      "unit": "prompt (resampled with replacement within each split and category)"},
        "choose_split": choose_on, "report_split": "test" if "test" in splits else ALL,
        "min_accuracy": options.min_accuracy,
        "rows": [_row(outcomes.settings[c], split, category, summary, _reasons(outcomes, subsets[split, category], c))
                 for (split, category), column in summaries.items() for c, summary in enumerate(column)],
        "chosen": _at(chosen, outcomes, summaries),
        "knee": _at(knee, outcomes, summaries),
        "baselines": {split: _baselines(items, signals, subsets[split, ALL], summaries, outcomes, chosen, knee,
                                        split, prices, options) for split in splits},
        "auroc": {split: _aurocs(items, signals, subsets[split, ALL], split, options) for split in splits},
        "items": [{"id": i.id, "category": i.category, "split": i.split, "draft_correct": i.draft_correct,
                   "heavy_correct": i.heavy_correct, "heavy_graded": i.heavy_graded,
                   "signals": {k: round(v, 5) for k, v in s.items()}} for i, s in zip(items, signals, strict=True)],
    }


def _subsets(items: Sequence[Item]) -> dict[tuple[str, str], np.ndarray]:
    """(split, category) -> item rows, "all" for either; only the non-empty ones."""
    out: dict[tuple[str, str], np.ndarray] = {}
    categories = sorted({i.category for i in items})
    for split in (ALL, "train", "test"):
        for category in (ALL, *categories):
            rows = np.array([n for n, i in enumerate(items)
                             if split in (ALL, i.split) and category in (ALL, i.category)], dtype=np.intp)
            if rows.size:
                out[split, category] = rows
    return out


def _summaries(outcomes: Outcomes, rows: np.ndarray, name: tuple[str, str], options: Options) -> list[Summary]:
    resamples = bootstrap.resamples(len(rows), "/".join(name), options.resamples, options.seed)
    rules = Rules(outcomes.rules.escalated[rows], outcomes.rules.cost[rows])
    return summarise(rules, outcomes.truth.take(rows), resamples)


def _reasons(outcomes: Outcomes, rows: np.ndarray, column: int) -> dict[str, int]:
    codes = outcomes.reasons[rows, column]
    return {reason: int((codes == index).sum()) for index, reason in enumerate(REASONS)}


def _row(setting: Setting, split: str, category: str, summary: Summary, reasons: dict[str, int]) -> dict[str, Any]:
    return {"threshold": setting.threshold, "window": setting.window, "early_exit": setting.early_exit,
            "split": split, "category": category, **summary.to_json(), "escalation_reasons": reasons}


def _at(point: Point | None, outcomes: Outcomes, summaries: dict[tuple[str, str], list[Summary]]) -> dict | None:
    """A point's setting and its rows on every split and category."""
    if point is None:
        return None
    column = outcomes.settings.index(point.setting)
    return {"threshold": point.setting.threshold, "window": point.setting.window,
            "early_exit": point.setting.early_exit,
            "rows": [{"split": split, "category": category, **column_of[column].to_json()}
                     for (split, category), column_of in summaries.items()]}


def _baselines(items: Sequence[Item], signals: Sequence[dict[str, float]], rows: np.ndarray,
               summaries: dict[tuple[str, str], list[Summary]], outcomes: Outcomes, chosen: Point | None,
               knee: Point | None, split: str, prices: Prices, options: Options) -> dict[str, Any]:
    """Every baseline at the escalation rate the chosen point and the knee have on this split, and
    over rates 0-100% for the curves."""
    subset = [items[r] for r in rows]
    subset_signals = [signals[r] for r in rows]
    usable = base.available(base.BASELINES, subset_signals)
    resamples = bootstrap.resamples(len(rows), f"{split}/{ALL}", options.resamples, options.seed)
    truth = outcomes.truth.take(rows)
    out: dict[str, Any] = {}
    for label, point in (("at_chosen", chosen), ("at_knee", knee)):
        if point is None:
            out[label] = None
            continue
        rate = summaries[split, ALL][outcomes.settings.index(point.setting)].escalation_rate
        columns, rules = base.rules(usable, [rate], subset, subset_signals, prices)
        out[label] = {"escalation_rate": round(rate, 6),
                      "rows": [{"name": b.name, **s.to_json()}
                               for (b, _), s in zip(columns, summarise(rules, truth, resamples), strict=True)]}
    columns, rules = base.rules(usable, CURVE_RATES, subset, subset_signals, prices)
    curves: dict[str, list[dict[str, Any]]] = {}
    for (baseline, rate), summary in zip(columns, summarise(rules, truth, resamples), strict=True):
        curves.setdefault(baseline.name, []).append({"rate": rate, **summary.to_json()})
    out["curves"] = curves
    return out


def _add_window_metrics(items: Sequence[Item], signals: list[dict[str, float]], options: Options) -> None:
    """Each draft's largest full-window mean at every window of the grid: the router's own score."""
    for item, item_signals in zip(items, signals, strict=True):
        bits = token_bits(item.tokens, options.top_k)
        for size in options.grid.windows:
            item_signals[f"window_mean_w{size}"] = window_metric(bits, size)


def _aurocs(items: Sequence[Item], signals: Sequence[dict[str, float]], rows: np.ndarray, split: str,
            options: Options) -> dict[str, Any]:
    wrong = np.array([0.0 if items[r].draft_correct else 1.0 for r in rows])
    resamples = bootstrap.resamples(len(rows), f"auroc/{split}", options.resamples, options.seed)
    names = sorted(set.intersection(*(set(signals[r]) for r in rows)))
    return {name: auroc(wrong, np.array([signals[r][name] for r in rows]), resamples).to_json() for name in names}


def _inputs(loaded: Loaded, prices: Prices, options: Options) -> dict[str, Any]:
    items = loaded.items
    return {
        "items": len(items),
        "splits": {s: sum(i.split == s for i in items) for s in sorted({i.split for i in items})},
        "categories": {c: sum(i.category == c for i in items) for c in sorted({i.category for i in items})},
        "left_out": dict(loaded.skipped),
        "models": loaded.models, "recorded_top_k": loaded.top_k, "top_k": options.top_k,
        "prices_usd_per_mtok": {"drafter": [prices.drafter.input_usd_per_mtok, prices.drafter.output_usd_per_mtok],
                                "heavyweight": [prices.heavyweight.input_usd_per_mtok,
                                                prices.heavyweight.output_usd_per_mtok]},
        "wrong_drafts": sum(not i.draft_correct for i in items),
    }


def _assumptions(items: Sequence[Item]) -> dict[str, str]:
    graded_heavy = sum(i.heavy_graded for i in items)
    measured = sum(i.heavy_measured for i in items)
    if graded_heavy == len(items):
        escalated = "graded heavyweight answers"
    elif graded_heavy == 0:
        escalated = "assumed right (no graded heavyweight answer was collected)"
    else:
        escalated = (f"graded heavyweight answers for {graded_heavy} prompts; assumed right for "
                     f"{len(items) - graded_heavy} (not collected or not graded)")
    if measured == len(items):
        heavy_cost = "the heavyweight's recorded usage"
    else:
        heavy_cost = (f"recorded usage for {measured} prompts; for {len(items) - measured} the heavyweight's answer "
                      "was not collected: its output length is taken as the draft's and its prompt as the drafter's")
    return {
        "escalated_answers": escalated,
        "heavyweight_cost": heavy_cost,
        "drafter_cost": "the prompt plus the tokens drafted up to the abort (the whole draft when accepted)",
        "speculation": "not counted: speculative heavyweight calls that were cancelled cost extra in a live router",
        "streaming": "an escalation asks the heavyweight for the whole answer, as for plain requests and buffered "
                     "streams; a progressive stream continued after the seam pays it only for the rest",
        "baselines": "random and prompt length decide before drafting (no draft paid when they escalate); the "
                     "trace signals decide after the whole draft (all of it paid); ties at the cut escalated in part",
    }


