"""Every graded draft replayed at every point of the grid: escalated or not, why, and what it cost.

The expensive part of the sweep (items x grid points replays through the router's EntropyWindow);
each draft's token entropies are computed once and replayed per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from services.router.calibration.graded import Item, Prices
from services.router.calibration.replay import Setting, replay_bits, token_bits
from services.router.calibration.summary import Rules, Truth
from services.router.drafting import new_window

REASONS = ("window_mean", "early_token", "unjudged")


@dataclass(frozen=True)
class Grid:
    thresholds: tuple[float, ...]
    windows: tuple[int, ...]
    early_exit: tuple[int, ...]

    def settings(self) -> list[Setting]:
        """Every point, window and early exit outermost, thresholds ascending within."""
        return [Setting(t, w, e) for w in self.windows for e in self.early_exit for t in self.thresholds]

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {"thresholds": list(self.thresholds), "windows": list(self.windows),
                "early_exit": list(self.early_exit)}


@dataclass(frozen=True)
class Outcomes:
    settings: list[Setting]
    rules: Rules  # items x settings: escalated (0/1) and the item's cost under the setting
    reasons: NDArray[np.int8]  # items x settings: index into REASONS, -1 when accepted
    truth: Truth


def truth(items: Sequence[Item], prices: Prices) -> Truth:
    return Truth(draft_correct=np.array([float(i.draft_correct) for i in items]),
                 heavy_correct=np.array([float(i.heavy_correct) for i in items]),
                 heavy_cost=np.array([prices.heavy(i) for i in items]))


def replay_grid(items: Sequence[Item], settings: Sequence[Setting], top_k: int, prices: Prices,
                progress: bool = True) -> Outcomes:
    """Replay each draft at each setting as the router would have judged it while streaming.

    An escalated item costs the drafter's prompt and the tokens drafted up to the abort, plus the
    heavyweight's whole answer; an accepted one costs the drafter's whole answer."""
    routings = [s.routing() for s in settings]
    escalated = np.zeros((len(items), len(settings)))
    cost = np.zeros((len(items), len(settings)))
    reasons = np.full((len(items), len(settings)), -1, dtype=np.int8)
    for row, item in enumerate(tqdm(items, desc="replaying drafts", unit="draft", disable=not progress)):
        bits = token_bits(item.tokens, top_k)
        accepted_cost = prices.drafted(item, item.drafter_completion_tokens)
        heavy_cost = prices.heavy(item)
        for column, routing in enumerate(routings):
            replayed = replay_bits(bits, new_window(routing))
            if replayed.escalated:
                escalated[row, column] = 1.0
                cost[row, column] = prices.drafted(item, replayed.drafted) + heavy_cost
                reasons[row, column] = REASONS.index(replayed.reason or "unjudged")
            else:
                cost[row, column] = accepted_cost
    return Outcomes(list(settings), Rules(escalated, cost), reasons, truth(items, prices))
