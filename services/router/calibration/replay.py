"""Replay one recorded draft through the router's entropy rule, offline: which decision the live
router would have taken on it, and how many tokens the drafter had written when it did.

The rule is the router's own `EntropyWindow` (services/router/entropy.py), built as the router builds
it (drafting.new_window) and fed token by token as drafting.judge feeds it: each token's recorded
alternatives cut to the router's k (`routing.top_logprobs`) most likely, its entropy by
`token_entropy_bits`, tokens without usable alternatives skipped, the draft aborted at the first
ESCALATE. A draft of which no token could be judged escalates ("unjudged"), as in the router.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.router.drafting import new_window
from services.router.entropy import Decision, EntropyWindow, token_entropy_bits
from services.router.signals import TokenTrace, with_top_k
from shared.config import RoutingConfig


@dataclass(frozen=True, slots=True)
class Setting:
    """One point of the sweep's grid: the three knobs of the entropy rule."""

    threshold: float
    window: int
    early_exit: int

    def routing(self, base: RoutingConfig | None = None) -> RoutingConfig:
        """The router's config at this point (speculation off: it never changes the decision)."""
        return dataclasses.replace(base or RoutingConfig(), entropy_threshold=self.threshold, window=self.window,
                                   early_exit_tokens=self.early_exit, speculation_threshold=None)


@dataclass(frozen=True, slots=True)
class Replayed:
    escalated: bool
    reason: str | None  # "window_mean", "early_token" or "unjudged" when escalated
    drafted: int  # tokens the drafter had written when the router decided (all of them on accept)
    metric: float  # the window's reported decision metric (X-Draft-Entropy) at that moment


def token_bits(tokens: Sequence[TokenTrace], top_k: int) -> list[float | None]:
    """Each token's entropy in bits as drafting.judge computes it (None: no usable alternative,
    which the router skips). Computed once per trace; the grid then replays the numbers."""
    return [token_entropy_bits(t.top_logprobs) for t in with_top_k(tokens, top_k)]


def replay_bits(bits: Sequence[float | None], window: EntropyWindow) -> Replayed:
    """Feed a draft's per-token entropies to a fresh window until it says ESCALATE."""
    for position, value in enumerate(bits, start=1):
        if value is None:
            continue
        if window.add(value) is Decision.ESCALATE:
            return Replayed(True, window.escalation, position, window.metric)
    if window.tokens == 0:
        return Replayed(True, "unjudged", len(bits), window.metric)
    return Replayed(False, None, len(bits), window.metric)


def replay(tokens: Sequence[TokenTrace], setting: Setting, top_k: int) -> Replayed:
    """The router's decision on this recorded draft at this setting."""
    return replay_bits(token_bits(tokens, top_k), new_window(setting.routing(RoutingConfig(top_logprobs=top_k))))


def window_metric(bits: Sequence[float | None], size: int) -> float:
    """The largest full-window mean over the whole draft (the router's X-Draft-Entropy had it never
    escalated): the draft-and-verify rule as one score, for ROC curves and AUROC."""
    return replay_bits(bits, EntropyWindow(math.inf, size, 0)).metric
