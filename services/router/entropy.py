"""Token entropy and the accept / speculate / escalate rule. Pure: tests feed it numbers."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

_LN2 = math.log(2)


def token_entropy_bits(top_logprobs: Iterable[float | None]) -> float | None:
    """Shannon entropy in bits of a token's top-k log-probs (natural log), renormalised to sum to 1.

    Sentinels such as -9999 or -inf carry no probability mass and drop out; None when no
    usable value is left, so the caller can skip the token instead of breaking the window.
    """
    usable = [lp for lp in top_logprobs if lp is not None and lp > -math.inf]  # NaN fails the comparison too
    if not usable:
        return None
    peak = max(usable)
    total = weighted = 0.0
    for lp in usable:
        shifted = lp - peak
        weight = math.exp(shifted)
        total += weight
        weighted += weight * shifted
    # -sum p*log2(p) with p = weight/total, rearranged so only one logarithm is taken per token.
    return max(math.log2(total) - weighted / (total * _LN2), 0.0)


class Decision(StrEnum):
    CONTINUE = "continue"
    SPECULATE = "speculate"  # elevated, not critical: start the heavyweight in parallel
    ESCALATE = "escalate"  # critical: abort the draft, the heavyweight answers


@dataclass
class EntropyWindow:
    """Sliding window over per-token entropies that decides when a draft becomes untrustworthy.

    Escalate when the mean of the last `size` tokens exceeds `threshold` (full window only), or
    when any single token exceeds it within the first `early_exit_tokens`. Speculate when a token
    or the running window mean exceeds `speculation_threshold` (None: never).
    """

    threshold: float
    size: int
    early_exit_tokens: int
    speculation_threshold: float | None = None
    tokens: int = 0
    escalation: str | None = None  # "window_mean" or "early_token" once ESCALATE was returned
    _window: deque[float] = field(default_factory=deque, repr=False)
    _max_full_mean: float | None = field(default=None, repr=False)
    _total: float = field(default=0.0, repr=False)

    def add(self, bits: float) -> Decision:
        self.tokens += 1
        self._total += bits
        self._window.append(bits)
        if len(self._window) > self.size:
            self._window.popleft()
        mean = sum(self._window) / len(self._window)
        if len(self._window) == self.size:
            self._max_full_mean = mean if self._max_full_mean is None else max(self._max_full_mean, mean)
            if mean > self.threshold:
                self.escalation = "window_mean"
                return Decision.ESCALATE
        if self.tokens <= self.early_exit_tokens and bits > self.threshold:
            self.escalation = "early_token"
            return Decision.ESCALATE
        spec = self.speculation_threshold
        if spec is not None and (bits > spec or mean > spec):
            return Decision.SPECULATE
        return Decision.CONTINUE

    @property
    def mean(self) -> float:
        """The mean of the tokens in the window now (0.0 before any token)."""
        return sum(self._window) / len(self._window) if self._window else 0.0

    def recent_mean(self, count: int) -> float:
        """The mean of the newest `count` tokens (at most the window's; 0.0 before any token)."""
        recent = list(self._window)[-count:] if count > 0 else []
        return sum(recent) / len(recent) if recent else 0.0

    @property
    def metric(self) -> float:
        """The reported decision metric: the largest full-window mean seen, or, for a draft
        shorter than the window, the mean over all its tokens (0.0 before any token)."""
        if self._max_full_mean is not None:
            return self._max_full_mean
        return self._total / self.tokens if self.tokens else 0.0
