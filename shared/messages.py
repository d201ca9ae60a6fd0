"""Every message that crosses Redis, with explicit msgpack encode/decode.

Each payload carries its type and a wire version. Unknown fields are ignored so a
newer sender can add fields; a missing required field raises WireError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import msgpack

WIRE_VERSION = 1
# Client-facing: the extra field of a progressive stream's last chunk that carries its final decision.
DECISION_FIELD = "draftgate"

T = TypeVar("T")


class WireError(ValueError):
    """A payload could not be decoded into the expected message."""


class Tier(StrEnum):
    AUTO = "auto"
    DRAFTER = "drafter"
    HEAVYWEIGHT = "heavyweight"


class ReplyKind(StrEnum):
    HEAD = "head"  # routing decision; sent before any content
    CHUNK = "chunk"  # one chat.completion.chunk (streaming answers)
    COMPLETION = "completion"  # a whole chat.completion (non-streaming answers)
    ERROR = "error"  # an OpenAI error object and its HTTP status
    END = "end"  # no more replies for this request


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Gateway -> router: one client request to answer."""

    request_id: str
    reply_to: str
    body: dict[str, Any]
    tier: str = Tier.AUTO
    deadline: float = 0.0
    tenant: str = ""
    cache_store: bool = True
    deployment: str = ""  # a deployment named by the client: served by it alone, no entropy routing


@dataclass(frozen=True, slots=True)
class Reply:
    """Router -> gateway: one step of an answer; seq orders and dedupes them."""

    request_id: str
    seq: int
    kind: str
    decision: str | None = None
    draft_entropy: float | None = None
    speculation: str | None = None
    tier: str | None = None
    reason: str | None = None  # why an answer escalated: window_mean, early_token, no_logprobs, ...
    cost_usd: float | None = None  # what the answer cost, when known as the head is made (plain answers)
    draft_risk: float | None = None  # the learned policy's P(draft is wrong) when it decided (routing.policy: learned)
    status: int | None = None
    data: dict[str, Any] | None = None
    retry_after_s: float | None = None  # an error's wait (429: every deployment at its rate limit) -> Retry-After


@dataclass(frozen=True, slots=True)
class ReplyBatch:
    """Router -> gateway: encoded Replies written as one stream entry, so a whole answer (head,
    completion, end) reaches the gateway in one read instead of waking it once per reply."""

    replies: list[bytes]


@dataclass(frozen=True, slots=True)
class CacheWrite:
    """Router -> cache service: an accepted draft worth remembering."""

    request_id: str
    body: dict[str, Any]
    completion: dict[str, Any]
    tenant: str = ""
    created: float = field(default=0.0)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Gateway -> every router (pub/sub): the client went away, stop working on this request."""

    request_id: str


Message = ChatRequest | Reply | ReplyBatch | CacheWrite | Cancel

_TYPE_NAMES: dict[type, str] = {ChatRequest: "chat_request", Reply: "reply", ReplyBatch: "reply_batch",
                                CacheWrite: "cache_write", Cancel: "cancel"}
_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {cls: dataclasses.fields(cls) for cls in _TYPE_NAMES}


def encode(message: Message) -> bytes:
    cls = type(message)
    payload: dict[str, Any] = {"v": WIRE_VERSION, "type": _TYPE_NAMES[cls]}
    for f in _FIELDS[cls]:
        payload[f.name] = getattr(message, f.name)
    return msgpack.packb(payload, use_bin_type=True)


def decode(cls: type[T], raw: bytes) -> T:
    try:
        payload = msgpack.unpackb(raw, raw=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise WireError(f"not a msgpack payload: {exc}") from exc
    if not isinstance(payload, dict):
        raise WireError("payload is not a map")
    expected = _TYPE_NAMES[cls]
    if payload.get("type") != expected:
        raise WireError(f"expected a {expected} message, got {payload.get('type')!r}")
    if payload.get("v") != WIRE_VERSION:
        raise WireError(f"unsupported wire version {payload.get('v')!r} for {expected}")
    kwargs = {}
    for f in _FIELDS[cls]:
        if f.name in payload:
            kwargs[f.name] = payload[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise WireError(f"{expected} message is missing required field {f.name!r}")
    return cls(**kwargs)
