"""Clients that went away: heard on the cancel channel, remembered for a while, checked when a
request is picked up, so work queued for a client that already left is never started.

The gateway announces a cancel twice, in one round trip: a key with a TTL (draftgate:cancelled:<id>)
and a message on the channel. Every router hears the message; one working on the request stops
it, the others remember it. At pick-up a router asks Redis for the key only when it might have
missed the message: for entries older than its current subscription (it started, or its
subscription dropped, after they were queued) and for entries taken over from a dead router.
Requests read fresh from the stream while subscribed cost no round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from shared.keys import CANCEL_CHANNEL, cancelled
from shared.messages import Cancel, WireError, decode

log = structlog.get_logger(__name__)

MAX_REMEMBERED = 100_000
LISTEN_TIMEOUT_S = 1.0


def entry_ms(entry_id: bytes) -> int:
    """When Redis added a stream entry (auto ids are `<unix ms>-<seq>`), in Redis's clock."""
    return int(entry_id.split(b"-", 1)[0])


@dataclass
class CancelListener:
    redis: Redis
    on_cancel: Callable[[str], bool]  # stops the request if it runs here; False: not here
    ttl_s: float  # how long a cancel is worth remembering: the gateway's request timeout
    subscribed_at_ms: int | None = None  # Redis time once the current subscription was confirmed
    _pubsub: PubSub | None = None
    _recent: dict[str, float] = field(default_factory=dict)  # request id -> forget at (monotonic)

    async def step(self) -> None:
        """One turn of the listening loop (run it supervised)."""
        try:
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
                await self._pubsub.subscribe(CANCEL_CHANNEL)
                # redis-py reconnects and resubscribes by itself; until the new subscription is
                # confirmed, cancels may have been missed.
                self._pubsub.connection.register_connect_callback(self._reconnected)
            message = await self._pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
        except BaseException:
            self.subscribed_at_ms = None
            raise
        if message is None:
            return
        if message["type"] == "subscribe":
            seconds, micros = await self.redis.time()
            self.subscribed_at_ms = seconds * 1000 + micros // 1000
        elif message["type"] == "message":
            self._heard(message["data"])

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    def covers(self, entry_id: bytes) -> bool:
        """True if every cancel for this entry must have reached this listener: the entry was
        queued after the current subscription began."""
        return self.subscribed_at_ms is not None and entry_ms(entry_id) > self.subscribed_at_ms

    def heard(self, request_id: str) -> bool:
        return request_id in self._recent

    async def recorded(self, request_ids: Iterable[str]) -> set[str]:
        """Which of these requests the gateway recorded as cancelled (one round trip)."""
        ids = list(request_ids)
        if not ids:
            return set()
        found = await self.redis.mget([cancelled(request_id) for request_id in ids])
        return {request_id for request_id, value in zip(ids, found, strict=True) if value is not None}

    def _reconnected(self, _connection: object) -> None:
        self.subscribed_at_ms = None

    def _heard(self, raw: bytes) -> None:
        try:
            request_id = decode(Cancel, raw).request_id
        except WireError as exc:
            log.warning("bad cancel message", error=str(exc))
            return
        if not self.on_cancel(request_id):
            self._remember(request_id)

    def _remember(self, request_id: str) -> None:
        now = time.monotonic()
        recent = self._recent
        recent.pop(request_id, None)
        recent[request_id] = now + self.ttl_s
        # Insertion order is expiry order (one TTL for all): forget from the front.
        while recent:
            oldest, forget_at = next(iter(recent.items()))
            if forget_at > now and len(recent) <= MAX_REMEMBERED:
                break
            del recent[oldest]
