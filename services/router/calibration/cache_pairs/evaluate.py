"""Pure: how the cache would answer each labelled pair, for each verifier over a sweep of similarity floors.

A pair is a hit when its texts share an exact key (the exact tier answers, no verifier runs) or when its
cosine is at or above the floor and the verifier passes it. Precision: the share of hits that are
paraphrases (1.0 when there are no hits: nothing wrong was served). Recall: the share of paraphrases hit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from services.router.calibration.cache_pairs.pairs import LabelledPair

VERIFIERS = ("cosine", "rules", "learned")  # "cosine": no verifier, today's cache


@dataclass(frozen=True, slots=True)
class Scored:
    pair: LabelledPair
    cosine: float
    passed: dict[str, bool]  # verifier -> whether it passes the pair (at any floor)


@dataclass(frozen=True, slots=True)
class Point:
    verifier: str
    floor: float
    hits: int
    paraphrase_hits: int
    wrong_hits: int  # near misses served: the answer to another question
    exact_hits: int
    paraphrases: int
    near_misses: int

    @property
    def precision(self) -> float:
        return self.paraphrase_hits / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.paraphrase_hits / self.paraphrases if self.paraphrases else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4)}


def score(pairs: Sequence[LabelledPair], cosines: Sequence[float],
          checks: dict[str, Callable[[str, str, float], bool]]) -> list[Scored]:
    return [Scored(p, c, {name: check(p.query, p.cached, c) for name, check in checks.items()})
            for p, c in zip(pairs, cosines, strict=True)]


def hit(scored: Scored, verifier: str, floor: float) -> bool:
    return scored.pair.exact or (scored.cosine >= floor and scored.passed[verifier])


def point(scored: Sequence[Scored], verifier: str, floor: float) -> Point:
    hits = [s for s in scored if hit(s, verifier, floor)]
    return Point(verifier, round(floor, 4), len(hits), sum(s.pair.same for s in hits),
                 sum(not s.pair.same for s in hits), sum(s.pair.exact for s in hits),
                 sum(s.pair.same for s in scored), sum(not s.pair.same for s in scored))


def sweep(scored: Sequence[Scored], verifier: str, floors: Sequence[float]) -> list[Point]:
    return [point(scored, verifier, f) for f in floors]


def floor_grid(start: float = 0.5, stop: float = 0.99, step: float = 0.01) -> list[float]:
    count = round((stop - start) / step)
    return [round(start + i * step, 4) for i in range(count + 1)]


def by_class(scored: Sequence[Scored], verifier: str, floor: float) -> dict[str, dict[str, int]]:
    """Per dataset class: pairs and hits (for a near-miss class every hit is a wrong answer)."""
    out: dict[str, dict[str, int]] = {}
    for s in scored:
        row = out.setdefault(f"{'same' if s.pair.same else 'different'}/{s.pair.cls}", {"pairs": 0, "hits": 0})
        row["pairs"] += 1
        row["hits"] += hit(s, verifier, floor)
    return dict(sorted(out.items()))
