"""Audited production drafts as calibration records: read from the audit's Redis stream or a JSONL export,
and turned into the graded drafts `fit` learns from.

The auditor (services/router/audit/) puts one `AuditLabel` (shared/messages.py) per audited draft on
AUDIT_LABELLED_STREAM: the draft's trace as `collect` records it, the heavyweight's re-answer, the verdict as a
grade record (agree: right, disagree: wrong; the heavyweight is the reference) and the request's messages. The
stream is a dataset: it is read with XRANGE, never acknowledged or trimmed here. An export holds the same labels
as JSON, one per line (`dataclasses.asdict`), for a machine without the cluster's Redis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from services.router.calibration import graded
from services.router.calibration.jsonl import read_jsonl
from services.router.calibration.traces import Trace, latest_traces
from services.router.signals import prompt_text
from shared.keys import AUDIT_LABELLED_STREAM, MESSAGE_FIELD
from shared.messages import AuditLabel, WireError, decode

PAGE = 500  # entries per XRANGE call
GROUP_PREFIX = "audit:"  # an audited draft's cross-validation group: its prompt text, hashed


@dataclass
class AuditedDrafts:
    """The usable audited drafts as graded items, with their prompts and groups, and what was left out."""

    items: list[graded.Item]
    messages: dict[str, list[dict[str, Any]]]  # request id -> the request's messages
    groups: dict[str, str]  # request id -> cross-validation group (drafts of one prompt share one)
    models: dict[str, str] = field(default_factory=dict)  # tier -> upstream model
    top_k: int = 0  # the smallest k the drafts were recorded with
    skipped: Counter[str] = field(default_factory=Counter)  # why labels were left out -> how many


def read_redis(url: str, stream: str = AUDIT_LABELLED_STREAM, page: int = PAGE) -> tuple[list[AuditLabel], int]:
    """Every label on the stream, oldest first, and how many entries could not be decoded (skipped)."""
    client = Redis.from_url(url)
    labels, broken, start = [], 0, "-"
    try:
        while True:
            entries = client.xrange(stream, min=start, max="+", count=page)
            for _, fields in entries:
                try:
                    labels.append(decode(AuditLabel, fields[MESSAGE_FIELD]))
                except (KeyError, WireError):
                    broken += 1
            if len(entries) < page:
                return labels, broken
            start = "(" + entries[-1][0].decode()  # exclusive: Redis 6.2 and later
    finally:
        client.close()


def read_export(path: Path) -> list[AuditLabel]:
    """The labels of a JSONL export (see write_export); a record that is not a label names its line."""
    known = {f.name for f in dataclasses.fields(AuditLabel)}
    out = []
    for number, record in enumerate(read_jsonl(path), start=1):
        try:
            out.append(AuditLabel(**{k: v for k, v in record.items() if k in known}))
        except TypeError as exc:
            raise ValueError(f"{path}: record {number}: not an audit label ({exc})") from None
    return out


def write_export(labels: Iterable[AuditLabel], path: Path) -> int:
    """Write the labels as JSON lines (replacing the file); how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w") as out:
        for label in labels:
            out.write(json.dumps(dataclasses.asdict(label), ensure_ascii=False) + "\n")
            count += 1
    return count


def group_of(messages: Sequence[dict[str, Any]]) -> str:
    """Drafts of the same prompt text fall in one cross-validation fold (production has no template family)."""
    return GROUP_PREFIX + hashlib.sha1(prompt_text(messages).encode()).hexdigest()[:12]


def audited_drafts(labels: Iterable[AuditLabel]) -> AuditedDrafts:
    """The labels as graded drafts, through graded.join as the shipped dataset's are. A label is left out
    (and counted) when its trace or grade cannot be read, it has no messages or no traced tokens, or its
    verdict is not a boolean; a request id seen twice keeps its last label."""
    traces: dict[tuple[str, str], Trace] = {}
    grades: dict[tuple[str, str], bool] = {}
    messages: dict[str, list[dict[str, Any]]] = {}
    skipped: Counter[str] = Counter()
    for label in labels:
        reason = _unusable(label)
        if reason:
            skipped[reason] += 1
            continue
        draft = Trace.from_json(label.trace)
        traces.update(latest_traces([draft]))
        if label.heavy_trace:
            heavy = Trace.from_json({**label.heavy_trace, "id": draft.id})
            traces[heavy.key] = heavy
        grades[(draft.id, "drafter")] = bool(label.grade["correct"])
        messages[draft.id] = list(label.messages)
    loaded = graded.join(traces, grades, messages)
    skipped.update(loaded.skipped)
    return AuditedDrafts(items=loaded.items, messages=messages,
                         groups={item_id: group_of(msgs) for item_id, msgs in messages.items()},
                         models=loaded.models, top_k=loaded.top_k, skipped=skipped)


def _unusable(label: AuditLabel) -> str | None:
    if not label.messages or not isinstance(label.messages, list):
        return "no_messages"
    if not isinstance(label.grade, dict) or not isinstance(label.grade.get("correct"), bool):
        return "no_verdict"
    if not isinstance(label.trace, dict) or label.trace.get("tier", "drafter") != "drafter":
        return "no_trace"
    try:
        draft = Trace.from_json(label.trace)
        if label.heavy_trace:
            Trace.from_json({**label.heavy_trace, "id": draft.id})
    except (KeyError, TypeError, ValueError):
        return "bad_trace"
    if not draft.ok:
        return "draft_error"
    if not draft.tokens:
        return "no_tokens"
    return None
