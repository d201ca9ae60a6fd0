"""`calibrate fit`'s work: load the graded drafts, embed their prompts, search and fit both variants on the
train split (learn.py), choose each one's threshold from its out-of-fold risks, and measure the policy
(scored by risk.py, exactly as the router scores a draft) and every single signal on the test split."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from services.router.calibration import graded, learn
from services.router.calibration.auroc import auroc
from services.router.calibration.bootstrap import interval, resamples
from services.router.calibration.dataset import load_items
from services.router.calibration.features import SIGNALS, Rows, build_rows
from services.router.calibration.learn import CAUGHT_AT, Scored
from services.router.risk import TRACE_ONLY, VERSION, WITH_EMBEDDING, RiskPolicy, Variant, dump_policy
from shared.config import EmbedderConfig, RoutingConfig, load_config

if TYPE_CHECKING:
    from services.router.calibration.fit import Options

ROUTER_RULE = "window_metric"  # the router's entropy rule as one score, among the single signals


class FitError(Exception):
    """The data cannot give a policy as asked; the message says why."""


def fit_policy(options: Options) -> RiskPolicy:
    config = load_config(options.config)
    top_k = options.top_k or config.routing.top_logprobs
    rows, model = _rows(options, top_k, config.routing)
    train, test = rows.split_of("train"), rows.split_of("test")
    if len(set(train.wrong)) < 2:
        raise FitError(f"the train split needs right and wrong drafts; it has {len(train)} drafts, "
                       f"{int(train.wrong.sum())} wrong")
    embedder_model = None
    if options.embedding:
        vectors, embedder_model = embed_texts(rows.texts, config.embedder, options.progress)
        train, test = train.with_embeddings(vectors), test.with_embeddings(vectors)
    chosen, tried = _search(train, options)
    nested = _nested_cv(train, options) if options.nested_cv else {}
    variants, thresholds = {}, {}
    for name, scored in chosen.items():
        thresholds[name] = _threshold(scored.oof, train, options)
        variants[name] = learn.fit_model(train, scored.candidate).variant(thresholds[name], embedder_model)
    primary = WITH_EMBEDDING if WITH_EMBEDDING in variants else TRACE_ONLY
    policy = RiskPolicy(threshold=thresholds[primary], top_k=top_k, variants=variants,
                        trained_on=_trained_on(options, train, model, top_k, config.routing, embedder_model))
    return dataclasses.replace(policy, metrics=evaluate(policy, chosen, tried, train, test, nested))


def write(policy: RiskPolicy, out: Path) -> None:
    dump_policy(policy, out)


def _rows(options: Options, top_k: int, routing: RoutingConfig) -> tuple[Rows, str | None]:
    loaded = graded.load(options.traces, options.grades)
    if not loaded.items:
        raise FitError(f"no graded drafts: {options.traces} and {options.grades} share none "
                       f"(left out: {dict(loaded.skipped) or 'nothing'})")
    if loaded.top_k < top_k:
        raise FitError(f"the drafts were recorded with {loaded.top_k} alternatives per token; a policy at "
                       f"top-{top_k} needs at least as many (--top-k {loaded.top_k}, routing.top_logprobs to match)")
    items = {item.id: item for item in load_items(options.prompts)}
    families = {item_id: item.family for item_id, item in items.items()}
    messages = {item_id: list(item.messages) for item_id, item in items.items()}
    return build_rows(loaded.items, families, messages, top_k, routing), loaded.models.get("drafter")


def embed_texts(texts: Sequence[str], embedder: EmbedderConfig, progress: bool
                ) -> tuple[dict[str, NDArray[np.float64]], str]:
    """Unit-length embeddings of the texts by the configured embedder backend (in this process, as the
    cache-pairs step embeds), and the embedding model's name."""
    from services.router.calibration.cache_pairs.embed import embed_all

    try:
        vectors = asyncio.run(embed_all(sorted(set(texts)), embedder, progress=progress))
    except Exception as exc:  # a missing export, an unreachable API: say what to do instead
        raise FitError(f"cannot embed the prompts with the {embedder.backend} embedder ({exc}); "
                       "--no-embedding fits the trace_only variant alone") from exc
    return {text: np.asarray(vector, dtype=float) for text, vector in vectors.items()}, embedder.model


def _nested_cv(train: Rows, options: Options) -> dict[str, NDArray[np.float64]]:
    """Each variant's out-of-fold risks with the whole search (_search) run inside each fold."""
    quiet = dataclasses.replace(options, progress=False)
    with tqdm(total=learn.FOLDS, desc="fit: nested cross-validation", unit="fold",
              disable=not options.progress) as bar:
        def choose(inner: Rows) -> dict[str, learn.Candidate]:
            chosen, _ = _search(inner, quiet)
            bar.update(1)
            return {name: scored.candidate for name, scored in chosen.items()}

        return learn.nested_out_of_fold(train, choose)


def _search(train: Rows, options: Options) -> tuple[dict[str, Scored], list[Scored]]:
    """The best trace-only candidate, then the embedding added to its feature set."""
    trace = learn.candidates(TRACE_ONLY)
    with tqdm(total=len(trace), desc="fit: trace_only candidates", unit="fit", disable=not options.progress) as bar:
        tried = learn.search(train, trace, lambda: bar.update(1))
    chosen = {TRACE_ONLY: learn.best(tried)}
    if train.embeddings is not None:
        embedded = learn.candidates(WITH_EMBEDDING, feature_sets=(chosen[TRACE_ONLY].candidate.feature_set,))
        with tqdm(total=len(embedded), desc="fit: with_embedding candidates", unit="fit",
                  disable=not options.progress) as bar:
            more = learn.search(train, embedded, lambda: bar.update(1))
        chosen[WITH_EMBEDDING] = learn.best(more)
        tried += more
    return chosen, tried


def _threshold(oof: NDArray[np.float64], train: Rows, options: Options) -> float:
    if options.min_accuracy is None:
        window_rate = float(train.window_escalated.mean()) if len(train) else 0.0
        if window_rate > options.max_escalation:
            # Not an error (the policy still ranks and reports), but the target cannot be met as set.
            print(f"fit: warning: the entropy window alone escalates {window_rate:.0%} of the train drafts, more "
                  f"than --max-escalation {options.max_escalation:.0%}; the risk threshold is 1.0 (risk never "
                  "escalates). Raise routing.entropy_threshold in --config, or use --min-accuracy.", file=sys.stderr)
        return learn.threshold_for_escalation(oof, train.window_escalated, options.max_escalation)
    threshold = learn.threshold_for_accuracy(oof, train.window_escalated, train.wrong, train.heavy_right,
                                             options.min_accuracy)
    if threshold is None:
        best = learn.accuracy(np.ones(len(train), dtype=bool), train.wrong, train.heavy_right)
        raise FitError(f"no threshold reaches accuracy {options.min_accuracy} on the train split "
                       f"(escalating everything gives {best:.3f})")
    return threshold


def _trained_on(options: Options, train: Rows, model: str | None, top_k: int, routing: RoutingConfig,
                embedder_model: str | None) -> dict[str, Any]:
    target = ({"max_escalation": options.max_escalation} if options.min_accuracy is None
              else {"min_accuracy": options.min_accuracy})
    return {"dataset": options.prompts.name, "split": "train", "n": len(train), "wrong": int(train.wrong.sum()),
            "families": len(set(train.family)), "model": model, "top_k": top_k,
            "entropy_rule": {"threshold": routing.entropy_threshold, "window": routing.window,
                             "early_exit_tokens": routing.early_exit_tokens, "top_logprobs": routing.top_logprobs},
            "embedder": embedder_model, "target": target, "folds": learn.FOLDS, "policy_version": VERSION}


def evaluate(policy: RiskPolicy, chosen: Mapping[str, Scored], tried: Sequence[Scored], train: Rows,
             test: Rows, nested: Mapping[str, NDArray[np.float64]] | None = None) -> dict[str, Any]:
    """Cross-validated and test AUROC of each variant and of every single signal, with intervals (and the
    nested CV AUROC when `nested` has the variant's risks); the share of wrong drafts caught at a 30%
    escalation rate; escalation and accuracy at the threshold."""
    variants = {}
    for name, variant in policy.variants.items():
        threshold = policy.threshold_of(variant)
        risks = variant_risks(variant, test)
        variants[name] = {
            "chosen": chosen[name].candidate.to_json(),
            "cv": _auroc(train.wrong, chosen[name].oof, f"cv-{name}"),
            "test": _auroc(test.wrong, risks, f"test-{name}"),
            "caught_at_30": caught(risks, test.wrong, f"caught-{name}"),
            "train_at_threshold": at_threshold(chosen[name].oof, train, threshold),
            "test_at_threshold": at_threshold(risks, test, threshold),
        }
        if nested and name in nested:
            variants[name]["nested_cv"] = _auroc(train.wrong, nested[name], f"nested-{name}")
    primary = variants[WITH_EMBEDDING if WITH_EMBEDDING in variants else TRACE_ONLY]
    signals = {name: {"cv": _auroc(train.wrong, _signal(train, name), f"cv-{name}"),
                      "test": _auroc(test.wrong, _signal(test, name), f"test-{name}")}
               for name in (*SIGNALS, ROUTER_RULE)}
    return {"cv_auroc": primary["cv"]["auroc"], "test_auroc": primary["test"]["auroc"],
            "caught_at_30": primary["caught_at_30"]["value"], "test_n": len(test), "test_wrong": int(test.wrong.sum()),
            "variants": variants, "signals": signals,
            "tried": [{**s.candidate.to_json(), "cv_auroc": None if s.cv_auroc is None else round(s.cv_auroc, 4)}
                      for s in tried]}


def variant_risks(variant: Variant, rows: Rows) -> NDArray[np.float64]:
    """Each row's risk by the variant, row by row through risk.py: what the router computes."""
    out = np.zeros(len(rows))
    for i in range(len(rows)):
        signals = {name: float(values[i]) for name, values in rows.signals.items()}
        vector = None
        if variant.embedding is not None:
            assert rows.embeddings is not None
            vector = rows.embeddings[i].tolist()
        out[i] = variant.risk(signals, vector)
    return out


def at_threshold(risks: NDArray[np.float64], rows: Rows, threshold: float) -> dict[str, float | None]:
    """What the router does to these drafts at the threshold, the entropy window's aborts included."""
    escalate = learn.escalated(risks, rows.window_escalated, threshold)
    wrong = rows.wrong == 1
    accepted = ~escalate
    return {"escalation_rate": _mean(escalate), "window_escalation_rate": _mean(rows.window_escalated),
            "wrong_caught": _mean(escalate[wrong]) if wrong.any() else None,
            "accepted_accuracy": _mean(~wrong[accepted]) if accepted.any() else None,
            "accuracy": round(learn.accuracy(escalate, rows.wrong, rows.heavy_right), 4) if len(rows) else None}


def caught(risks: NDArray[np.float64], wrong: NDArray[np.float64], name: str,
           rate: float = CAUGHT_AT) -> dict[str, Any]:
    """The share of wrong drafts among the `rate` riskiest, with a bootstrap 95% interval."""
    value = learn.caught_at(risks, wrong, rate)
    if value is None:
        return {"rate": rate, "value": None, "ci": None, "best": None}
    # At most round(rate * n) drafts escalate: with more wrong drafts than that, even a perfect ranking
    # catches only that many (with 70% wrong, 30% escalated catches at most 43%).
    best = min(1.0, round(rate * len(risks)) / float(wrong.sum()))
    counts = resamples(len(risks), name).counts.astype(int)
    spread = []
    for row in counts:
        drawn = np.repeat(np.arange(len(risks)), row)
        spread.append(learn.caught_at(risks[drawn], wrong[drawn], rate))
    values = np.asarray([np.nan if v is None else v for v in spread])
    low, high = interval(values[:, None])[:, 0]
    return {"rate": rate, "value": round(value, 4), "ci": [round(float(low), 4), round(float(high), 4)],
            "best": round(best, 4)}


def _auroc(wrong: NDArray[np.float64], scores: NDArray[np.float64], name: str) -> dict[str, Any]:
    if not len(wrong):
        return {"auroc": None, "ci": None}
    return auroc(wrong, scores, resamples(len(wrong), name)).to_json()


def _signal(rows: Rows, name: str) -> NDArray[np.float64]:
    return rows.window_metric if name == ROUTER_RULE else rows.signals[name]


def _mean(values: NDArray[np.bool_]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0

