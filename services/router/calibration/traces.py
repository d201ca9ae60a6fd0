"""The trace record: one model answer to one calibration prompt, token by token, as `collect` writes it.

traces.jsonl is append-only (see jsonl.py): a prompt that failed is recorded with its error and tried
again by the next run, which appends a new record. So a file can hold several records of one
(id, tier); `latest_traces` gives the one that counts: the last without an error, else the last error.
Every later step (grade, sweep, fit) reads traces through this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.router.calibration.jsonl import read_jsonl
from services.router.signals import TokenTrace

VERSION = 1
TIERS = ("drafter", "heavyweight")
DEFAULT_TRACES = Path(".data/calibration/traces.jsonl")

Key = tuple[str, str]  # (item id, tier)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Usage | None:
        if not isinstance(data, dict):
            return None
        return cls(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


@dataclass(frozen=True)
class Trace:
    """One (item, tier) answer. `tokens` carry the top-`top_k` log-probs the upstream sent (empty when
    none were asked, as for the heavyweight); `ttft_s` is None when no token arrived."""

    id: str
    tier: str
    model: str
    category: str
    split: str
    text: str = ""
    tokens: tuple[TokenTrace, ...] = ()
    top_k: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    error: str | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # fields a newer writer added

    @property
    def key(self) -> Key:
        return (self.id, self.tier)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION, "id": self.id, "tier": self.tier, "model": self.model, "category": self.category,
            "split": self.split, "text": self.text, "tokens": [t.to_json() for t in self.tokens], "top_k": self.top_k,
            "usage": self.usage.to_json() if self.usage else None, "finish_reason": self.finish_reason,
            "ttft_s": self.ttft_s, "latency_s": self.latency_s, "error": self.error, "attempts": self.attempts,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trace:
        known = {"v", "id", "tier", "model", "category", "split", "text", "tokens", "top_k", "usage",
                 "finish_reason", "ttft_s", "latency_s", "error", "attempts"}
        if data.get("v", VERSION) != VERSION:
            raise ValueError(f"trace record version {data.get('v')!r}; this draftgate reads version {VERSION}")
        return cls(
            id=str(data["id"]), tier=str(data["tier"]), model=str(data.get("model") or ""),
            category=str(data.get("category") or ""), split=str(data.get("split") or ""),
            text=str(data.get("text") or ""), tokens=tuple(TokenTrace.from_json(t) for t in data.get("tokens") or ()),
            top_k=int(data.get("top_k") or 0), usage=Usage.from_json(data.get("usage")),
            finish_reason=data.get("finish_reason"), ttft_s=data.get("ttft_s"),
            latency_s=float(data.get("latency_s") or 0.0), error=data.get("error"),
            attempts=int(data.get("attempts") or 1), extra={k: v for k, v in data.items() if k not in known},
        )


def read_traces(path: Path) -> list[Trace]:
    """Every trace record in file order (a torn last line skipped), including superseded ones."""
    out = []
    for number, record in enumerate(read_jsonl(path), start=1):
        try:
            out.append(Trace.from_json(record))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: record {number}: not a trace ({exc})") from None
    return out


def latest_traces(traces: Iterable[Trace]) -> dict[Key, Trace]:
    """The record that counts for each (id, tier): the last one without an error, else the last error."""
    chosen: dict[Key, Trace] = {}
    for trace in traces:
        current = chosen.get(trace.key)
        if current is None or trace.ok or not current.ok:
            chosen[trace.key] = trace
    return chosen


def load_traces(path: Path) -> dict[Key, Trace]:
    """The traces of a file as the later steps use them: one per (id, tier), see latest_traces."""
    return latest_traces(read_traces(path))


def done_keys(path: Path) -> set[Key]:
    """The (id, tier) pairs already recorded without an error: a resumed run skips them."""
    return {key for key, trace in load_traces(path).items() if trace.ok}
