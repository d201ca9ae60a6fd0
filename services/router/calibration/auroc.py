"""How well each signal ranks wrong drafts above right ones: AUROC (sklearn.metrics.roc_auc_score) with
a bootstrap 95% interval.

The resamples are the sweep's (bootstrap.py): per resample, the AUROC of the items weighted by how
often they were drawn, which is what roc_auc_score gives with those counts as sample weights (ties
count one half). Computed for all 2,000 resamples at once over the items sorted by score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from services.router.calibration import bootstrap
from services.router.calibration.bootstrap import Interval, Resamples


@dataclass(frozen=True)
class Auroc:
    auroc: float | None  # None when the items hold only right or only wrong drafts
    ci: Interval

    def to_json(self) -> dict[str, Any]:
        return {"auroc": None if self.auroc is None else round(self.auroc, 4),
                "ci": None if self.ci is None else [round(self.ci[0], 4), round(self.ci[1], 4)]}


def auroc(wrong: NDArray[np.float64], scores: NDArray[np.float64], resamples: Resamples) -> Auroc:
    """AUROC of `scores` for telling wrong drafts (1) from right ones (0), and its interval."""
    if wrong.min(initial=1.0) == wrong.max(initial=0.0):
        return Auroc(None, None)
    point = float(roc_auc_score(wrong, scores))
    spread = weighted(wrong, scores, resamples.counts)
    return Auroc(point, bootstrap.pair(bootstrap.interval(spread[:, None])))


def weighted(wrong: NDArray[np.float64], scores: NDArray[np.float64],
             counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per row of `counts`, the AUROC with those item weights (NaN when a row draws one class only)."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first item of each tied group
    drawn = counts[:, order]
    positives = np.add.reduceat(drawn * wrong[order], starts, axis=1)
    negatives = np.add.reduceat(drawn * (1.0 - wrong[order]), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives  # right drafts scored strictly lower
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    return bootstrap.ratio((positives * (below + 0.5 * negatives)).sum(axis=1), pairs)
