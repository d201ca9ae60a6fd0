"""Learning the risk policy: which features and how much regularisation, chosen by cross-validation on
the train split; the model refitted on the whole train split; its threshold from out-of-fold risks.

Candidates are a few named trace feature sets (entropy, log-prob, both with length, both with the
prompt's properties, and every signal: policy version 2's spread, tail, first-token and shape signals and
prompt cues too) at a few L2 strengths, and for the with-embedding variant the best trace set plus the
prompt's MiniLM embedding, either reduced by PCA to a few components or stacked: a logistic regression on
the whole embedding whose score is one more feature (learned on its out-of-fold scores, folds inside the
fold, so the stacked model never reads a score from a model that saw the row). Each candidate is scored
by the AUROC of its out-of-fold risks, folds by template family (stratified), so a family is never scored
by a model that saw it; the PCA and the embedding's regression are fitted inside each fold too. The model
is a plain (unweighted) logistic regression on standardised features, so its output reads as P(draft is
wrong) and one threshold means about the same for both variants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from services.router.calibration.features import Rows
from services.router.risk import EMBEDDING_PREFIX, TRACE_ONLY, WITH_EMBEDDING, Projection, Variant
from services.router.signals import DRAFT_SIGNALS, PROMPT_SIGNALS

FOLDS = 5
SEED = 11
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
COMPONENTS = (4, 8, 16)
STACKED = -1  # Candidate.components: the embedding's own logistic regression, one score
EMBEDDING_C = 1.0  # its inverse L2 strength (unit-length rows: 0.3 to 10 gave the same CV AUROC)
CAUGHT_AT = 0.3  # the yardstick: the share of wrong drafts among the 30% riskiest
ENTROPY = ("max_entropy", "mean_entropy", "head_mean_entropy", "frac_uncertain", "max_window_mean")
LOGPROB = ("max_neglogprob", "q80_neglogprob", "mean_neglogprob", "head_mean_neglogprob")
PROMPT_V1 = ("prompt_log_chars", "prompt_digits", "prompt_code", "prompt_open", "prompt_steps")
TRACE_SETS: dict[str, tuple[str, ...]] = {
    "entropy": ENTROPY,
    "logprob": LOGPROB,
    "trace": (*ENTROPY, *LOGPROB, "log_length"),
    "trace+prompt": (*ENTROPY, *LOGPROB, "log_length", *PROMPT_V1),
    "all": (*DRAFT_SIGNALS, *PROMPT_SIGNALS),  # policy version 2's signals
}


class Unfittable(ValueError):
    """A candidate that cannot be fitted on these rows (a stacked one: too few families or classes)."""


@dataclass(frozen=True)
class Candidate:
    variant: str  # trace_only | with_embedding
    feature_set: str  # a TRACE_SETS name
    c: float  # inverse L2 strength
    components: int = 0  # PCA components of the prompt's embedding, or STACKED (with_embedding only)

    @property
    def features(self) -> tuple[str, ...]:
        return TRACE_SETS[self.feature_set]

    def to_json(self) -> dict[str, object]:
        if self.components == STACKED:
            return {"variant": self.variant, "features": self.feature_set, "C": self.c, "components": 0,
                    "embedding": "stacked", "embedding_C": EMBEDDING_C}
        return {"variant": self.variant, "features": self.feature_set, "C": self.c, "components": self.components}


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    cv_auroc: float | None  # None when a fold could not be fitted (one class only)
    oof: NDArray[np.float64]  # out-of-fold risk of every train row


@dataclass(frozen=True)
class Model:
    """One fitted candidate: the sklearn pieces, and the same model as a risk.Variant for the file."""

    candidate: Candidate
    pca: PCA | None
    scaler: StandardScaler
    logistic: LogisticRegression
    stacked: LogisticRegression | None = None  # the embedding's own regression (components == STACKED)

    def design(self, rows: Rows, embedding_scores: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """The rows' features; `embedding_scores` stand for the stacked score (the out-of-fold ones the
        model is fitted on), else the stacked regression scores the rows."""
        x = rows.matrix(self.candidate.features)
        if self.pca is not None or self.stacked is not None:
            assert rows.embeddings is not None
        if self.pca is not None:
            x = np.hstack([x, self.pca.transform(rows.embeddings)])
        if self.stacked is not None:
            scores = self.stacked.decision_function(rows.embeddings) if embedding_scores is None else embedding_scores
            x = np.hstack([x, scores[:, None]])
        return x

    def risks(self, rows: Rows) -> NDArray[np.float64]:
        return self.logistic.predict_proba(self.scaler.transform(self.design(rows)))[:, 1]

    def variant(self, threshold: float | None, embedding_model: str | None = None) -> Variant:
        names = list(self.candidate.features)
        projection = None
        if self.pca is not None:
            names += [f"{EMBEDDING_PREFIX}{i}" for i in range(self.pca.n_components_)]
            projection = Projection(components=tuple(tuple(float(v) for v in row) for row in self.pca.components_),
                                    center=tuple(float(v) for v in self.pca.mean_), model=embedding_model)
        if self.stacked is not None:
            # The score w.v + b as a one-row projection: (v - center).w with center = -b w / |w|^2.
            w = self.stacked.coef_[0]
            center = -float(self.stacked.intercept_[0]) * w / max(float(w @ w), 1e-300)
            names.append(f"{EMBEDDING_PREFIX}0")
            projection = Projection(components=(tuple(float(v) for v in w),),
                                    center=tuple(float(v) for v in center), model=embedding_model)
        return Variant(name=self.candidate.variant, features=tuple(names),
                       mean=tuple(float(v) for v in self.scaler.mean_),
                       scale=tuple(float(v) for v in self.scaler.scale_),
                       coef=tuple(float(v) for v in self.logistic.coef_[0]),
                       intercept=float(self.logistic.intercept_[0]), threshold=threshold, embedding=projection)


def candidates(variant: str, feature_sets: Sequence[str] = tuple(TRACE_SETS), cs: Sequence[float] = C_GRID,
               components: Sequence[int] = COMPONENTS) -> list[Candidate]:
    if variant == TRACE_ONLY:
        return [Candidate(TRACE_ONLY, name, c) for name in feature_sets for c in cs]
    return [Candidate(WITH_EMBEDDING, name, c, k) for name in feature_sets for k in (*components, STACKED)
            for c in cs]


def fit_model(rows: Rows, candidate: Candidate, weights: NDArray[np.float64] | None = None) -> Model:
    """The candidate fitted on the rows; `weights` (one per row, default 1) weigh the scaler and the
    regressions (fit --from-audit weighs audited drafts against the shipped prior); the PCA is unweighted.
    A stacked candidate needs rows of two template families at least, each inner fold of both classes
    (ValueError otherwise)."""
    pca, stacked, scores = None, None, None
    if candidate.components and rows.embeddings is None:
        raise ValueError("the with_embedding variant needs the prompts' embeddings")
    if candidate.components == STACKED:
        try:
            scores = embedding_scores(rows, weights)
        except ValueError as exc:
            raise Unfittable(f"the stacked embedding cannot be cross-validated on these rows: {exc}") from None
        stacked = _embedding_logistic(rows, np.arange(len(rows)), weights)
    elif candidate.components:
        assert rows.embeddings is not None
        k = min(candidate.components, len(rows) - 1, rows.embeddings.shape[1])
        pca = PCA(n_components=k, random_state=SEED).fit(rows.embeddings)
    model = Model(candidate, pca, StandardScaler(), LogisticRegression(C=candidate.c, max_iter=5000), stacked)
    x = model.design(rows, scores)
    model.scaler.fit(x, sample_weight=weights)
    model.logistic.fit(model.scaler.transform(x), rows.wrong.astype(int), sample_weight=weights)
    return model


def embedding_scores(rows: Rows, weights: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Each row's out-of-fold score by a logistic regression on the embedding alone (folds by family)."""
    scores = np.zeros(len(rows))
    for train, held in folds(rows):
        scores[held] = _embedding_logistic(rows, train, weights).decision_function(rows.embeddings[held])
    return scores


def _embedding_logistic(rows: Rows, index: NDArray[np.intp], weights: NDArray[np.float64] | None
                        ) -> LogisticRegression:
    assert rows.embeddings is not None
    wrong = rows.wrong[index].astype(int)
    if len(set(wrong)) < 2:
        raise Unfittable("a fold of the embedding's regression holds one class only")
    return LogisticRegression(C=EMBEDDING_C, max_iter=5000).fit(
        rows.embeddings[index], wrong, sample_weight=None if weights is None else weights[index])


def folds(rows: Rows) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """(train, held-out) index pairs: whole families held out, wrong drafts spread evenly, fixed seed."""
    groups = np.asarray(rows.family)
    n_splits = min(FOLDS, len(set(rows.family)))
    if n_splits < 2:
        raise ValueError("cross-validation needs drafts from at least two template families")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=SEED)
    return list(splitter.split(np.zeros(len(rows)), rows.wrong.astype(int), groups))


def out_of_fold(rows: Rows, candidate: Candidate, splits: Sequence[tuple[NDArray[np.intp], NDArray[np.intp]]],
                weights: NDArray[np.float64] | None = None) -> NDArray[np.float64] | None:
    """Each train row's risk from a model fitted without its family; None when a fold holds one class."""
    risks = np.zeros(len(rows))
    for train, held in splits:
        part = rows.where(_mask(len(rows), train))
        if len(set(part.wrong)) < 2:
            return None
        held = np.sort(held)  # where() keeps index order
        part_weights = None if weights is None else weights[np.sort(train)]
        try:
            model = fit_model(part, candidate, part_weights)
        except Unfittable:  # a stacked candidate whose inner folds cannot be made on this part
            return None
        risks[held] = model.risks(rows.where(_mask(len(rows), held)))
    return risks


def search(rows: Rows, tried: Sequence[Candidate], step: Callable[[], None] = lambda: None,
           weights: NDArray[np.float64] | None = None) -> list[Scored]:
    """Every candidate's out-of-fold risks and AUROC on these (train) rows; `step` after each (progress).
    With `weights`, the fits and the AUROC are weighted."""
    splits = folds(rows)
    out = []
    for candidate in tried:
        risks = out_of_fold(rows, candidate, splits, weights)
        score = None if risks is None else float(roc_auc_score(rows.wrong, risks, sample_weight=weights))
        out.append(Scored(candidate, score, np.zeros(len(rows)) if risks is None else risks))
        step()
    return out


def nested_out_of_fold(rows: Rows, choose: Callable[[Rows], Mapping[str, Candidate]]) -> dict[str, NDArray[np.float64]]:
    """Nested cross-validation: each row's risk from a model whose candidate was chosen (by `choose`, the
    whole search) and fitted without the row's family, per variant `choose` returns. The best candidate's
    own CV AUROC flatters (it won among many); the AUROC of these risks is what the search achieves on
    families it has not seen."""
    risks: dict[str, NDArray[np.float64]] = {}
    for train, held in folds(rows):
        inner, outer = rows.where(_mask(len(rows), train)), rows.where(_mask(len(rows), held))
        held = np.sort(held)  # where() keeps index order
        for name, candidate in choose(inner).items():
            risks.setdefault(name, np.zeros(len(rows)))[held] = fit_model(inner, candidate).risks(outer)
    return risks


def best(scored: Sequence[Scored]) -> Scored:
    """The highest cross-validated AUROC; on a tie the earlier (simpler, more regularised) candidate."""
    usable = [s for s in scored if s.cv_auroc is not None]
    if not usable:
        raise ValueError("no candidate could be cross-validated: every fold needs right and wrong drafts")
    return max(usable, key=lambda s: s.cv_auroc or 0.0)


def escalated(risks: NDArray[np.float64], window: NDArray[np.bool_], threshold: float) -> NDArray[np.bool_]:
    """What the router escalates at this threshold: the entropy window's aborts and risk above it."""
    return window | (risks > threshold)


def threshold_for_escalation(risks: NDArray[np.float64], window: NDArray[np.bool_], max_rate: float,
                             weights: NDArray[np.float64] | None = None) -> float:
    """The lowest threshold (the most wrong drafts caught) at which at most `max_rate` of the drafts
    escalate, the window's aborts included; 1.0 (risk never escalates) when the window alone exceeds it.
    With `weights`, the rate is the weighted share."""
    for threshold in _thresholds(risks):
        if np.average(escalated(risks, window, threshold), weights=weights) <= max_rate + 1e-12:
            return threshold
    return 1.0


def threshold_for_accuracy(risks: NDArray[np.float64], window: NDArray[np.bool_], wrong: NDArray[np.float64],
                           heavy_right: NDArray[np.bool_], min_accuracy: float,
                           weights: NDArray[np.float64] | None = None) -> float | None:
    """The highest threshold (the fewest escalations) whose overall accuracy (accepted drafts as graded,
    escalated ones as the heavyweight's answer) is at least `min_accuracy`; None if none is."""
    for threshold in reversed(_thresholds(risks)):
        if accuracy(escalated(risks, window, threshold), wrong, heavy_right, weights) >= min_accuracy - 1e-12:
            return threshold
    return None


def accuracy(escalate: NDArray[np.bool_], wrong: NDArray[np.float64], heavy_right: NDArray[np.bool_],
             weights: NDArray[np.float64] | None = None) -> float:
    return float(np.average(np.where(escalate, heavy_right, wrong == 0), weights=weights)) if len(wrong) else 0.0


def caught_at(risks: NDArray[np.float64], wrong: NDArray[np.float64], rate: float = CAUGHT_AT) -> float | None:
    """The share of wrong drafts among the `rate` highest-risk drafts (the policy alone, ranking)."""
    if not wrong.sum():
        return None
    top = np.argsort(-risks, kind="stable")[:round(rate * len(risks))]
    return float(wrong[top].sum() / wrong.sum())


def _thresholds(risks: NDArray[np.float64]) -> list[float]:
    """Every distinct cut, ascending: just below everything (all escalate) to 1.0 (none does)."""
    return [0.0, *sorted({float(r) for r in risks}), 1.0]


def _mask(n: int, index: NDArray[np.intp]) -> NDArray[np.bool_]:
    mask = np.zeros(n, dtype=bool)
    mask[index] = True
    return mask
