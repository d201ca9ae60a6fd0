"""The precision-recall PNG: each verifier's points over the floor sweep, and hits against the floor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from services.router.calibration.cache_pairs.evaluate import VERIFIERS, Point

COLOURS = {"cosine": "tab:gray", "rules": "tab:blue", "learned": "tab:green"}


def precision_recall(points: Sequence[Point], chosen: Point | None, path: Path, title: str) -> None:
    # A bare Figure renders with Agg and never touches pyplot's global state or a display.
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    for verifier in VERIFIERS:
        mine = sorted((p for p in points if p.verifier == verifier), key=lambda p: p.floor)
        if not mine:
            continue
        colour = COLOURS[verifier]
        left.plot([p.recall for p in mine], [p.precision for p in mine], "o-", ms=3, color=colour, label=verifier)
        floors = [p.floor for p in mine]
        right.plot(floors, [p.recall for p in mine], "-", color=colour, label=f"{verifier}: paraphrases hit")
        right.plot(floors, [p.wrong_hits / max(p.near_misses, 1) for p in mine], "--", color=colour,
                   label=f"{verifier}: near misses hit")
    if chosen is not None:
        left.plot([chosen.recall], [chosen.precision], "*", ms=16, color="black",
                  label=f"chosen: {chosen.verifier} at {chosen.floor:.2f}")
        right.axvline(chosen.floor, color="black", lw=0.8, ls=":")
    left.set(xlabel="recall (paraphrases hit)", ylabel="precision (hits that are right)", ylim=(0.45, 1.01),
             title="precision vs recall over the similarity floor")
    left.axhline(0.995, color="red", lw=0.8, ls=":", label="precision 99.5%")
    left.legend(loc="lower left", fontsize=8)
    right.set(xlabel="similarity floor (cosine)", ylabel="share of pairs hit", title="hits vs floor")
    right.legend(loc="upper right", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
