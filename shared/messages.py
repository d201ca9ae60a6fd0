"""Every message that crosses Redis, with explicit msgpack encode/decode.

Each payload carries its type and a wire version. Unknown fields are ignored so a
newer sender can add fields; a missing required field raises WireError.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
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


@dataclass(frozen=True)
class _Shape:
    """A message class's fields, as encode and decode walk them (worked out once per class)."""

    names: tuple[str, ...]  # every field, in order
    values: Callable[[Any], tuple[Any, ...]]  # a message -> its fields' values, in that order
    known: frozenset[str]  # every field
    required: frozenset[str]  # the fields without a default

    @classmethod
    def of(cls, message_class: type) -> _Shape:
        fields = dataclasses.fields(message_class)
        names = tuple(f.name for f in fields)
        getter = operator.attrgetter(*names)
        return cls(names, getter if len(names) > 1 else lambda message: (getter(message),), frozenset(names),
                   frozenset(f.name for f in fields
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))


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
    auditable: bool = True  # False: never sampled for the audit (Cache-Control: no-store)
    # The X-Request-ID the client sees (the ledger's and feedback's request_id); request_id is unique per
    # call (a client may reuse its own ids). "": the same as request_id.
    client_request_id: str = ""
    # A session's request: how its answerer stores the turn (shared/sessions.SessionSave.to_wire()), in
    # the round trip of the answer's last replies. None: no session.
    session: dict[str, Any] | None = None
    # The session's stored turns (shared/sessions.Turn, encoded), not yet prepended to the body: put here by
    # the key script (services/gateway/limits.lua) that read them and published the request in one round
    # trip; the router prepends them (shared/sessions.with_history). Always the LAST field: encoded as nil,
    # msgpack's last byte, which the script replaces by the turns. None: the body is already whole.
    history: list[Any] | None = None

    def composed(self, body: dict[str, Any], session: dict[str, Any] | None) -> ChatRequest:
        """This request with its session's turns prepended (shared/sessions.with_history): `body` and
        `session` in place of its own, no `history` left. Built field by field, as dataclasses.replace
        would (which cost a router 3 us a request); tests/unit/test_sessions.py checks no field is lost."""
        return ChatRequest(self.request_id, self.reply_to, body, self.tier, self.deadline, self.tenant,
                           self.cache_store, self.deployment, self.auditable, self.client_request_id, session, None)


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
    # What the answer cost, call by call (Account.to_wire()): on the last reply that carries content,
    # the COMPLETION of a plain answer, the END of a stream, or the ERROR.
    account: dict[str, Any] | None = None
    degraded: bool = False  # the heavyweight was full and the draft was served anyway (routing.degraded_mode)


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


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One upstream call an answer made, as Account lists it (a plain map on the wire)."""

    tier: str  # drafter | heavyweight
    deployment: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    # draft (served), aborted_draft (escalated away), speculation (used), wasted_speculation (cancelled),
    # answer (a tier's own answer: escalation, forced tier, deployment), continuation (after a progressive seam)
    role: str
    cost_usd: float | None = None  # priced at this deployment's own price; None: unpriced


_CALL = _Shape.of(UpstreamCall)


@dataclass(frozen=True, slots=True)
class Account:
    """What one answer cost: every call it made, and the heavyweight-alone baseline."""

    calls: tuple[UpstreamCall, ...] = ()
    cost_usd: float | None = None  # None when a call involved was unpriced
    baseline_usd: float | None = None  # the heavyweight alone, for the same prompt and answer length

    @property
    def saved_usd(self) -> float | None:
        return None if self.cost_usd is None or self.baseline_usd is None else self.baseline_usd - self.cost_usd

    def to_wire(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict (which deep-copies every value, on every answer).
        return {"calls": [dict(zip(_CALL.names, _CALL.values(call), strict=True)) for call in self.calls],
                "cost_usd": self.cost_usd, "baseline_usd": self.baseline_usd}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Account:
        try:
            # A call from a newer sender may carry more fields: those are left out.
            calls = tuple(UpstreamCall(**(call if call.keys() <= _CALL.known else
                                          {k: v for k, v in call.items() if k in _CALL.known}))
                          for call in data.get("calls") or ())
        except TypeError as exc:
            raise WireError(f"malformed account: {exc}") from exc
        return cls(calls, data.get("cost_usd"), data.get("baseline_usd"))


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """Gateway -> ledger service: one finished request (answered, refused or failed)."""

    request_id: str
    time: float  # unix seconds when the request arrived
    key_id: str = ""  # the virtual key's id, or the static key's hash; "" anonymous
    tenant: str = ""
    template_id: str = ""
    session_id: str = ""
    model: str = ""  # what the client asked for
    stream: bool = False
    status: int = 200
    decision: str = ""  # accept | escalate | continued | forced | cache_hit | error | ...
    tier: str = ""  # the tier that answered
    deployment: str = ""  # the deployment that answered
    account: dict[str, Any] | None = None  # Account.to_wire(): tokens and cost per call, baseline
    latency_ms: float | None = None
    ttft_ms: float | None = None  # streams: the first content chunk written to the client
    draft_entropy: float | None = None
    cache: str = ""  # exact | semantic | miss | "" (not looked up)
    error: str = ""  # the error's code (or type) when status >= 400
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class Feedback:
    """Gateway -> ledger (and audit metrics): a client's verdict on a request it made."""

    request_id: str
    verdict: str  # good | bad
    comment: str = ""
    key_id: str = ""
    tenant: str = ""
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class AuditSample:
    """Router -> auditors (AUDIT_STREAM): an accepted draft sampled for the audit, with its trace."""

    request_id: str  # unique per call: the labelled traces' id
    body: dict[str, Any]  # the request as drafted: the auditor asks the heavyweight the same
    text: str  # the draft the client got
    tokens: list[dict[str, Any]]  # signals.TokenTrace.to_json() per drafted token, as `collect` records them
    top_k: int  # the alternatives per token the drafter was asked for (routing.top_logprobs)
    model: str = ""  # the drafter model that answered
    tenant: str = ""
    category: str = ""  # the request's metadata.category, when given
    usage: dict[str, int] | None = None  # the drafter's prompt_tokens / completion_tokens, when streamed
    finish_reason: str | None = None
    draft_entropy: float | None = None
    time: float = 0.0  # unix seconds when sampled
    client_request_id: str = ""  # the client's X-Request-ID ("": request_id)


@dataclass(frozen=True, slots=True)
class AuditLabel:
    """Auditor -> AUDIT_LABELLED_STREAM: an audited draft as a calibration record (`fit --from-audit`).
    `trace` and `heavy_trace` are calibration Trace.to_json() records, `grade` a Grade.to_json() one."""

    request_id: str  # the client's X-Request-ID, as the ledger and feedback name the request
    time: float
    tenant: str = ""
    category: str = ""
    verdict: str = ""  # agree | disagree
    method: str = ""  # similarity | judge
    similarity: float | None = None  # cosine of the two answers' embeddings
    judge_score: int | None = None  # 1-5, when the judge was asked
    messages: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int | None = None
    trace: dict[str, Any] = field(default_factory=dict)
    heavy_trace: dict[str, Any] = field(default_factory=dict)
    grade: dict[str, Any] = field(default_factory=dict)


Message = (ChatRequest | Reply | ReplyBatch | CacheWrite | Cancel | LedgerRecord | Feedback | AuditSample
           | AuditLabel)

_TYPE_NAMES: dict[type, str] = {ChatRequest: "chat_request", Reply: "reply", ReplyBatch: "reply_batch",
                                CacheWrite: "cache_write", Cancel: "cancel", LedgerRecord: "ledger_record",
                                Feedback: "feedback", AuditSample: "audit_sample", AuditLabel: "audit_label"}
_SHAPES: dict[type, _Shape] = {cls: _Shape.of(cls) for cls in _TYPE_NAMES}


def encode(message: Message) -> bytes:
    cls = type(message)
    shape = _SHAPES[cls]
    payload: dict[str, Any] = {"v": WIRE_VERSION, "type": _TYPE_NAMES[cls]}
    payload.update(zip(shape.names, shape.values(message), strict=True))
    return msgpack.packb(payload, use_bin_type=True)


def _unpack(cls: type, raw: bytes) -> Any:
    """The payload; text that is not UTF-8 raises (UnicodeDecodeError), but in a request's `history`: it holds
    a session's stored turns as the key script read them from Redis (msgpack str, whatever their bytes), and
    an entry some other writer put in the list is kept with surrogates, which Turn.decode refuses like any
    entry that is no turn, instead of making the whole request undecodable. Anywhere else in the request
    such text still raises (UnicodeEncodeError, on packing the rest again: this path only)."""
    try:
        return msgpack.unpackb(raw, raw=False)
    except UnicodeDecodeError:
        if cls is not ChatRequest:
            raise
        payload = msgpack.unpackb(raw, raw=False, unicode_errors="surrogateescape")
        if isinstance(payload, dict):
            msgpack.packb({name: value for name, value in payload.items() if name != "history"})
        return payload


def decode(cls: type[T], raw: bytes) -> T:
    try:
        payload = _unpack(cls, raw)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise WireError(f"not a msgpack payload: {exc}") from exc
    if not isinstance(payload, dict):
        raise WireError("payload is not a map")
    expected = _TYPE_NAMES[cls]
    if payload.get("type") != expected:
        raise WireError(f"expected a {expected} message, got {payload.get('type')!r}")
    if payload.get("v") != WIRE_VERSION:
        raise WireError(f"unsupported wire version {payload.get('v')!r} for {expected}")
    shape = _SHAPES[cls]
    if not shape.required <= payload.keys():
        missing = next(name for name in shape.names if name in shape.required - payload.keys())
        raise WireError(f"{expected} message is missing required field {missing!r}")
    return cls(**{name: payload[name] for name in shape.names if name in payload})
