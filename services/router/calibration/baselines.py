"""Simpler routers to hold the entropy rule against, each escalating the same share of requests.

A score router ranks the items by one signal (higher: more likely wrong, services/router/signals.py)
and escalates the top share; items tied at the cut are escalated in part (each by the fraction that
makes the share exact), so the result does not depend on the order of the file. Random escalates
every item by the same fraction (its expected outcome, no draw). Routers that decide from the
prompt (random, prompt length) escalate before drafting: the drafter is not called for those. Routers
that score the draft (minimum log-prob, largest token entropy, 0.8-quantile of -log-prob) decide
after the whole draft: the drafter is paid for all of it. Always-drafter and always-heavyweight are
the two ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.router.calibration.graded import Item, Prices
from services.router.calibration.summary import Rules, Vector
from services.router.signals import draft_signals, prompt_signals, with_top_k


@dataclass(frozen=True)
class Baseline:
    name: str
    signal: str | None  # the signals.py name it ranks by; None: random or a fixed end
    before_draft: bool  # decided from the prompt alone: no draft is paid for when it escalates
    fixed_rate: float | None = None  # the two ends escalate a fixed share whatever the target


BASELINES = (
    Baseline("random", None, before_draft=True),
    Baseline("prompt_length", "prompt_log_chars", before_draft=True),
    Baseline("min_logprob", "max_neglogprob", before_draft=False),
    Baseline("max_entropy", "max_entropy", before_draft=False),
    Baseline("q80_neglogprob", "q80_neglogprob", before_draft=False),
    Baseline("always_drafter", None, before_draft=False, fixed_rate=0.0),
    Baseline("always_heavyweight", None, before_draft=True, fixed_rate=1.0),
)


def item_signals(item: Item, top_k: int) -> dict[str, float]:
    """The draft's signals as a router asking for `top_k` alternatives sees them, and the prompt's
    (when the prompt set was loaded)."""
    signals = draft_signals(with_top_k(item.tokens, top_k))
    if item.messages is not None:
        signals.update(prompt_signals(item.messages))
    return signals


def available(baselines: Sequence[Baseline], signals: Sequence[dict[str, float]]) -> list[Baseline]:
    """The baselines every item has the signal for (prompt length needs the prompt set)."""
    return [b for b in baselines if b.signal is None or all(b.signal in s for s in signals)]


def shares(scores: Vector, count: float) -> Vector:
    """Per item, the share escalated so that `count` items are escalated in all, highest scores first
    and ties at the cut split evenly."""
    n = len(scores)
    count = min(max(count, 0.0), float(n))
    if count == 0:
        return np.zeros(n)
    cut_value = np.sort(scores)[::-1][math.ceil(count - 1e-9) - 1]
    above = scores > cut_value
    tied = scores == cut_value
    out = above.astype(np.float64)
    out[tied] = (count - above.sum()) / tied.sum()
    return out


def rules(baselines: Sequence[Baseline], rates: Sequence[float], items: Sequence[Item],
          signals: Sequence[dict[str, float]], prices: Prices) -> tuple[list[tuple[Baseline, float]], Rules]:
    """Each baseline at each escalation rate, as rule columns over `items`: (baseline, rate) per column."""
    drafted = np.array([prices.drafted(i, i.drafter_completion_tokens) for i in items])
    heavy = np.array([prices.heavy(i) for i in items])
    columns: list[tuple[Baseline, float]] = []
    escalated, cost = [], []
    for baseline in baselines:
        for rate in ([baseline.fixed_rate] if baseline.fixed_rate is not None else rates):
            share = _share(baseline, rate, signals)
            paid_draft = drafted * (1.0 - share) if baseline.before_draft else drafted
            columns.append((baseline, rate))
            escalated.append(share)
            cost.append(paid_draft + share * heavy)
    n = len(items)
    return columns, Rules(np.array(escalated).T.reshape(n, len(columns)), np.array(cost).T.reshape(n, len(columns)))


def _share(baseline: Baseline, rate: float, signals: Sequence[dict[str, float]]) -> Vector:
    n = len(signals)
    if baseline.signal is None:
        return np.full(n, rate)
    return shares(np.array([s[baseline.signal] for s in signals]), rate * n)
