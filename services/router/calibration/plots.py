"""The calibration report's PNGs (matplotlib, Agg): cost against accuracy over the grid, the entropy of
right and wrong drafts, and ROC curves. Each function draws one file from plain numbers, so the report
decides what is shown and these only how."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

WINDOW_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")
BASELINE_STYLES = {"random": ("tab:gray", ":"), "prompt_length": ("tab:olive", "--"),
                   "min_logprob": ("tab:red", "--"), "max_entropy": ("tab:cyan", "--"),
                   "q80_neglogprob": ("tab:pink", "--")}
DPI = 110


@dataclass(frozen=True)
class Marked:
    """A point to mark on the cost/accuracy plot, with its intervals (None: no interval)."""

    label: str
    cost_reduction: float
    accuracy: float
    cost_ci: Sequence[float] | None
    accuracy_ci: Sequence[float] | None


def cost_accuracy(rows: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]], marked: Sequence[Marked],
                  curves: Mapping[str, Sequence[Mapping[str, Any]]], ends: Mapping[str, Mapping[str, Any]],
                  min_accuracy: float | None, path: Path, title: str) -> None:
    """Every grid point (colour: window), the Pareto front with its accuracy interval as a band, the
    marked points (chosen, knee) with both intervals, the baselines' curves over escalation rates and
    the two fixed ends."""
    fig = Figure(figsize=(9, 6.5))
    ax = fig.subplots()
    windows = sorted({r["window"] for r in rows})
    for index, window in enumerate(windows):
        mine = [r for r in rows if r["window"] == window]
        ax.scatter([r["cost_reduction"] for r in mine], [r["overall_accuracy"] for r in mine], s=9, alpha=0.45,
                   color=WINDOW_COLOURS[index % len(WINDOW_COLOURS)], label=f"entropy rule, window {window}")
    if front:
        xs = np.array([r["cost_reduction"] for r in front])
        ys = np.array([r["overall_accuracy"] for r in front])
        below, above = _spread(front, "overall_accuracy", ys)
        ax.fill_between(xs, ys - below, ys + above, color="black", alpha=0.12, lw=0,
                        label="entropy rule: accuracy 95% CI on the front")
        ax.plot(xs, ys, "-", color="black", lw=1.2, label="entropy rule: best settings (Pareto front)")
    for name, curve in curves.items():
        colour, style = BASELINE_STYLES.get(name, ("tab:gray", "-."))
        ax.plot([c["cost_reduction"] for c in curve], [c["overall_accuracy"] for c in curve], style, color=colour,
                lw=1.2, label=f"baseline: {name}")
    for name, end in ends.items():
        ax.plot([end["cost_reduction"]], [end["overall_accuracy"]], "s", ms=7, mfc="white", color="black")
        ax.annotate(name.replace("_", " "), (end["cost_reduction"], end["overall_accuracy"]), fontsize=8,
                    xytext=(6, -14), textcoords="offset points")
    for point, (marker, colour) in zip(marked, (("*", "red"), ("D", "darkgreen")), strict=False):
        ax.errorbar([point.cost_reduction], [point.accuracy], xerr=_one(point.cost_ci, point.cost_reduction),
                    yerr=_one(point.accuracy_ci, point.accuracy), fmt=marker, ms=15 if marker == "*" else 8,
                    color=colour, capsize=3, label=point.label, zorder=5)
    if min_accuracy is not None:
        ax.axhline(min_accuracy, color="red", lw=0.8, ls=":", label=f"target accuracy {min_accuracy:g}")
    ax.set(xlabel="cost reduction against all-heavyweight", ylabel="overall accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    _save(fig, path)


def distributions(scores: Mapping[str, Sequence[float]], wrong: Sequence[bool], path: Path, title: str) -> None:
    """Per signal, histograms of right and wrong drafts on shared bins."""
    fig = Figure(figsize=(4.2 * max(len(scores), 1), 3.8))
    axes = np.atleast_1d(fig.subplots(1, max(len(scores), 1)))
    is_wrong = np.asarray(wrong, dtype=bool)
    for ax, (name, values) in zip(axes, scores.items(), strict=False):
        values = np.asarray(values, dtype=float)
        bins = np.histogram_bin_edges(values, bins=25) if len(values) else 10
        ax.hist(values[~is_wrong], bins=bins, alpha=0.6, color="tab:green", density=True,
                label=f"right ({int((~is_wrong).sum())})")
        ax.hist(values[is_wrong], bins=bins, alpha=0.6, color="tab:red", density=True,
                label=f"wrong ({int(is_wrong.sum())})")
        ax.set(xlabel=f"{name} (bits)", ylabel="density")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def roc(scores: Mapping[str, Sequence[float]], wrong: Sequence[bool], aurocs: Mapping[str, float | None],
        path: Path, title: str, bold: Sequence[str] = ()) -> None:
    """ROC curves for telling wrong drafts from right ones, one per score; `bold` ones drawn thick."""
    fig = Figure(figsize=(8, 7))
    ax = fig.subplots()
    labels = np.asarray(wrong, dtype=int)
    ax.set_prop_cycle(color=[colormaps["tab20"](i % 20) for i in range(max(len(scores), 1))])
    for name, values in scores.items():
        if labels.min(initial=1) == labels.max(initial=0):
            break
        fpr, tpr, _ = roc_curve(labels, np.asarray(values, dtype=float))
        value = aurocs.get(name)
        ax.plot(fpr, tpr, lw=2.4 if name in bold else 1.0,
                label=f"{name} ({'n/a' if value is None else f'{value:.3f}'})")
    ax.plot([0, 1], [0, 1], ":", color="gray", lw=0.8)
    ax.set(xlabel="right drafts escalated (false positive rate)", ylabel="wrong drafts escalated (true positive rate)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, title="AUROC")
    _save(fig, path)


def _spread(rows: Sequence[Mapping[str, Any]], name: str, centre: np.ndarray) -> np.ndarray:
    """Error-bar lengths below and above from the rows' intervals (0 where none)."""
    low = np.array([(r["ci"].get(name) or (c, c))[0] for r, c in zip(rows, centre, strict=True)])
    high = np.array([(r["ci"].get(name) or (c, c))[1] for r, c in zip(rows, centre, strict=True)])
    return np.vstack([np.clip(centre - low, 0, None), np.clip(high - centre, 0, None)])


def _one(ci: Sequence[float] | None, centre: float) -> list[list[float]] | None:
    return None if ci is None else [[max(centre - ci[0], 0.0)], [max(ci[1] - centre, 0.0)]]


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
