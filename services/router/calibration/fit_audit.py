"""`calibrate fit --from-audit`'s work: refit the running policy's model on the shipped drafts plus the audited
production drafts, and compare it with the running policy on those audited drafts.

The method, plainly:
- The prior is the shipped dataset's graded drafts (by default its train split, as the shipped policy was
  fitted), each weighing 1. Every audited draft weighs --audit-weight (default 1: one production draft counts
  as much as one shipped one, so the prior dominates until the audit has seen about as many drafts).
- The model is chosen as `fit` chooses it, on the union: the same feature sets, L2 strengths and embedding
  components, each scored by its weighted out-of-fold AUROC, folds by group (a shipped template family; an
  audited prompt's text), so a failure the running policy's features cannot see (a prompt property, say) can
  be picked up. The model is a weighted logistic regression, fitted on the union.
- The threshold is chosen on the union's weighted out-of-fold risks for the same target as `fit`
  (--max-escalation, or --min-accuracy).
- The comparison is on the audited drafts alone: the running policy's risk as the router computes it, against
  the new model's out-of-fold risk (never a risk from a model that saw that draft's prompt): AUROC, the share
  escalated and of wrong drafts caught at each policy's own threshold, and at a 30% escalation rate, with
  bootstrap 95% intervals over the audited drafts (the same resamples for both, so the AUROC gain has one too).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from services.router.calibration import audit_source, graded, learn
from services.router.calibration.audit_source import AuditedDrafts
from services.router.calibration.auroc import auroc, weighted
from services.router.calibration.bootstrap import interval, pair, ratio, resamples
from services.router.calibration.dataset import load_items
from services.router.calibration.features import Rows, build_rows, concat
from services.router.calibration.fitting import FitError, caught, embed_texts, variant_risks
from services.router.calibration.learn import Scored
from services.router.risk import TRACE_ONLY, VERSION, WITH_EMBEDDING, PolicyError, RiskPolicy, load_policy
from shared.config import Config, load_config
from shared.messages import AuditLabel

AUDIT_SPLIT = "audit"
PRIOR_SPLITS = ("train", "all")


@dataclass(frozen=True)
class AuditOptions:
    traces: Path  # the prior: the shipped dataset's traces, grades and prompts
    grades: Path
    prompts: Path
    config: Path
    policy: Path | None = None  # the running policy; None: the config's routing.risk_model
    top_k: int | None = None  # None: the running policy's
    max_escalation: float = learn.CAUGHT_AT
    min_accuracy: float | None = None
    embedding: bool = True
    weight: float = 1.0
    prior_split: str = "train"
    progress: bool = True
    source: str = ""  # where the labels came from, for the record


@dataclass(frozen=True)
class Scores:
    """One policy's risks for the audited drafts and the threshold it holds them to."""

    label: str
    variant: str
    risks: NDArray[np.float64]
    threshold: float


@dataclass
class AuditFit:
    policy: RiskPolicy  # the new policy (metrics["audit"] holds the comparison)
    running: RiskPolicy
    running_path: Path
    audited: AuditedDrafts
    prior_n: int
    comparison: dict[str, Any] = field(default_factory=dict)
    routing_policy: str = "learned"  # the config's routing.policy (entropy: the file is not what routes today)
    audit_ids: tuple[str, ...] = ()  # the audited drafts compared, in order
    running_risks: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # variant -> risk per audited draft
    new_risks: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # variant -> out-of-fold risk


def fit_from_audit(labels: list[AuditLabel], options: AuditOptions) -> AuditFit:
    config = load_config(options.config)
    running_path = options.policy or (Path(config.routing.risk_model) if config.routing.risk_model else None)
    if running_path is None:
        raise FitError("no running policy to compare with: set routing.risk_model in --config, or give --policy")
    try:
        running = load_policy(running_path)
    except PolicyError as exc:
        raise FitError(str(exc)) from None
    top_k = options.top_k or running.top_k
    audited = audit_source.audited_drafts(labels)
    if not audited.items:
        raise FitError(f"no usable audited drafts in {options.source or 'the labels'} "
                       f"({len(labels)} labels; left out: {dict(audited.skipped) or 'nothing'})")
    if audited.top_k < top_k:
        raise FitError(f"the audited drafts carry {audited.top_k} alternatives per token; a policy at top-{top_k} "
                       f"needs at least as many (--top-k {audited.top_k})")
    audit_rows = build_rows(audited.items, audited.groups, audited.messages, top_k, config.routing)
    prior = _prior_rows(options, top_k, config)
    embedding = options.embedding and running.with_embedding is not None
    embedder_model = None
    if embedding:
        vectors, embedder_model = embed_texts([*prior.texts, *audit_rows.texts], config.embedder, options.progress)
        prior, audit_rows = prior.with_embeddings(vectors), audit_rows.with_embeddings(vectors)
    union = concat([prior, audit_rows])
    weights = np.concatenate([np.ones(len(prior)), np.full(len(audit_rows), options.weight)])
    if len(set(union.wrong)) < 2:
        raise FitError("the prior and the audited drafts together need right and wrong drafts")
    variants, thresholds, oofs, chosen = {}, {}, {}, {}
    for name, scored in _search(union, weights, embedding, options.progress).items():
        thresholds[name] = _threshold(scored.oof, union, weights, options)
        variants[name] = learn.fit_model(union, scored.candidate, weights).variant(thresholds[name], embedder_model)
        oofs[name], chosen[name] = scored.oof, scored
    primary = WITH_EMBEDDING if WITH_EMBEDDING in variants else TRACE_ONLY
    policy = RiskPolicy(threshold=thresholds[primary], top_k=top_k, variants=variants,
                        trained_on=_trained_on(options, running_path, prior, audit_rows, audited, config, top_k,
                                               embedder_model))
    audit_part = np.arange(len(union)) >= len(prior)
    running_rows = audit_rows if running.top_k == top_k else _rows_at(audited, running.top_k, config, audit_rows)
    comparison, running_risks, new_risks = {}, {}, {}
    for name in variants:
        if name not in running.variants:
            continue
        before = Scores("running", name, variant_risks(running.variants[name], running_rows),
                        running.threshold_of(running.variants[name]))
        after = Scores("new", name, oofs[name][audit_part], thresholds[name])
        comparison[name] = compare(audit_rows, before, after)
        running_risks[name], new_risks[name] = before.risks, after.risks
    metrics = {"cv_auroc": _auroc_value(union.wrong, oofs[primary]), "test_auroc": None,
               "caught_at_30": comparison.get(primary, {}).get("new", {}).get("caught_at_30", {}).get("value"),
               "variants": {name: {"chosen": c.candidate.to_json(), "cv_weighted_auroc": c.cv_auroc}
                            for name, c in chosen.items()},
               "audit": {"primary": primary, "n": len(audit_rows), "wrong": int(audit_rows.wrong.sum()),
                         "comparison": comparison}}
    policy = dataclasses.replace(policy, metrics=metrics)
    return AuditFit(policy=policy, running=running, running_path=running_path, audited=audited,
                    prior_n=len(prior), comparison=comparison, routing_policy=config.routing.policy,
                    audit_ids=audit_rows.ids, running_risks=running_risks,
                    new_risks=new_risks)


def compare(rows: Rows, before: Scores, after: Scores) -> dict[str, Any]:
    """Both policies on the same drafts, with paired bootstrap intervals (one set of resamples)."""
    counts = resamples(len(rows), f"audit-{before.variant}").counts
    out: dict[str, Any] = {}
    for scores in (before, after):
        out[scores.label] = {"threshold": round(scores.threshold, 4),
                             "auroc": auroc(rows.wrong, scores.risks, resamples(len(rows), f"audit-{scores.variant}"))
                             .to_json(),
                             "at_threshold": at_threshold(rows, scores.risks, scores.threshold, counts),
                             "caught_at_30": caught(scores.risks, rows.wrong, f"audit-caught-{scores.variant}")}
    gain = _gain(rows.wrong, before.risks, after.risks, counts)
    out["auroc_gain"] = gain
    out["router_entropy_rule_auroc"] = auroc(rows.wrong, rows.window_metric, resamples(len(rows), "audit-window")
                                             ).to_json()
    return out


def at_threshold(rows: Rows, risks: NDArray[np.float64], threshold: float,
                 counts: NDArray[np.float64]) -> dict[str, Any]:
    """The share escalated (the entropy window's aborts included), the share of wrong drafts caught, and the
    overall accuracy (escalated answers as the heavyweight's, assumed right) at the threshold, with intervals."""
    escalate = learn.escalated(risks, rows.window_escalated, threshold).astype(float)
    wrong = rows.wrong
    right_after = np.where(escalate == 1, rows.heavy_right, wrong == 0).astype(float)
    n = counts.sum(axis=1)
    stats = {
        "escalation_rate": (escalate.mean() if len(rows) else None, ratio(counts @ escalate, n)),
        "wrong_caught": ((escalate * wrong).sum() / wrong.sum() if wrong.sum() else None,
                         ratio(counts @ (escalate * wrong), counts @ wrong)),
        "accuracy": (right_after.mean() if len(rows) else None, ratio(counts @ right_after, n)),
    }
    out: dict[str, Any] = {}
    for name, (value, spread) in stats.items():
        bounds = pair(interval(spread[:, None]))
        out[name] = {"value": None if value is None else round(float(value), 4),
                     "ci": None if value is None or bounds is None else [round(bounds[0], 4), round(bounds[1], 4)]}
    return out


def _gain(wrong: NDArray[np.float64], before: NDArray[np.float64], after: NDArray[np.float64],
          counts: NDArray[np.float64]) -> dict[str, Any]:
    """The new AUROC minus the running one, with a paired bootstrap interval."""
    a, b = _auroc_value(wrong, before), _auroc_value(wrong, after)
    if a is None or b is None:
        return {"value": None, "ci": None}
    bounds = pair(interval((weighted(wrong, after, counts) - weighted(wrong, before, counts))[:, None]))
    return {"value": round(b - a, 4), "ci": None if bounds is None else [round(bounds[0], 4), round(bounds[1], 4)]}


def _auroc_value(wrong: NDArray[np.float64], scores: NDArray[np.float64]) -> float | None:
    if wrong.min(initial=1.0) == wrong.max(initial=0.0):
        return None
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(wrong, scores)), 4)


def _prior_rows(options: AuditOptions, top_k: int, config: Config) -> Rows:
    if options.prior_split not in PRIOR_SPLITS:
        raise FitError(f"--prior-split must be one of {', '.join(PRIOR_SPLITS)}")
    loaded = graded.load(options.traces, options.grades)
    if not loaded.items:
        raise FitError(f"no graded drafts for the prior in {options.traces} and {options.grades} (the shipped ones: "
                       "--traces docs/calibration/data/traces.jsonl.gz --grades docs/calibration/data/grades.jsonl)")
    if loaded.top_k < top_k:
        raise FitError(f"the prior's drafts were recorded with {loaded.top_k} alternatives per token; "
                       f"a policy at top-{top_k} needs at least as many")
    items = {item.id: item for item in load_items(options.prompts)}
    rows = build_rows(loaded.items, {i: item.family for i, item in items.items()},
                      {i: list(item.messages) for i, item in items.items()}, top_k, config.routing)
    return rows if options.prior_split == "all" else rows.split_of("train")


def _rows_at(audited: AuditedDrafts, top_k: int, config: Config, like: Rows) -> Rows:
    rows = build_rows(audited.items, audited.groups, audited.messages, top_k, config.routing)
    return dataclasses.replace(rows, embeddings=like.embeddings)


def _search(union: Rows, weights: NDArray[np.float64], embedding: bool, progress: bool) -> dict[str, Scored]:
    """fit's search on the weighted union: the best trace-only candidate, then the embedding added to its set."""
    trace = learn.candidates(TRACE_ONLY)
    try:
        with tqdm(total=len(trace), desc="fit --from-audit: trace_only", unit="fit", disable=not progress) as bar:
            tried = learn.search(union, trace, lambda: bar.update(1), weights)
        chosen = {TRACE_ONLY: learn.best(tried)}
        if embedding:
            more = learn.candidates(WITH_EMBEDDING, feature_sets=(chosen[TRACE_ONLY].candidate.feature_set,))
            with tqdm(total=len(more), desc="fit --from-audit: with_embedding", unit="fit",
                      disable=not progress) as bar:
                chosen[WITH_EMBEDDING] = learn.best(learn.search(union, more, lambda: bar.update(1), weights))
    except ValueError as exc:  # one family, or a fold with one class only
        raise FitError(f"cannot cross-validate the prior and the audited drafts: {exc}") from None
    return chosen


def _threshold(oof: NDArray[np.float64], rows: Rows, weights: NDArray[np.float64], options: AuditOptions) -> float:
    if options.min_accuracy is None:
        window_rate = float(np.average(rows.window_escalated, weights=weights))
        if window_rate > options.max_escalation:
            print(f"fit --from-audit: warning: the entropy window alone escalates {window_rate:.0%} of the drafts, "
                  f"more than --max-escalation {options.max_escalation:.0%}; the risk threshold is 1.0. Set "
                  "routing.entropy_threshold in --config as the router runs it, or use --min-accuracy.",
                  file=sys.stderr)
        return learn.threshold_for_escalation(oof, rows.window_escalated, options.max_escalation, weights)
    threshold = learn.threshold_for_accuracy(oof, rows.window_escalated, rows.wrong, rows.heavy_right,
                                             options.min_accuracy, weights)
    if threshold is None:
        raise FitError(f"no threshold reaches accuracy {options.min_accuracy} on the prior and the audited drafts")
    return threshold


def _trained_on(options: AuditOptions, running_path: Path, prior: Rows, audit_rows: Rows, audited: AuditedDrafts,
                config: Config, top_k: int, embedder_model: str | None) -> dict[str, Any]:
    target = ({"max_escalation": options.max_escalation} if options.min_accuracy is None
              else {"min_accuracy": options.min_accuracy})
    routing = config.routing
    return {"dataset": options.prompts.name, "split": options.prior_split, "n": len(prior) + len(audit_rows),
            "wrong": int(prior.wrong.sum() + audit_rows.wrong.sum()),
            "families": len(set(prior.family)), "model": audited.models.get("drafter"), "top_k": top_k,
            "entropy_rule": {"threshold": routing.entropy_threshold, "window": routing.window,
                             "early_exit_tokens": routing.early_exit_tokens, "top_logprobs": routing.top_logprobs},
            "embedder": embedder_model, "target": target, "folds": learn.FOLDS, "policy_version": VERSION,
            "from_audit": {"source": options.source, "running_policy": str(running_path),
                           "prior": {"n": len(prior), "wrong": int(prior.wrong.sum()), "weight": 1.0},
                           "audited": {"n": len(audit_rows), "wrong": int(audit_rows.wrong.sum()),
                                       "weight": options.weight, "groups": len(set(audit_rows.family)),
                                       "left_out": dict(audited.skipped)}}}


def skipped_line(skipped: Counter[str]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(skipped.items())) or "none"
