"""A learned risk policy: P(the draft is wrong) from its trace and its prompt, read from a JSON file.

`python -m services.router.calibrate fit` writes the file (no pickles: feature names, scaler,
coefficients, intercept, threshold); the router loads it once at start and scores each draft with a
dot product, so it needs neither scikit-learn nor numpy. Pure apart from reading the file.

A policy has two variants of one logistic model. `trace_only` reads the draft's trace signals and
the prompt's properties (services/router/signals.py); `with_embedding` adds the prompt's MiniLM
embedding, reduced by PCA to a few components. The router uses `with_embedding` when the embedding
arrived before the draft ended, else `trace_only`, so a slow or absent embedder never delays an answer.
A draft is accepted when its risk is at or below the variant's threshold.

File (version 2; version 1 files, which name only version 1's signals, are still read):
    {"kind": "draftgate-risk-policy", "version": 2, "top_k": 5, "threshold": 0.35,
     "trained_on": {...}, "metrics": {...},
     "variants": {"trace_only": {"features": [...], "mean": [...], "scale": [...], "coef": [...],
                                 "intercept": -0.2, "threshold": 0.35},
                  "with_embedding": {... the same, features ending in "emb_0".."emb_{k-1}", and
                                     "embedding": {"components": [[...384 floats], ...k rows],
                                                   "center": [...384 floats], "model": "all-MiniLM-L6-v2"}}}}
Version 2 added signals (services/router/signals.py: the spread of the entropies and log-probs, their
tail, the first token, the draft's shape, and cues of the prompt); a stacked embedding is a projection of
one component (the embedding's own logistic regression), so the file's layout is unchanged.
`top_k` is the number of alternatives per token the entropy signals were computed from: the router
must ask its drafter for at least that many. A variant's own threshold, when given, overrides the
top-level one (each is chosen for the same target escalation rate).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.router.signals import (
    DRAFT_SIGNALS,
    PROMPT_SIGNALS,
    TokenTrace,
    draft_signals,
    prompt_signals,
    with_top_k,
)

KIND = "draftgate-risk-policy"
VERSION = 2
READS = (1, 2)  # the versions this draftgate reads
# Version 1's signals: a version 1 file naming any other is not one fit wrote.
V1_FEATURES = frozenset({
    "max_entropy", "mean_entropy", "head_mean_entropy", "frac_uncertain", "max_window_mean", "max_neglogprob",
    "q80_neglogprob", "mean_neglogprob", "head_mean_neglogprob", "log_length", "prompt_log_chars",
    "prompt_digits", "prompt_code", "prompt_open", "prompt_steps"})
TRACE_ONLY, WITH_EMBEDDING = "trace_only", "with_embedding"
VARIANTS = (TRACE_ONLY, WITH_EMBEDDING)
EMBEDDING_PREFIX = "emb_"
TRACE_FEATURES = frozenset(DRAFT_SIGNALS) | frozenset(PROMPT_SIGNALS)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and what is wrong."""


def signals_of(tokens: Sequence[TokenTrace], messages: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Every trace feature a policy may name: the draft's signals and its prompt's."""
    return {**draft_signals(tokens), **prompt_signals(messages)}


@dataclass(frozen=True, slots=True)
class Projection:
    """PCA of the prompt's (unit-length) embedding: emb_i = (v - center) . components[i]."""

    components: tuple[tuple[float, ...], ...]
    center: tuple[float, ...]
    model: str | None = None  # the embedding model it was fitted on

    def project(self, vector: Sequence[float]) -> list[float]:
        if len(vector) != len(self.center):
            raise ValueError(f"an embedding of {len(vector)} dimensions for a projection of {len(self.center)}")
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        centred = [v / norm - c for v, c in zip(vector, self.center, strict=True)]
        return [sum(a * b for a, b in zip(row, centred, strict=True)) for row in self.components]

    def to_json(self) -> dict[str, Any]:
        return {"components": [list(row) for row in self.components], "center": list(self.center),
                "model": self.model}


@dataclass(frozen=True, slots=True)
class Variant:
    """One standardised logistic model: risk = sigmoid(intercept + sum(coef * (x - mean) / scale))."""

    name: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float | None = None  # None: the policy's
    embedding: Projection | None = None

    def risk(self, signals: Mapping[str, float], embedding: Sequence[float] | None = None) -> float:
        values = dict(signals)
        if self.embedding is not None:
            if embedding is None:
                raise ValueError(f"the {self.name} variant needs the prompt's embedding")
            values.update({f"{EMBEDDING_PREFIX}{i}": v for i, v in enumerate(self.embedding.project(embedding))})
        z = self.intercept + sum(c * (values[name] - m) / s for name, c, m, s in
                                 zip(self.features, self.coef, self.mean, self.scale, strict=True))
        return sigmoid(z)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                               "coef": list(self.coef), "intercept": self.intercept}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.embedding is not None:
            out["embedding"] = self.embedding.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Risk:
    """A draft's risk, the variant that gave it and the threshold it is held to."""

    value: float
    variant: str
    threshold: float

    @property
    def accept(self) -> bool:
        return self.value <= self.threshold


@dataclass(frozen=True)
class RiskPolicy:
    threshold: float
    top_k: int
    variants: Mapping[str, Variant]
    trained_on: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_only(self) -> Variant:
        return self.variants[TRACE_ONLY]

    @property
    def with_embedding(self) -> Variant | None:
        return self.variants.get(WITH_EMBEDDING)

    def threshold_of(self, variant: Variant) -> float:
        return self.threshold if variant.threshold is None else variant.threshold

    def risk(self, signals: Mapping[str, float], embedding: Sequence[float] | None = None) -> Risk:
        """With the embedding when there is one and a variant that reads it, else trace-only."""
        variant = self.with_embedding if embedding is not None and self.with_embedding is not None else None
        variant = variant or self.trace_only
        return Risk(variant.risk(signals, embedding), variant.name, self.threshold_of(variant))

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "version": VERSION, "top_k": self.top_k, "threshold": self.threshold,
                "trained_on": self.trained_on,
                "variants": {name: variant.to_json() for name, variant in self.variants.items()},
                "metrics": self.metrics}


def risk(policy: RiskPolicy, tokens: Sequence[TokenTrace], messages: Sequence[dict[str, Any]],
         embedding: Sequence[float] | None = None) -> Risk:
    """A whole recorded draft's risk as the router computes it when the draft ends: its trace cut to the
    policy's k alternatives per token (collect records up to 20), its prompt, and the prompt's embedding
    (None: trace-only). The calibration report scores test drafts with this."""
    return policy.risk(signals_of(with_top_k(tokens, policy.top_k), messages), embedding)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def load_policy(path: str | Path) -> RiskPolicy:
    """The policy in `path`; PolicyError naming the file when it is missing or not a valid policy."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"cannot read the risk policy {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"the risk policy {path} is not JSON: {exc}") from None
    return parse_policy(data, str(path))


def dump_policy(policy: RiskPolicy, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(policy.to_json(), indent=1) + "\n")


def parse_policy(data: Any, source: str = "<policy>") -> RiskPolicy:
    """Validate every field (a policy with a wrong length or an unknown feature would score nonsense)."""
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise PolicyError(f"the risk policy {source} is not a valid {KIND} (version "
                          f"{' or '.join(map(str, READS))}): {what}") from None


def _parse(data: Any) -> RiskPolicy:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ValueError(f"'kind' must be {KIND!r}")
    version = data.get("version")
    if version not in READS or isinstance(version, bool):
        raise ValueError(f"version {version!r} is unknown (this draftgate reads versions "
                         f"{', '.join(map(str, READS))}; a newer draftgate wrote it, or refit with `calibrate fit`)")
    threshold = _probability(data["threshold"], "threshold")
    top_k = data["top_k"]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 20:
        raise ValueError(f"top_k must be an integer from 1 to 20, got {top_k!r}")
    raw = data["variants"]
    if not isinstance(raw, dict) or TRACE_ONLY not in raw:
        raise ValueError(f"'variants' must hold at least {TRACE_ONLY!r}")
    unknown = set(raw) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant {sorted(unknown)[0]!r} (known: {', '.join(VARIANTS)})")
    known = V1_FEATURES if version == 1 else TRACE_FEATURES
    variants = {name: _variant(name, raw[name], known) for name in VARIANTS if name in raw}
    return RiskPolicy(threshold=threshold, top_k=top_k, variants=variants,
                      trained_on=dict(data.get("trained_on") or {}), metrics=dict(data.get("metrics") or {}))


def _variant(name: str, data: Any, known: frozenset[str] = TRACE_FEATURES) -> Variant:
    if not isinstance(data, dict):
        raise ValueError(f"variant {name!r} must be an object")
    features = tuple(str(f) for f in _list(data["features"], f"{name}.features"))
    columns = {key: _floats(data[key], f"{name}.{key}") for key in ("mean", "scale", "coef")}
    if not features or any(len(values) != len(features) for values in columns.values()):
        raise ValueError(f"{name}: features, mean, scale and coef must have one equal, non-zero length")
    if any(s <= 0 for s in columns["scale"]):
        raise ValueError(f"{name}: every scale must be > 0")
    if len(set(features)) != len(features):
        raise ValueError(f"{name}: a feature is named twice")
    embedding = _projection(name, data["embedding"]) if data.get("embedding") is not None else None
    if name == TRACE_ONLY and embedding is not None:
        raise ValueError(f"{TRACE_ONLY} must not read the embedding")
    if name == WITH_EMBEDDING and embedding is None:
        raise ValueError(f"{name}: needs an 'embedding' projection")
    dims = len(embedding.components) if embedding else 0
    expected_embedding = {f"{EMBEDDING_PREFIX}{i}" for i in range(dims)}
    for feature in features:
        if feature not in known and feature not in expected_embedding:
            raise ValueError(f"{name}: unknown feature {feature!r}" + (
                f" (its projection has {dims} components)" if feature.startswith(EMBEDDING_PREFIX) else ""))
    if name == WITH_EMBEDDING and not expected_embedding <= set(features):
        raise ValueError(f"{name}: must read every component of its projection, emb_0..emb_{dims - 1}")
    threshold = data.get("threshold")
    return Variant(name=name, features=features, mean=columns["mean"], scale=columns["scale"], coef=columns["coef"],
                   intercept=_float(data["intercept"], f"{name}.intercept"),
                   threshold=None if threshold is None else _probability(threshold, f"{name}.threshold"),
                   embedding=embedding)


def _projection(name: str, data: Any) -> Projection:
    if not isinstance(data, dict):
        raise ValueError(f"{name}.embedding must be an object")
    center = _floats(data["center"], f"{name}.embedding.center")
    rows = tuple(_floats(row, f"{name}.embedding.components") for row in _list(data["components"],
                                                                                 f"{name}.embedding.components"))
    if not center or not rows or any(len(row) != len(center) for row in rows):
        raise ValueError(f"{name}.embedding: components must be non-empty rows as long as center")
    model = data.get("model")
    return Projection(components=rows, center=center, model=None if model is None else str(model))


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _floats(value: Any, what: str) -> tuple[float, ...]:
    return tuple(_float(v, what) for v in _list(value, what))


def _probability(value: Any, what: str) -> float:
    number = _float(value, what)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1, got {number}")
    return number
