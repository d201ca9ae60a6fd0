"""Where to run the router: the chosen operating point and the knee of the cost/accuracy curve.

chosen: the largest cost reduction whose overall accuracy stays at or above the target; ties go to
the more accurate point, then to the lower threshold (the more cautious of settings that took the same
decisions here), then the smaller window and early exit.
knee: on the Pareto front (no other point both saves more and is as accurate), the point farthest
above the straight line between the front's two ends, both axes scaled to the front's range: where
saving more starts to cost accuracy fastest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.router.calibration.replay import Setting
from services.router.calibration.summary import Summary


@dataclass(frozen=True)
class Point:
    setting: Setting
    summary: Summary


def choose(points: Sequence[Point], min_accuracy: float) -> Point | None:
    """The most saving point that keeps overall accuracy >= min_accuracy; None when none does."""
    good = [p for p in points if p.summary.overall_accuracy >= min_accuracy - 1e-12]
    if not good:
        return None
    return min(good, key=lambda p: (-p.summary.cost_reduction, -p.summary.overall_accuracy, p.setting.threshold,
                                    p.setting.window, p.setting.early_exit))


def front(points: Sequence[Point]) -> list[Point]:
    """The Pareto front, ordered by cost reduction: each point more accurate than every point that
    saves more. Of points equal on both, the one choose() would prefer."""
    ordered = sorted(points, key=lambda p: (-p.summary.cost_reduction, -p.summary.overall_accuracy,
                                            p.setting.threshold, p.setting.window, p.setting.early_exit))
    kept: list[Point] = []
    for point in ordered:
        if not kept or point.summary.overall_accuracy > kept[-1].summary.overall_accuracy + 1e-12:
            kept.append(point)
    return kept[::-1]


def knee(points: Sequence[Point]) -> Point | None:
    """The front's point farthest above the chord between its ends; None with fewer than 3 points or
    when no point lies above the chord (a straight or sagging front has no knee)."""
    curve = front(points)
    if len(curve) < 3:
        return None
    xs = [p.summary.cost_reduction for p in curve]
    ys = [p.summary.overall_accuracy for p in curve]
    x_span, y_span = (xs[-1] - xs[0]) or 1.0, (ys[0] - ys[-1]) or 1.0
    best, best_gap = None, 1e-9
    for point, x, y in zip(curve, xs, ys, strict=True):
        # Scaled: the front runs from (0, 1) to (1, 0); the chord is u + v = 1.
        u, v = (x - xs[0]) / x_span, (y - ys[-1]) / y_span
        gap = u + v - 1.0
        if gap > best_gap:
            best, best_gap = point, gap
    return best
