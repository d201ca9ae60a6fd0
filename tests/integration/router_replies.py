"""Asking the routers directly over Redis, as a gateway does: publish a ChatRequest on the request
stream and read every reply of it back from a reply stream of our own (what the account, the
degraded flag and the errors look like on the wire, before any gateway reads them)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from shared.keys import MESSAGE_FIELD, REQUEST_STREAM
from shared.messages import Account, ChatRequest, Reply, ReplyBatch, ReplyKind, decode, encode


@dataclass
class Answer:
    replies: list[Reply]

    @property
    def head(self) -> Reply:
        return next(r for r in self.replies if r.kind in (ReplyKind.HEAD, ReplyKind.ERROR))

    @property
    def last(self) -> Reply:
        """The reply the account travels on: the COMPLETION of a plain answer, else the END or the ERROR."""
        kinds = [r.kind for r in self.replies]
        if ReplyKind.ERROR in kinds:
            return self.replies[kinds.index(ReplyKind.ERROR)]
        if ReplyKind.COMPLETION in kinds:
            return self.replies[kinds.index(ReplyKind.COMPLETION)]
        return self.replies[kinds.index(ReplyKind.END)]

    @property
    def account(self) -> Account:
        data = self.last.account
        assert data is not None, f"no account on the {self.last.kind} reply"
        return Account.from_wire(data)

    @property
    def usage(self) -> dict[str, Any]:
        for reply in reversed(self.replies):
            if reply.data and reply.data.get("usage"):
                return reply.data["usage"]
        raise AssertionError("no usage in the answer")

    @property
    def text(self) -> str:
        parts = []
        for reply in self.replies:
            if reply.kind == ReplyKind.COMPLETION and reply.data:
                parts.append(reply.data["choices"][0]["message"]["content"] or "")
            elif reply.kind == ReplyKind.CHUNK and reply.data:
                for choice in reply.data.get("choices") or ():
                    parts.append((choice.get("delta") or {}).get("content") or "")
        return "".join(parts)


def ask_router(redis_url: str, body: dict[str, Any], tier: str = "auto", deployment: str = "",
               timeout_s: float = 60.0) -> Answer:
    """One request through the routers on `redis_url`; every reply up to the END (or an ERROR)."""
    client = redis.Redis.from_url(redis_url)
    stream = f"test:replies:{uuid.uuid4().hex}"
    client.xadd(stream, {MESSAGE_FIELD: b""})  # as a gateway's reader makes it: routers never create it
    request = ChatRequest(request_id=f"req_{uuid.uuid4().hex}", reply_to=stream, body=body, tier=tier,
                          deadline=time.time() + timeout_s, deployment=deployment, cache_store=False)
    client.xadd(REQUEST_STREAM, {MESSAGE_FIELD: encode(request)})
    replies: list[Reply] = []
    last_id = "0-0"
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, f"no END after {[r.kind for r in replies]}"
        for entry_id, fields in client.xrange(stream, f"({last_id}" if last_id != "0-0" else "-"):
            last_id = entry_id.decode()
            raw = fields.get(MESSAGE_FIELD)
            if not raw:
                continue
            replies.extend(decode(Reply, item) for item in decode(ReplyBatch, raw).replies)
        if any(r.kind in (ReplyKind.END, ReplyKind.ERROR) for r in replies):
            replies.sort(key=lambda r: r.seq)
            client.delete(stream)
            return Answer(replies)
        time.sleep(0.02)
