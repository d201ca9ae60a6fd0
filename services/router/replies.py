"""Writes one request's replies to its gateway's stream, numbered so the gateway can dedupe."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis

from shared import bus
from shared.messages import Reply, ReplyBatch, ReplyKind, encode

log = structlog.get_logger(__name__)


# After a Redis restart a live gateway recreates its reply stream within one reader turn; a
# stream missing for longer means its gateway is gone.
STREAM_WAIT_S = 5.0


class ReplyOverflow(Exception):
    """The gateway's reply stream holds more unread replies than bus.reply_stream_maxlen: it is
    not keeping up, and trimming would drop answers, so this request stops instead."""


@dataclass
class ReplyWriter:
    redis: Redis
    stream: str
    request_id: str
    maxlen: int  # unread replies the stream may hold before streaming stops with an error
    ttl_s: int
    ack: bus.Ack | None = None  # the request entry, acknowledged with the last reply
    acked: bool = False
    seq: int = 0

    def head(self, decision: str, entropy: float | None, speculation: str, tier: str,
             reason: str | None = None, cost_usd: float | None = None, risk: float | None = None) -> bytes:
        return self._reply(ReplyKind.HEAD, decision=decision, draft_entropy=entropy, speculation=speculation,
                           tier=tier, reason=reason, cost_usd=cost_usd, draft_risk=risk)

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return self._reply(ReplyKind.CHUNK, data=chunk)

    def completion(self, completion: dict[str, Any]) -> bytes:
        return self._reply(ReplyKind.COMPLETION, data=completion)

    def error(self, status: int, body: dict[str, Any]) -> bytes:
        return self._reply(ReplyKind.ERROR, status=status, data=body)

    async def send(self, *payloads: bytes) -> None:
        """Raises ReplyOverflow once the gateway has fallen this far behind; a Redis error if the
        replies could not be written even after redis-py's retries."""
        written = await self._write([_batch(payloads)])
        if written.length > self.maxlen:
            raise ReplyOverflow(f"{written.length} unread replies on {self.stream}")

    async def finish(self, *payloads: bytes, also: Sequence[bus.Publication] = ()) -> None:
        """The last replies and END, the request's ack and any side writes: one round trip,
        because the router's cost per request is mostly round trips."""
        written = await self._write([_batch((*payloads, self._reply(ReplyKind.END)))], ack=self.ack, also=also)
        self.acked = self.ack is not None
        for error in written.failures:
            log.warning("side write not queued", error=str(error))

    async def _write(self, payloads: list[bytes], ack: bus.Ack | None = None,
                     also: Sequence[bus.Publication] = ()) -> bus.Written:
        """bus.reply, waiting (with backoff) for a reply stream that is missing to be recreated by
        its gateway; StreamGone if it is not within STREAM_WAIT_S."""
        delay, waited = 0.05, 0.0
        while True:
            try:
                return await bus.reply(self.redis, self.stream, payloads, self.ttl_s, ack=ack, also=also)
            except bus.StreamGone:
                if waited >= STREAM_WAIT_S:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.25)  # the gateway makes it again within a reader turn: look often

    def _reply(self, kind: ReplyKind, **fields: Any) -> bytes:
        self.seq += 1
        return encode(Reply(request_id=self.request_id, seq=self.seq, kind=kind, **fields))


def _batch(payloads: tuple[bytes, ...]) -> bytes:
    return encode(ReplyBatch(replies=list(payloads)))
