"""Sessions: the gateway keeps a conversation in Redis and prepends it to the next request.

- A session is named by the client (`session_id` in the body, or the X-Session-Id header) and
  belongs to the key and tenant that used it: its Redis key is made from (key id, tenant, session
  id), so another key naming the same id sees an empty session of its own — it can neither read
  nor extend the first one, and cannot tell that it exists.
- Stored per turn, as one list entry: the request's own messages (after its leading system and
  developer messages, which are the request's preamble and are never stored) and the answer.
- The next request's upstream messages are: its preamble, the history, its own messages. The
  history is the newest stored turns whose estimated tokens fit gateway.session_max_tokens; older
  turns are dropped first (and trimmed from Redis as new turns are saved).
- Tokens are estimated as OpenAI's rule of thumb has it: about 4 characters a token, plus 4 tokens
  per message for its role and framing.
- The list expires gateway.session_ttl_s after its last turn.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from services.gateway.auth import KeyLookup, Principal
from shared.chat_request import SESSION_ID_PATTERN
from shared.errors import InvalidRequest
from shared.keys import SESSION_PREFIX

HEADER = "X-Session-Id"
FIELD = "session_id"  # in the request body, and in the answer (every chunk of a stream)
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
MAX_STORED_TURNS = 1000  # read at most this many turns back, whatever their size
_PREAMBLE_ROLES = frozenset({"system", "developer"})
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
# What an answer's message keeps when stored as the next request's history (a request's assistant message).
_ASSISTANT_KEYS = ("role", "content", "refusal", "tool_calls", "function_call")


def session_id_of(body_id: str | None, headers: Mapping[str, str]) -> str | None:
    """The session a request names, in its body or its header (the same one if both)."""
    header = headers.get(HEADER)
    if header is not None:
        header = header.strip()
        if not header or len(header) > 128 or not _SESSION_ID.match(header):
            raise InvalidRequest(f"Invalid {HEADER} header: 1-128 characters, letters, digits and _ . : - "
                                 "(not first).", param=FIELD, code="invalid_value")
        if body_id is not None and body_id != header:
            raise InvalidRequest(f"The body's session_id and the {HEADER} header name different sessions.",
                                 param=FIELD, code="invalid_value")
    return body_id if body_id is not None else header


def session_key(key_id: str, tenant: str, session_id: str) -> str:
    """The Redis list of one session, private to the key and tenant that own it."""
    owner = hashlib.sha256(f"{key_id}\x00{tenant}".encode()).hexdigest()[:24]
    return f"{SESSION_PREFIX}{owner}:{session_id}"


def caller_session_key(found: Principal | KeyLookup, session_id: str) -> str:
    """The session's key as known before the caller is admitted, so its read can go in the admission's
    round trip: a static key or an anonymous caller by its key and tenant; a token Redis must judge by
    the key id its hash names (a virtual key's tenant is the key's own) and the X-Tenant-ID it sent."""
    if isinstance(found, Principal):
        return session_key(found.key_id, found.tenant, session_id)
    return session_key(found.key_id, f":{found.sub_tenant}", session_id)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars = len(content)
        elif content is None:
            chars = 0
        else:  # content parts, tool calls: their JSON's size
            chars = len(orjson.dumps(content))
        if message.get("tool_calls"):
            chars += len(orjson.dumps(message["tool_calls"]))
        total += TOKENS_PER_MESSAGE + math.ceil(chars / CHARS_PER_TOKEN)
    return total


def split_preamble(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The leading system and developer messages, and the rest (this turn's own messages)."""
    index = 0
    while index < len(messages) and messages[index].get("role") in _PREAMBLE_ROLES:
        index += 1
    return messages[:index], messages[index:]


@dataclass(frozen=True)
class Turn:
    messages: list[dict[str, Any]]
    tokens: int

    def encode(self) -> bytes:
        return orjson.dumps({"messages": self.messages, "tokens": self.tokens})

    @classmethod
    def decode(cls, raw: bytes) -> Turn | None:
        try:
            data = orjson.loads(raw)
            return cls(list(data["messages"]), int(data["tokens"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def fit(turns: list[Turn], max_tokens: int) -> list[Turn]:
    """The newest turns whose tokens add up to at most max_tokens, oldest first."""
    kept: list[Turn] = []
    total = 0
    for turn in reversed(turns):
        if total + turn.tokens > max_tokens:
            break
        kept.append(turn)
        total += turn.tokens
    kept.reverse()
    return kept


@dataclass
class Session:
    """One request's view of its session: the history prepended, and this turn's own messages."""

    id: str
    key: str
    history: list[Turn]
    own: list[dict[str, Any]]  # this request's messages after its preamble: stored with the answer
    answer: list[str] = field(default_factory=list)  # streams: the answer's text as relayed
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # streams: its tool calls, by index

    def compose(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The upstream's messages: the request's preamble, the history, the request's own messages."""
        preamble, own = split_preamble(messages)
        self.own = own
        return [*preamble, *(message for turn in self.history for message in turn.messages), *own]

    def collect(self, chunk: dict[str, Any]) -> None:
        """A streamed chunk on its way to the client: mark it with the session, keep its text."""
        chunk[FIELD] = self.id
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str):
                self.answer.append(text)
            for call in delta.get("tool_calls") or ():
                self._tool_call(call)

    def _tool_call(self, piece: dict[str, Any]) -> None:
        """A streamed tool call comes in pieces: its id and name first, its arguments in parts."""
        call = self.tool_calls.setdefault(piece.get("index", 0), {"id": "", "type": "function",
                                                                  "function": {"name": "", "arguments": ""}})
        call["id"] = piece.get("id") or call["id"]
        function = piece.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def streamed_answer(self) -> dict[str, Any]:
        """The relayed answer as an assistant message: its text, and its tool calls if it made any."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.answer)}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
            message["content"] = message["content"] or None
        return message

    def turn(self, answer: dict[str, Any]) -> Turn:
        messages = [*self.own, answer]
        return Turn(messages, estimate_tokens(messages))


def answer_message(completion: dict[str, Any]) -> dict[str, Any] | None:
    """The assistant message of a plain answer, as a request may carry it."""
    choices = completion.get("choices") or ()
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return None
    kept = {key: message[key] for key in _ASSISTANT_KEYS if message.get(key) is not None}
    kept["role"] = "assistant"
    return kept


def opened(session_id: str, key: str, stored: list[bytes], max_tokens: int) -> Session:
    """A session from its stored turns (as read by limits.admit_call): the newest that fit max_tokens."""
    turns = [turn for turn in map(Turn.decode, stored) if turn is not None]
    return Session(session_id, key, fit(turns, max_tokens), [])


async def save(redis: Redis, session: Session, answer: dict[str, Any], ttl_s: int, max_tokens: int) -> None:
    """Append this turn; keep only the turns the next request can use (at least this one)."""
    turn = session.turn(answer)
    keep = len(fit([*session.history, turn], max_tokens)) or 1
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(session.key, turn.encode())
        pipe.ltrim(session.key, -keep, -1)
        pipe.expire(session.key, ttl_s)
        await pipe.execute()
