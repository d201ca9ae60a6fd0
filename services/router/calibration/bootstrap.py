"""Bootstrap 95% intervals: resample the items with replacement, recompute, take the percentiles.

A resample is kept as counts (how often each item was drawn), so a statistic that is a sum over
items is one matrix product for all 2,000 resamples and every grid point at once. The resamples
come from numpy's generator seeded by (seed, name of the subset): the same inputs give the same
intervals in any order and on any machine.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RESAMPLES = 2000
SEED = 16011
LEVEL = 0.95

Interval = tuple[float, float] | None


@dataclass(frozen=True)
class Resamples:
    """`counts[b, i]`: how often item i was drawn in resample b (each row sums to n)."""

    counts: NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.counts.shape[0])

    def sums(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per resample, the sum over items of `values` (items x columns -> resamples x columns)."""
        return self.counts @ values


def resamples(n: int, name: str, count: int = RESAMPLES, seed: int = SEED) -> Resamples:
    """`count` resamples of n items, fixed by (seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if not n:
        return Resamples(np.zeros((count, 0)))
    drawn = rng.integers(0, n, size=(count, n)) + np.arange(count)[:, None] * n
    return Resamples(np.bincount(drawn.ravel(), minlength=count * n).reshape(count, n).astype(np.float64))


def interval(values: NDArray[np.float64], level: float = LEVEL) -> NDArray[np.float64]:
    """Percentile interval of each column (resamples x columns -> 2 x columns). NaN resamples (a
    ratio with nothing under the line, as accuracy among no accepted drafts) are left out; a column
    that is NaN in every resample has a NaN interval."""
    tail = (1.0 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "All-NaN slice": NaN is the answer
        return np.nanpercentile(values, [tail, 100 - tail], axis=0)


def ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """numerator / denominator elementwise, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / np.where(denominator != 0, denominator, 1.0), np.nan)


def pair(bounds: NDArray[np.float64], column: int = 0) -> Interval:
    """One column's (low, high) as plain floats, None when undefined."""
    low, high = float(bounds[0, column]), float(bounds[1, column])
    return None if np.isnan(low) or np.isnan(high) else (low, high)
