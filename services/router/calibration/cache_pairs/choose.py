"""Pure: the operating point: a verifier and a floor that serve no wrong answer and as many paraphrases as can be."""

from __future__ import annotations

from collections.abc import Sequence

from services.router.calibration.cache_pairs.evaluate import Point

CHOOSABLE = ("rules", "learned")  # cosine alone is the baseline, never shipped
MIN_PRECISION = 0.995


def choose(points: Sequence[Point], min_precision: float = MIN_PRECISION) -> Point | None:
    """Precision >= min_precision and no wrong hit, then the highest recall; ties go to learned (it is
    never less strict than rules), then to the higher floor (fewer candidates to verify)."""
    safe = [p for p in points if p.verifier in CHOOSABLE and p.wrong_hits == 0 and p.precision >= min_precision
            and p.hits > 0]
    if not safe:
        return None
    return max(safe, key=lambda p: (p.recall, p.verifier == "learned", p.floor))
