"""When a call is hedged: a fixed delay, or a percentile of its deployment's recent time to first token.
Pure: no I/O, no clock.

A tier's `hedge_after_ms: 200` starts the same call on a second deployment when the first has not
produced a chunk 200 ms after it was sent. `hedge_after: p95` does so after the 95th percentile of
the first deployment's own recent TTFTs instead, so a hedge fires on about the slowest 5% of calls
whatever the deployment's usual speed (the hedged requests of Dean and Barroso's "The Tail at Scale").

The percentile is taken over a `TtftSample` per deployment and per router process: the last
`SAMPLE_SIZE` (200) first-token delays this router measured on it. Until it holds `MIN_SAMPLES` (20)
nothing is hedged on that deployment: a percentile of a handful of calls says little, and a
deployment just added is better measured than raced.

A primary call that loses its race was cancelled before its first token: its delay is unknown but
at least the time it ran, and that lower bound goes into the sample. Without it a deployment that
became slower for good would be hedged at its old, faster percentile on every call (its slow calls
all cancelled, never measured); with it the percentile climbs to the new speed and the hedging
stops. A hedge that loses says nothing (it started late), and adds nothing.

How a caller uses it:

    policy = HedgePolicy.from_config(hedge_after_ms=None, percentile=95.0)
    delay = policy.delay_s(deployment.ttft)   # None: do not hedge this call
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

SAMPLE_SIZE = 200  # first-token delays kept per deployment (this router's most recent calls)
MIN_SAMPLES = 20  # fewer than this: no percentile, no hedge


class TtftSample:
    """The last `size` first-token delays (seconds) of one deployment, kept in order of arrival and
    sorted, so a percentile costs no sort: adding is a binary search and a move of at most `size`."""

    __slots__ = ("_arrived", "_sorted")

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a TTFT sample needs size >= 1, not {size}")
        self._arrived: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def add(self, seconds: float) -> None:
        if len(self._arrived) == self._arrived.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._arrived[0])]
        self._arrived.append(seconds)
        bisect.insort(self._sorted, seconds)

    def __len__(self) -> int:
        return len(self._arrived)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) by linear interpolation between the closest ranks (numpy's
        default); None when empty."""
        values = self._sorted
        if not values:
            return None
        rank = (len(values) - 1) * q / 100
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True)
class HedgePolicy:
    """A tier's hedging: after a fixed delay, or after a percentile of the primary's TTFT sample."""

    after_s: float | None = None
    percentile: float | None = None  # 50 .. 99.9
    min_samples: int = MIN_SAMPLES

    def __post_init__(self) -> None:
        if (self.after_s is None) == (self.percentile is None):
            raise ValueError("a hedge policy is a fixed delay or a percentile, exactly one")
        if self.after_s is not None and self.after_s <= 0:
            raise ValueError(f"a hedge delay must be > 0, not {self.after_s}")
        if self.percentile is not None and not 0 < self.percentile < 100:
            raise ValueError(f"a hedge percentile must be in (0, 100), not {self.percentile}")

    @classmethod
    def from_config(cls, hedge_after_ms: float | None, percentile: float | None) -> HedgePolicy | None:
        """The tier's policy (shared/config: hedge_after_ms, or hedge_after as a percentile); None: off."""
        if hedge_after_ms is not None:
            return cls(after_s=hedge_after_ms / 1000)
        if percentile is not None:
            return cls(percentile=percentile)
        return None

    def delay_s(self, sample: TtftSample) -> float | None:
        """How long a call on the deployment whose sample this is waits before it is hedged; None:
        not hedged (a percentile over fewer than `min_samples` delays)."""
        if self.after_s is not None:
            return self.after_s
        if len(sample) < self.min_samples:
            return None
        return sample.percentile(self.percentile)  # type: ignore[arg-type]

    def describe(self) -> str:
        """As the config says it: `200 ms` or `p95`."""
        if self.after_s is not None:
            return f"{self.after_s * 1000:g} ms"
        return f"p{self.percentile:g}"
