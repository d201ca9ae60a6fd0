"""Sessions: the gateway keeps a conversation in Redis and prepends it to the next request.

- A session is named by the client (`session_id` in the body, or the X-Session-Id header) and
  belongs to the key and tenant that used it: its Redis key is made from (key id, tenant, session
  id), so another key naming the same id sees an empty session of its own — it can neither read
  nor extend the first one, and cannot tell that it exists.
- The gateway reads the stored turns in the admission's round trip (limits.admit_call) and composes
  the upstream's messages: the request's preamble, the history, its own messages. The answer's turn is
  stored by the router in the round trip of the answer's last replies, before the gateway can send the
  answer's last byte (ChatRequest.session: shared/sessions.SessionSave); an answer from the cache, by
  the gateway. What a turn keeps and how the history is cut: shared/sessions.py.
- The list expires gateway.session_ttl_s after its last turn.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from services.gateway.auth import KeyLookup, Principal
from shared.chat_request import SESSION_ID_PATTERN
from shared.errors import InvalidRequest
from shared.keys import SESSION_PREFIX
from shared.sessions import SessionSave, Turn, compose, fit

HEADER = "X-Session-Id"
FIELD = "session_id"  # in the request body, and in the answer (every chunk of a stream)
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


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
    return f"{SESSION_PREFIX}{_owner(key_id, tenant)}:{session_id}"


@functools.lru_cache(maxsize=4096)  # the callers a gateway sees again and again: one hash each
def _owner(key_id: str, tenant: str) -> str:
    return hashlib.sha256(f"{key_id}\x00{tenant}".encode()).hexdigest()[:24]


def caller_session_key(found: Principal | KeyLookup, session_id: str) -> str:
    """The session's key as known before the caller is admitted, so its read can go in the admission's
    round trip: a static key or an anonymous caller by its key and tenant; a token Redis must judge by
    the key id its hash names (a virtual key's tenant is the key's own) and the X-Tenant-ID it sent."""
    if isinstance(found, Principal):
        return session_key(found.key_id, found.tenant, session_id)
    return session_key(found.key_id, f":{found.sub_tenant}", session_id)


@dataclass
class Session:
    """One request's view of its session: the history prepended, and where the request's own messages start."""

    id: str
    key: str
    history: list[Turn]
    own_from: int = 0  # set by compose(): the index of the request's own first message in the upstream's messages
    stored: int = -1  # the turns read (the history is those that fit); -1: not read here (the router reads them)

    def compose(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The upstream's messages: the request's preamble, the history, the request's own messages."""
        composed, self.own_from = compose(messages, self.history)
        return composed

    def mark(self, chunk: dict[str, Any]) -> None:
        """A streamed chunk on its way to the client names its session."""
        chunk[FIELD] = self.id

    def saving(self, max_tokens: int, ttl_s: int) -> SessionSave:
        """How the answerer stores this turn (ChatRequest.session)."""
        return SessionSave(self.key, self.own_from, tuple(turn.tokens for turn in self.history), max_tokens, ttl_s,
                           self.stored)


def opened(session_id: str, key: str, stored: list[bytes] | None, max_tokens: int) -> Session:
    """A session from its stored turns (as read by limits.admit_call): the newest that fit max_tokens;
    None: not read here (the admission publishes the request with them, for the router to prepend)."""
    if stored is None:
        return Session(session_id, key, [])
    turns = [turn for turn in map(Turn.decode, stored) if turn is not None]
    return Session(session_id, key, fit(turns, max_tokens), stored=len(stored))


async def save(redis: Redis, session: Session, messages: list[dict[str, Any]], answer: dict[str, Any], ttl_s: int,
               max_tokens: int) -> None:
    """Store an answer the gateway made itself (from the cache): the turn of `messages` (the upstream's,
    as compose() made them) and `answer`, the list trimmed to what the next request can use."""
    saving = session.saving(max_tokens, ttl_s)
    async with redis.pipeline(transaction=True) as pipe:
        for command in saving.save_commands(saving.turn(messages, answer)):
            pipe.execute_command(*command)
        await pipe.execute()
