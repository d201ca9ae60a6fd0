"""The rows `fit` learns from: one per graded draft, its trace and prompt signals as the router computes
them, whether it was wrong, its template family (the unit of cross-validation) and split, and whether
the router's entropy window would have aborted it anyway (so the threshold's escalation rate counts
both ways a draft is escalated).

Signals come from services/router/signals.py through risk.signals_of, at the policy's k: the same code
and the same k the router scores a live draft with. Prompt embeddings come from the embedder's own
backend factory (as the cache-pairs step embeds), of the same text the router sends to the embedder
service: the last user message (signals.prompt_text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.router.calibration.graded import Item as Graded
from services.router.calibration.replay import Setting, replay, token_bits, window_metric
from services.router.risk import signals_of
from services.router.signals import DRAFT_SIGNALS, PROMPT_SIGNALS, prompt_text, with_top_k
from shared.config import RoutingConfig

SIGNALS = (*DRAFT_SIGNALS, *PROMPT_SIGNALS)


@dataclass(frozen=True)
class Rows:
    ids: tuple[str, ...]
    split: tuple[str, ...]
    family: tuple[str, ...]
    category: tuple[str, ...]
    texts: tuple[str, ...]  # the prompt text the router embeds
    wrong: NDArray[np.float64]  # 1.0: the draft was graded wrong
    heavy_right: NDArray[np.bool_]  # the heavyweight's answer right (as graded, or assumed)
    window_escalated: NDArray[np.bool_]  # the entropy window alone would have escalated it
    window_metric: NDArray[np.float64]  # the router's rule as one score (largest full-window mean)
    signals: Mapping[str, NDArray[np.float64]]
    embeddings: NDArray[np.float64] | None = None  # unit rows, one per draft

    def __len__(self) -> int:
        return len(self.ids)

    def matrix(self, names: Sequence[str]) -> NDArray[np.float64]:
        return np.column_stack([self.signals[name] for name in names]) if names else np.zeros((len(self), 0))

    def where(self, mask: NDArray[np.bool_]) -> Rows:
        pick = np.flatnonzero(mask)

        def keep(values: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(values[i] for i in pick)

        return Rows(ids=keep(self.ids), split=keep(self.split), family=keep(self.family),
                    category=keep(self.category), texts=keep(self.texts), wrong=self.wrong[pick],
                    heavy_right=self.heavy_right[pick], window_escalated=self.window_escalated[pick],
                    window_metric=self.window_metric[pick],
                    signals={name: values[pick] for name, values in self.signals.items()},
                    embeddings=None if self.embeddings is None else self.embeddings[pick])

    def split_of(self, name: str) -> Rows:
        return self.where(np.asarray([s == name for s in self.split], dtype=bool))

    def with_embeddings(self, vectors: Mapping[str, NDArray[np.float64]]) -> Rows:
        return replace(self, embeddings=np.vstack([vectors[text] for text in self.texts]))


def concat(parts: Sequence[Rows]) -> Rows:
    """The rows of every part, in order (fit --from-audit: the shipped prior, then the audited drafts).
    Embeddings are kept when every part has them, else dropped."""
    if not parts:
        raise ValueError("nothing to concatenate")

    def joined(name: str) -> tuple[Any, ...]:
        return tuple(value for part in parts for value in getattr(part, name))

    embedded = all(part.embeddings is not None for part in parts)
    return Rows(ids=joined("ids"), split=joined("split"), family=joined("family"), category=joined("category"),
                texts=joined("texts"), wrong=np.concatenate([part.wrong for part in parts]),
                heavy_right=np.concatenate([part.heavy_right for part in parts]),
                window_escalated=np.concatenate([part.window_escalated for part in parts]),
                window_metric=np.concatenate([part.window_metric for part in parts]),
                signals={name: np.concatenate([part.signals[name] for part in parts]) for name in parts[0].signals},
                embeddings=np.vstack([part.embeddings for part in parts  # type: ignore[misc]
                                      ]) if embedded else None)


def build_rows(items: Sequence[Graded], families: Mapping[str, str], messages: Mapping[str, Sequence[dict[str, Any]]],
               top_k: int, routing: RoutingConfig) -> Rows:
    """One row per graded draft. `families` and `messages` come from the prompt set (by item id);
    `routing` is the entropy rule the router runs in front of the policy, at its own k; the signals are
    computed at the policy's `top_k`."""
    missing = [item.id for item in items if item.id not in families]
    if missing:
        raise ValueError(f"{len(missing)} graded drafts are not in the prompt set (first: {missing[0]!r}); "
                         "give the prompts file they were collected from (--prompts)")
    setting = Setting(routing.entropy_threshold, routing.window, routing.early_exit_tokens)
    columns: dict[str, list[float]] = {name: [] for name in SIGNALS}
    escalated, metric = [], []
    for item in items:
        for name, value in signals_of(with_top_k(item.tokens, top_k), messages[item.id]).items():
            columns[name].append(value)
        escalated.append(replay(item.tokens, setting, routing.top_logprobs).escalated)
        metric.append(window_metric(token_bits(item.tokens, routing.top_logprobs), routing.window))
    return Rows(
        ids=tuple(item.id for item in items), split=tuple(item.split for item in items),
        family=tuple(families[item.id] for item in items), category=tuple(item.category for item in items),
        texts=tuple(prompt_text(messages[item.id]) for item in items),
        wrong=np.asarray([0.0 if item.draft_correct else 1.0 for item in items]),
        heavy_right=np.asarray([item.heavy_correct for item in items], dtype=bool),
        window_escalated=np.asarray(escalated, dtype=bool), window_metric=np.asarray(metric, dtype=float),
        signals={name: np.asarray(values, dtype=float) for name, values in columns.items()})
