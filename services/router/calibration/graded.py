"""The graded drafts a sweep replays: each prompt's drafter trace, whether it was right, and what the
drafter and the heavyweight answers cost, joined from traces.jsonl, grades.jsonl and the prompt set.

What was not measured is filled in and counted, so the sweep's output can say so:
- the heavyweight's answer not collected (or not graded): assumed right; its length taken as the draft's
  and its prompt as the drafter's;
- a tier's usage missing: the completion is the traced token count, the prompt the other tier's (or 0).
Drafts that failed, or were never graded, cannot be replayed and are left out (counted too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.router.calibration.dataset import load_items
from services.router.calibration.jsonl import read_jsonl
from services.router.calibration.traces import Trace, load_traces
from services.router.costs import estimate_prompt_tokens
from services.router.signals import TokenTrace
from shared.pricing import Price


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    split: str
    tokens: tuple[TokenTrace, ...]  # the drafter's trace
    draft_correct: bool
    drafter_prompt_tokens: int
    drafter_completion_tokens: int
    heavy_correct: bool  # as graded, or True when assumed (heavy_graded False)
    heavy_graded: bool
    heavy_prompt_tokens: int
    heavy_completion_tokens: int
    heavy_measured: bool  # the heavyweight's usage was recorded (else estimated from the draft)
    messages: tuple[dict[str, Any], ...] | None = None  # the prompt, when the prompt set was given


@dataclass(frozen=True)
class Prices:
    drafter: Price
    heavyweight: Price

    def drafted(self, item: Item, tokens: int) -> float:
        """What the drafter costs for reading the prompt and writing `tokens` tokens."""
        return self.drafter.cost(item.drafter_prompt_tokens, tokens)

    def heavy(self, item: Item) -> float:
        return self.heavyweight.cost(item.heavy_prompt_tokens, item.heavy_completion_tokens)


@dataclass
class Loaded:
    items: list[Item]
    skipped: Counter[str] = field(default_factory=Counter)  # why drafts were left out -> how many
    models: dict[str, str] = field(default_factory=dict)  # tier -> upstream model seen in the traces
    top_k: int = 0  # the smallest k the drafter traces were recorded with


def load_grades(path: Path) -> dict[tuple[str, str], bool]:
    """(id, tier) -> right or wrong; the last record of a pair counts, and one whose `correct` is not
    a boolean (a grader that could not decide) leaves the pair ungraded."""
    grades: dict[tuple[str, str], bool] = {}
    for record in read_jsonl(path):
        key = (str(record["id"]), str(record["tier"]))
        correct = record.get("correct")
        if isinstance(correct, bool):
            grades[key] = correct
        else:
            grades.pop(key, None)
    return grades


def load_prompts(path: Path | None) -> dict[str, tuple[dict[str, Any], ...]]:
    """id -> messages of the prompt set (empty when no file is given)."""
    return {} if path is None else {item.id: item.messages for item in load_items(path)}


def load(traces: Path, grades: Path, prompts: Path | None = None) -> Loaded:
    return join(load_traces(traces), load_grades(grades), load_prompts(prompts))


def join(traces: Mapping[tuple[str, str], Trace], grades: Mapping[tuple[str, str], bool],
         prompts: Mapping[str, Sequence[dict[str, Any]]]) -> Loaded:
    """One Item per drafter trace that succeeded and was graded, in the trace file's order."""
    loaded = Loaded(items=[])
    ks = []
    for (item_id, tier), draft in traces.items():
        if tier != "drafter":
            continue
        if not draft.ok:
            loaded.skipped["drafter_error"] += 1
            continue
        if (item_id, "drafter") not in grades:
            loaded.skipped["drafter_ungraded"] += 1
            continue
        heavy = traces.get((item_id, "heavyweight"))
        loaded.items.append(_item(draft, grades, heavy if heavy is not None and heavy.ok else None,
                                  prompts.get(item_id)))
        loaded.models.setdefault("drafter", draft.model)
        if heavy is not None and heavy.ok:
            loaded.models.setdefault("heavyweight", heavy.model)
        ks.append(draft.top_k)
    loaded.top_k = min(ks, default=0)
    return loaded


def _item(draft: Trace, grades: Mapping[tuple[str, str], bool], heavy: Trace | None,
          messages: Sequence[dict[str, Any]] | None) -> Item:
    heavy_grade = grades.get((draft.id, "heavyweight")) if heavy is not None else None
    drafted_out = draft.usage.completion_tokens if draft.usage else len(draft.tokens)
    heavy_in = heavy.usage.prompt_tokens if heavy is not None and heavy.usage else None
    # Servers that stream no usage (llama.cpp): the prompt estimated as the router estimates it.
    estimated = estimate_prompt_tokens(messages) if messages else 0
    drafter_in = draft.usage.prompt_tokens if draft.usage else heavy_in or estimated
    heavy_out = heavy.usage.completion_tokens if heavy is not None and heavy.usage else None
    return Item(
        id=draft.id, category=draft.category, split=draft.split, tokens=draft.tokens,
        draft_correct=grades[(draft.id, "drafter")],
        drafter_prompt_tokens=drafter_in, drafter_completion_tokens=drafted_out,
        heavy_correct=True if heavy_grade is None else heavy_grade, heavy_graded=heavy_grade is not None,
        heavy_prompt_tokens=drafter_in if heavy_in is None else heavy_in,
        heavy_completion_tokens=drafted_out if heavy_out is None else heavy_out,
        heavy_measured=heavy_out is not None,
        messages=None if messages is None else tuple(messages),
    )
