"""A session's turns, as the gateway reads them and whoever answers stores them (the router, in the
round trip of the answer's last replies; the gateway for an answer from the cache). Pure: a save is
`save_commands`, the Redis commands for the caller to send.

- Stored per turn, as one list entry: the request's own messages (after its leading system and
  developer messages, which are the request's preamble and are never stored) and the answer.
- The history prepended to the next request is the newest stored turns whose estimated tokens fit
  gateway.session_max_tokens; older turns are dropped first (and trimmed from Redis as turns are saved).
- Tokens are estimated as OpenAI's rule of thumb has it: about 4 characters a token, plus 4 tokens
  per message for its role and framing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.messages import ChatRequest
from shared.redis_client import Command

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
MAX_STORED_TURNS = 1000  # read at most this many turns back, whatever their size
# What an answer's message keeps when stored as the next request's history (a request's assistant message).
_ASSISTANT_KEYS = ("role", "content", "refusal", "tool_calls", "function_call")
_PREAMBLE_ROLES = frozenset({"system", "developer"})


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


@dataclass(slots=True)
class Turn:
    """One stored turn. Not frozen: a router builds a request's turns on every request of a session, and a
    frozen dataclass's __init__ cost twice a plain one's."""

    messages: list[dict[str, Any]]
    tokens: int

    @classmethod
    def of(cls, messages: list[dict[str, Any]]) -> Turn:
        return cls(messages, estimate_tokens(messages))

    def encode(self) -> bytes:
        return orjson.dumps({"messages": self.messages, "tokens": self.tokens})

    @classmethod
    def decode(cls, raw: bytes | str) -> Turn | None:
        """None for an entry that is no turn (another writer's): not JSON, no list of messages, no tokens."""
        try:
            data = orjson.loads(raw)
            messages, tokens = data["messages"], int(data["tokens"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return cls(messages, tokens) if isinstance(messages, list) else None


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


def split_preamble(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The leading system and developer messages, and the rest (this turn's own messages)."""
    index = 0
    while index < len(messages) and messages[index].get("role") in _PREAMBLE_ROLES:
        index += 1
    return messages[:index], messages[index:]


def compose(messages: list[dict[str, Any]], history: list[Turn]) -> tuple[list[dict[str, Any]], int]:
    """The upstream's messages: the request's preamble, the history, the request's own messages; and the
    index of the first of its own."""
    preamble, own = split_preamble(messages)
    earlier = [message for turn in history for message in turn.messages]
    return [*preamble, *earlier, *own], len(preamble) + len(earlier)


def with_history(request: ChatRequest) -> ChatRequest:
    """A request published with its session's stored turns (ChatRequest.history, put there by the key
    script that read them): its body with the newest turns that fit prepended, and its session's save
    counting them, as the gateway composes a request whose turns it read itself. Any other request as it is."""
    if request.history is None:
        return request
    try:
        saving = SessionSave.from_wire(request.session or {})
    except ValueError:  # no session to fit the turns to: the request as it was sent (the router logs it)
        return request.composed(request.body, request.session)
    stored = (Turn.decode(raw) for raw in request.history if isinstance(raw, str | bytes))
    history = fit([turn for turn in stored if turn is not None], saving.max_tokens)
    messages, own_from = compose(request.body.get("messages") or [], history)
    saving = SessionSave(saving.key, own_from, tuple(turn.tokens for turn in history), saving.max_tokens,
                         saving.ttl_s, stored=len(request.history))
    return request.composed({**request.body, "messages": messages}, saving.to_wire())


def answer_message(completion: dict[str, Any]) -> dict[str, Any] | None:
    """The assistant message of a plain answer, as a request may carry it."""
    choices = completion.get("choices") or ()
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return None
    kept = {key: message[key] for key in _ASSISTANT_KEYS if message.get(key) is not None}
    kept["role"] = "assistant"
    return kept


@dataclass
class StreamedAnswer:
    """A streamed answer's first choice, put back together from its chunks: its text and tool calls."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # by index

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str):
                self.text.append(text)
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

    def message(self) -> dict[str, Any]:
        """The answer as an assistant message: its text, and its tool calls if it made any."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
            message["content"] = message["content"] or None
        return message


@dataclass(frozen=True)
class SessionSave:
    """What the answerer needs to store a request's turn (ChatRequest.session, as to_wire() makes it):
    the session's Redis list, where the request's own messages start in its body, the tokens of the
    history it was sent with, the session's limits, and how many turns the list held when read."""

    key: str
    own_from: int  # index in body["messages"] of the first of the request's own messages
    history_tokens: tuple[int, ...]
    max_tokens: int
    ttl_s: int
    # Turns in the list when it was read (the history is the newest of them that fit); -1: not known (a
    # sender from before this field), and the save always trims.
    stored: int = -1

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "own_from": self.own_from, "history_tokens": list(self.history_tokens),
                "max_tokens": self.max_tokens, "ttl_s": self.ttl_s, "stored": self.stored}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SessionSave:
        """Raises ValueError for a map that is not one."""
        try:
            return cls(str(data["key"]), int(data["own_from"]), tuple(int(t) for t in data["history_tokens"]),
                       int(data["max_tokens"]), int(data["ttl_s"]), int(data.get("stored", -1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a session save: {exc!r}") from None

    def turn(self, messages: list[dict[str, Any]], answer: dict[str, Any]) -> Turn:
        """This turn: the request's own messages (from the body it was answered for) and the answer."""
        return Turn.of([*messages[self.own_from:], answer])

    def keep(self, turn: Turn) -> int:
        """How many stored turns to keep after this one: those the next request can use (at least this one)."""
        kept, total = 1, turn.tokens
        for tokens in reversed(self.history_tokens):
            if total + tokens > self.max_tokens:
                break
            kept, total = kept + 1, total + tokens
        return kept if turn.tokens <= self.max_tokens else 1

    def save_commands(self, turn: Turn) -> list[Command]:
        """Append the turn and trim the list to what the next request can use: no LTRIM when that is
        every turn it held and this one (a turn stored meanwhile by a concurrent request of the session
        stays until the next save that trims, and the next read's fit() leaves out what does not fit)."""
        keep = self.keep(turn)
        trim: list[Command] = [] if keep == self.stored + 1 else [("LTRIM", self.key, -keep, -1)]
        return [("RPUSH", self.key, turn.encode()), *trim, ("EXPIRE", self.key, self.ttl_s)]


@dataclass(frozen=True)
class TurnSave:
    """A turn's save as a side write of the answer's last replies (shared/bus.SideWrite)."""

    saving: SessionSave
    turn: Turn

    def commands(self) -> list[Command]:
        return self.saving.save_commands(self.turn)
