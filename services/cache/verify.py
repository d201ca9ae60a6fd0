"""Pure: does a cached request's answer also answer the new request? The semantic tier's last word.

`rules` vetoes what the embedding cannot see (services/cache/pair_features.py: literals, quantities,
negation, operators, opposites, languages, entities, order). `learned` is those vetoes AND a logistic
model over the cosine and lexical features (services/cache/logistic.py, fitted by
`python -m services.router.calibrate cache-pairs`), so it is never less strict than `rules`.
No I/O at check time: the model JSON is read once, when the verifier is built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.cache import logistic
from services.cache.logistic import LogisticModel
from services.cache.pair_features import FEATURES, features, veto
from services.cache.reading import Kind, Reading, read

KINDS = ("rules", "learned")
SHIPPED_MODEL = Path(__file__).with_name("verifier_model.json")
# Every reason a candidate can be rejected for: the label values of draftgate_cache_rejected_total.
REASONS: tuple[str, ...] = (*(k.value for k in Kind), "unit", "order", "negation", "operator", "antonym",
                            "question", "language", "entity", "learned", "no_text")


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str  # "passed", or why not: one of REASONS


PASSED = Verdict(True, "passed")


class Verifier(Protocol):
    name: str

    def check(self, query: str, cached: str | None, similarity: float) -> Verdict: ...


@functools.lru_cache(maxsize=4096)
def reading(text: str) -> Reading:
    """Cached: the same request text is read once per candidate and once per lookup that meets it."""
    return read(text)


@dataclass(frozen=True, slots=True)
class RulesVerifier:
    name: str = field(default="rules", init=False)

    def check(self, query: str, cached: str | None, similarity: float) -> Verdict:
        if not cached:
            return Verdict(False, "no_text")
        reason = veto(reading(query), reading(cached))
        return PASSED if reason is None else Verdict(False, reason)


@dataclass(frozen=True, slots=True)
class LearnedVerifier:
    model: LogisticModel
    name: str = field(default="learned", init=False)

    def __post_init__(self) -> None:
        if self.model.features != FEATURES:
            raise ValueError(f"verifier model features {list(self.model.features)} are not this version's "
                             f"{list(FEATURES)}: refit it with `python -m services.router.calibrate cache-pairs`")

    def check(self, query: str, cached: str | None, similarity: float) -> Verdict:
        if not cached:
            return Verdict(False, "no_text")
        a, b = reading(query), reading(cached)
        reason = veto(a, b)
        if reason is not None:
            return Verdict(False, reason)
        return PASSED if self.model.passes(features(a, b, similarity)) else Verdict(False, "learned")

    def probability(self, query: str, cached: str, similarity: float) -> float:
        return self.model.probability(features(reading(query), reading(cached), similarity))


def build_verifier(kind: str, model_path: str | Path | None = None) -> RulesVerifier | LearnedVerifier:
    """The configured verifier (cache.verify, cache.verify_model); ValueError on an unknown kind or bad model."""
    if kind == "rules":
        return RulesVerifier()
    if kind == "learned":
        return LearnedVerifier(logistic.load(model_path or SHIPPED_MODEL))
    raise ValueError(f"cache.verify: {kind!r} is not one of {', '.join(KINDS)}")
