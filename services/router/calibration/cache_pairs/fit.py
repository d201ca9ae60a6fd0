"""Fit the learned verifier: a logistic regression over pair features, exported as JSON (no pickles).

It is fitted on every train pair that is not an exact hit, vetoed by the rules or not: the vetoed near
misses (a number or an entity swapped in an otherwise identical sentence) teach it what a substitution
looks like, which is what the near misses the rules let through look like too. Its threshold only
answers for the pairs it will decide (those the rules pass) and comes from out-of-fold probabilities
(folds by template family, so no family is scored by a model that saw it): for each floor, the lowest
threshold whose hits keep precision >= 99.5%; of those, the one that keeps the most paraphrases. The test
split, not this, enforces "no wrong hit", when calibration picks the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from services.cache.logistic import LogisticModel
from services.cache.pair_features import FEATURES, features, veto
from services.cache.verify import reading
from services.router.calibration.cache_pairs.choose import MIN_PRECISION
from services.router.calibration.cache_pairs.pairs import LabelledPair

FOLDS = 5
MARGIN = 1e-6  # a threshold sits just above the highest near miss it must refuse


@dataclass(frozen=True, slots=True)
class Rows:
    """The pairs the learned model sees, as feature rows."""

    x: list[list[float]]
    same: list[bool]
    cosine: list[float]
    family: list[str]
    vetoed: list[bool]  # the rules refuse it: the model learns from it, but never decides it
    paraphrases: int  # all paraphrases in the split, including those exact or vetoed (recall's denominator)
    exact_paraphrases: int


def rows(pairs: Sequence[LabelledPair], cosines: Sequence[float]) -> Rows:
    x, same, cos, family, vetoed = [], [], [], [], []
    for pair, cosine in zip(pairs, cosines, strict=True):
        if pair.exact:
            continue
        a, b = reading(pair.query), reading(pair.cached)
        x.append(features(a, b, cosine))
        same.append(pair.same)
        cos.append(cosine)
        family.append(pair.family)
        vetoed.append(veto(a, b) is not None)
    return Rows(x, same, cos, family, vetoed, sum(p.same for p in pairs), sum(p.same and p.exact for p in pairs))


def fit_model(x: Sequence[Sequence[float]], y: Sequence[bool], threshold: float = 0.5,
              names: tuple[str, ...] = FEATURES, about: dict[str, object] | None = None) -> LogisticModel:
    scaler = StandardScaler().fit(np.asarray(x, dtype=float))
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    model.fit(scaler.transform(np.asarray(x, dtype=float)), np.asarray(y, dtype=int))
    return LogisticModel(features=names, mean=tuple(float(v) for v in scaler.mean_),
                         scale=tuple(float(v) for v in scaler.scale_),
                         coefficients=tuple(float(v) for v in model.coef_[0]), intercept=float(model.intercept_[0]),
                         threshold=threshold, about=dict(about or {}))


def out_of_fold(data: Rows) -> list[float]:
    """Each row's probability from a model fitted without its family."""
    groups = np.asarray(data.family)
    folds = min(FOLDS, len(set(data.family)))
    probabilities = [0.0] * len(data.x)
    for train, held in GroupKFold(n_splits=folds).split(data.x, data.same, groups):
        model = fit_model([data.x[i] for i in train], [data.same[i] for i in train])
        for i in held:
            probabilities[i] = model.probability(data.x[i])
    return probabilities


def threshold_for(data: Rows, probabilities: Sequence[float], floors: Sequence[float],
                  min_precision: float = MIN_PRECISION) -> tuple[float, float, float]:
    """(threshold, floor, recall): per floor, the lowest threshold whose out-of-fold hits keep min_precision
    (exact hits count as right); of those, the one that keeps the most paraphrases."""
    best = (1.0, floors[-1], -1.0)
    for floor in floors:
        above = [i for i, c in enumerate(data.cosine) if c >= floor and not data.vetoed[i]]
        threshold = _lowest_threshold([probabilities[i] for i in above], [data.same[i] for i in above],
                                      data.exact_paraphrases, min_precision)
        kept = sum(1 for i in above if data.same[i] and probabilities[i] >= threshold)
        recall = (kept + data.exact_paraphrases) / data.paraphrases if data.paraphrases else 0.0
        if recall > best[2]:
            best = (threshold, floor, recall)
    return best


def _lowest_threshold(probabilities: Sequence[float], same: Sequence[bool], exact: int, min_precision: float
                      ) -> float:
    """Walk the candidates from the most probable down; stop before the first near miss that would bring
    precision under min_precision."""
    right, wrong, threshold = exact, 0, 1.0
    for probability, is_same in sorted(zip(probabilities, same, strict=True), reverse=True):
        right, wrong = right + is_same, wrong + (not is_same)
        if right / (right + wrong) < min_precision:
            return min(1.0, probability + MARGIN)
        threshold = probability
    return max(0.0, threshold - MARGIN) if probabilities else 0.0


def fit(pairs: Sequence[LabelledPair], cosines: Sequence[float], floors: Sequence[float]) -> LogisticModel:
    """The learned verifier's model, fitted on these (train) pairs, its threshold set out of fold."""
    data = rows(pairs, cosines)
    if len(set(data.same)) < 2 or len(set(data.family)) < 2:
        raise ValueError("the train split needs paraphrases and near misses from at least two families")
    probabilities = out_of_fold(data)
    threshold, floor, recall = threshold_for(data, probabilities, floors)
    about = {"fitted_on": "train split, pairs that are not exact hits", "rows": len(data.x),
             "rows_the_rules_pass": len(data.x) - sum(data.vetoed),
             "paraphrases": sum(data.same), "near_misses": len(data.same) - sum(data.same),
             "families": len(set(data.family)), "threshold_from": "out-of-fold by family",
             "out_of_fold_floor": floor, "out_of_fold_recall": round(recall, 4)}
    return fit_model(data.x, data.same, threshold, about=about)
