"""What a routing rule did to a set of items, as the sweep reports it: escalation rate, accuracy of the
accepted drafts, overall accuracy, cost per request and the saving against sending everything to the
heavyweight, each with a bootstrap 95% interval.

A rule is given per item as a share escalated in [0, 1] (1 or 0 for the entropy rule; a fraction for
a baseline that must split tied items at its cut), so the grid and the baselines are summarised by the
same sums. Columns are rules: every grid point of one subset is summarised in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.router.calibration import bootstrap
from services.router.calibration.bootstrap import Interval, Resamples

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]


@dataclass(frozen=True)
class Rules:
    """Items x rules: the share of each item escalated and what the item cost under each rule."""

    escalated: Matrix
    cost: Matrix

    @property
    def columns(self) -> int:
        return int(self.escalated.shape[1])


@dataclass(frozen=True)
class Truth:
    """Per item: was the draft right, was the heavyweight's answer right (or assumed so), and what
    sending the item to the heavyweight alone costs."""

    draft_correct: Vector
    heavy_correct: Vector
    heavy_cost: Vector

    def take(self, rows: NDArray[np.intp]) -> Truth:
        return Truth(self.draft_correct[rows], self.heavy_correct[rows], self.heavy_cost[rows])


@dataclass(frozen=True)
class Summary:
    n: int
    escalation_rate: float
    accepted_accuracy: float | None  # None when no draft was accepted
    overall_accuracy: float
    cost_per_request_usd: float
    heavyweight_cost_per_request_usd: float
    cost_reduction: float
    wrong_escalated: float | None  # the share of wrong drafts the rule escalated (None: no wrong draft)
    ci: dict[str, Interval]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """A summary back from a sweep's row (extra fields of the row ignored)."""
        ci = {name: None if pair is None else (float(pair[0]), float(pair[1]))
              for name, pair in (data.get("ci") or {}).items()}
        return cls(n=int(data["n"]), escalation_rate=data["escalation_rate"],
                   accepted_accuracy=data.get("accepted_accuracy"), overall_accuracy=data["overall_accuracy"],
                   cost_per_request_usd=data["cost_per_request_usd"],
                   heavyweight_cost_per_request_usd=data["heavyweight_cost_per_request_usd"],
                   cost_reduction=data["cost_reduction"], wrong_escalated=data.get("wrong_escalated"), ci=ci)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n, "escalation_rate": _round(self.escalation_rate),
            "accepted_accuracy": None if self.accepted_accuracy is None else _round(self.accepted_accuracy),
            "overall_accuracy": _round(self.overall_accuracy),
            "cost_per_request_usd": _round(self.cost_per_request_usd, 10),
            "heavyweight_cost_per_request_usd": _round(self.heavyweight_cost_per_request_usd, 10),
            "cost_reduction": _round(self.cost_reduction),
            "wrong_escalated": None if self.wrong_escalated is None else _round(self.wrong_escalated),
            "ci": {name: None if bounds is None else [_round(bounds[0]), _round(bounds[1])]
                   for name, bounds in self.ci.items()},
        }


def summarise(rules: Rules, truth: Truth, resamples: Resamples) -> list[Summary]:
    """One Summary per rule (column), with intervals from the same resamples of the items."""
    n = int(truth.heavy_cost.shape[0])
    accepted = 1.0 - rules.escalated
    right = accepted * truth.draft_correct[:, None] + rules.escalated * truth.heavy_correct[:, None]
    accepted_right = accepted * truth.draft_correct[:, None]
    heavy_cost = truth.heavy_cost[:, None]
    # Point estimates: the sums over the items as drawn (counts of one).
    wrong = 1.0 - truth.draft_correct
    sums = {"accepted": accepted, "right": right, "accepted_right": accepted_right, "heavy_cost": heavy_cost,
            "wrong": wrong[:, None], "wrong_escalated": rules.escalated * wrong[:, None]}
    stats = _stats(np.ones((1, n)), rules, sums)
    spread = _stats(resamples.counts, rules, sums)
    bounds = {name: bootstrap.interval(values) for name, values in spread.items()}
    out = []
    for column in range(rules.columns):
        accepted_accuracy = float(stats["accepted_accuracy"][0, column])
        wrong_escalated = float(stats["wrong_escalated"][0, column])
        out.append(Summary(
            n=n, escalation_rate=float(stats["escalation_rate"][0, column]),
            accepted_accuracy=None if np.isnan(accepted_accuracy) else accepted_accuracy,
            overall_accuracy=float(stats["overall_accuracy"][0, column]),
            cost_per_request_usd=float(stats["cost_per_request_usd"][0, column]),
            heavyweight_cost_per_request_usd=float(truth.heavy_cost.mean()) if n else 0.0,
            cost_reduction=float(stats["cost_reduction"][0, column]),
            wrong_escalated=None if np.isnan(wrong_escalated) else wrong_escalated,
            ci={name: bootstrap.pair(bounds[name], column)
                for name in ("cost_reduction", "overall_accuracy", "accepted_accuracy", "wrong_escalated")},
        ))
    return out


def _stats(counts: Matrix, rules: Rules, sums: dict[str, Matrix]) -> dict[str, Matrix]:
    """Each statistic per draw (rows of `counts`) and rule (columns), from per-item `sums`."""
    drawn = counts.sum(axis=1, keepdims=True)
    cost = counts @ rules.cost
    return {
        "escalation_rate": bootstrap.ratio(counts @ rules.escalated, drawn),
        "accepted_accuracy": bootstrap.ratio(counts @ sums["accepted_right"], counts @ sums["accepted"]),
        "overall_accuracy": bootstrap.ratio(counts @ sums["right"], drawn),
        "cost_per_request_usd": bootstrap.ratio(cost, drawn),
        "cost_reduction": 1.0 - bootstrap.ratio(cost, counts @ sums["heavy_cost"]),
        "wrong_escalated": bootstrap.ratio(counts @ sums["wrong_escalated"], counts @ sums["wrong"]),
    }


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)
