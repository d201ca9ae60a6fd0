"""Redis-stream helpers: publish, reply, read, ack, reclaim, and the one consumer loop that
every consumer group (routers, cache writers) runs.

Payloads are opaque bytes under one field (keys.MESSAGE_FIELD); shared.messages
encodes and decodes them. Works on Redis 6.2 and 7.x.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shared.keys import MESSAGE_FIELD
from shared.redis_client import Command, pipelined

log = structlog.get_logger(__name__)

Entry = tuple[bytes, bytes]  # (stream entry id, payload)

# Handing entries back sets their idle time this high, so any live consumer's next reclaim pass
# takes them over at once instead of after reclaim_idle_ms.
HAND_BACK_IDLE_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Ack:
    """The group entry a reply answers: acknowledged in the same round trip as the last reply."""

    stream: str
    group: str
    entry_id: bytes


class SideWrite(Protocol):
    """A best-effort write that rides along with the replies: its commands, sent in their round trip."""

    def commands(self) -> list[Command]: ...


@dataclass(frozen=True)
class Publication:
    """A best-effort append to another stream that rides along with the replies."""

    stream: str
    payload: bytes
    maxlen: int

    def commands(self) -> list[Command]:
        return [("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*", MESSAGE_FIELD, self.payload)]


@dataclass(frozen=True)
class Written:
    """What a reply round trip did: side writes that failed, and the reply stream's length after it."""

    failures: list[RedisError]
    length: int
    sides: list[RedisError | None] = field(default_factory=list)  # each side write's first error, in order


class StreamGone(Exception):
    """A reply stream no longer exists: its reader is gone, or Redis restarted and the reader has
    not recreated it yet. Only a stream's reader creates it, so the reader can tell it was lost.
    `written`: what the same round trip's ack and side writes did (they ran: a pipeline is no
    transaction), so a retry of the replies does not make them again."""

    def __init__(self, stream: str, written: Written | None = None) -> None:
        super().__init__(stream)
        self.written = written


def is_nogroup(exc: BaseException) -> bool:
    """The stream or its group is gone: Redis restarted empty or was flushed."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it already exists. From id 0, so entries
    added after a restart but before the group came back are still read."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish(redis: Redis, stream: str, payload: bytes, maxlen: int) -> bytes:
    """Append to a stream (approximate MAXLEN); the entry's id."""
    (entry_id,) = await pipelined(redis, Publication(stream, payload, maxlen).commands(), raise_on_error=True)
    return entry_id


async def reply(redis: Redis, stream: str, payloads: Sequence[bytes], ttl_s: int,
                ack: Ack | None = None, also: Sequence[SideWrite] = ()) -> Written:
    """Append replies to a gateway's stream and push back its expiry, in one round trip; with
    `ack`, acknowledge the request they finish, and append `also` to their streams, in it too.

    Reply streams are never trimmed here: their reader trims what it has read, so a lagging
    gateway loses nothing; the length returned lets the writer notice one that stopped reading.
    Nor are they created here (StreamGone if missing). Raises if a reply or the ack was not
    written. `also` is best effort: its failures are returned, not raised, so a side write never
    costs the client its answer. A gateway that died stops reading and refreshing its stream,
    which then expires ttl_s after its last read.
    """
    commands: list[Command] = [("XADD", stream, "NOMKSTREAM", "*", MESSAGE_FIELD, payload) for payload in payloads]
    commands += [("EXPIRE", stream, ttl_s), ("XLEN", stream)]
    if ack is not None:
        commands.append(("XACK", ack.stream, ack.group, ack.entry_id))
    required = len(commands)
    side_commands = [side.commands() for side in also]
    for queued in side_commands:
        commands += queued
    results = await pipelined(redis, commands)
    for result in results[:required]:
        if isinstance(result, Exception):
            raise result
    sides, start = [], required
    for queued in side_commands:
        sides.append(next((r for r in results[start:start + len(queued)] if isinstance(r, RedisError)), None))
        start += len(queued)
    written = Written([error for error in sides if error is not None], results[len(payloads) + 1], sides)
    if any(result is None for result in results[:len(payloads)]):
        raise StreamGone(stream, written)
    return written


async def read_group(redis: Redis, stream: str, group: str, consumer: str, count: int,
                     block_ms: int) -> list[Entry]:
    response = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return _entries(response)


async def read_own(redis: Redis, stream: str, last_id: bytes | str, count: int, block_ms: int, ttl_s: int,
                   trim_below: bytes | None = None) -> tuple[bool, list[Entry]]:
    """A reader's turn on its own stream, in one round trip: push back the stream's expiry (False
    if the stream is gone: Redis restarted or was flushed), drop what it already read, read on."""
    commands: list[Command] = [("EXPIRE", stream, ttl_s)]
    if trim_below is not None:
        # Exact, so the stream's length is what is unread (plus the last entry read).
        commands.append(("XTRIM", stream, "MINID", trim_below))
    commands.append(("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", stream, last_id))
    results = await pipelined(redis, commands, raise_on_error=True)
    return bool(results[0]), _raw_entries(results[-1])


async def ack(redis: Redis, stream: str, group: str, *entry_ids: bytes) -> None:
    if entry_ids:
        await redis.xack(stream, group, *entry_ids)


@dataclass(frozen=True)
class Reclaimed:
    cursor: bytes  # where the next pass starts; b"0-0" once the whole pending list was scanned
    entries: list[Entry]
    unnamed: int  # claimed entries whose payload was trimmed away, which Redis 6.2 returns without ids


async def reclaim(redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int,
                  count: int, cursor: bytes | str = b"0-0") -> Reclaimed:
    """Take over entries other consumers left pending for longer than min_idle_ms, scanning the
    pending list from `cursor` (carry the returned one over, or a long list starves its tail).

    XAUTOCLAIM answers [cursor, entries] on Redis 6.2 and [cursor, entries, deleted ids] on 7.x,
    which drops trimmed entries from the pending list itself."""
    response = await redis.xautoclaim(stream, group, consumer, min_idle_ms, cursor, count=count)
    next_cursor, claimed = response[0], response[1]
    entries = [(entry_id, fields[MESSAGE_FIELD]) for entry_id, fields in claimed
               if entry_id is not None and fields and MESSAGE_FIELD in fields]
    unnamed = sum(1 for entry_id, _ in claimed if entry_id is None)
    return Reclaimed(next_cursor, entries, unnamed)


async def keep_claimed(redis: Redis, stream: str, group: str, consumer: str, entry_ids: Sequence[bytes]) -> None:
    """Reset the idle time of entries still being worked on, so no one reclaims them."""
    if not entry_ids:
        return
    try:
        await redis.xclaim(stream, group, consumer, 0, list(entry_ids), justid=True)
    except ResponseError as exc:
        if not is_nogroup(exc):  # the group is gone, and the entries with it: nothing to keep
            raise


async def hand_back(redis: Redis, stream: str, group: str, consumer: str, entry_ids: Sequence[bytes]) -> None:
    """Give entries up without running them: they stay pending, marked idle for long enough that
    the next reclaim pass of any live consumer takes them over."""
    if not entry_ids:
        return
    try:
        await redis.xclaim(stream, group, consumer, 0, list(entry_ids), idle=HAND_BACK_IDLE_MS, justid=True)
    except ResponseError as exc:
        if not is_nogroup(exc):
            raise


def _entries(response: list | dict | None) -> list[Entry]:
    if not response:
        return []
    streams = response.items() if isinstance(response, dict) else response
    return [(entry_id, fields[MESSAGE_FIELD]) for _, entries in streams for entry_id, fields in entries
            if fields and MESSAGE_FIELD in fields]


def _raw_entries(response: dict[bytes, Any] | list[Any] | None) -> list[Entry]:
    """_entries of an XREAD reply as the server sent it: {stream: [[id, [field, value, ...]], ...]} (RESP3,
    redis-py's default protocol), or [[stream, [...]], ...] (RESP2)."""
    if not response:
        return []
    found = []
    for _, entries in response.items() if isinstance(response, dict) else response:
        for entry_id, fields in entries:
            if not fields:
                continue
            for index in range(0, len(fields) - 1, 2):
                if fields[index] == MESSAGE_FIELD:
                    found.append((entry_id, fields[index + 1]))
                    break
    return found


Handler = Callable[[list[Entry], bool], Awaitable[None]]  # (entries, reclaimed from another consumer)


@dataclass
class Consumer:
    """One member of a consumer group. Each `step` (run it supervised: shared.supervise) reads
    new entries and, every reclaim interval, takes over those silent members left pending; both
    go to `handle`, which acks them when done. A vanished group (Redis restarted empty) is
    recreated here, for every group alike.

    `capacity` says how many entries the handler can take now (0: wait for `wake()`);
    `owned` lists the entries it is still working on (never treated as abandoned).
    Once `stopping` is set, entries that arrive are handed back unrun.
    """

    redis: Redis
    stream: str
    group: str
    name: str
    handle: Handler
    reclaim_idle_ms: int
    reclaim_interval_s: float
    capacity: Callable[[], int] | None = None
    owned: Callable[[], Collection[bytes]] = frozenset
    batch: int = 64
    block_ms: int = 1000
    stopping: bool = False
    _cursor: bytes = b"0-0"
    _next_reclaim: float = 0.0
    _group_ready: bool = False
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """The handler has room again."""
        self._room.set()

    async def step(self) -> None:
        try:
            if not self._group_ready:
                await ensure_group(self.redis, self.stream, self.group)
                self._group_ready = True
            await self._turn()
        except ResponseError as exc:
            if not is_nogroup(exc):
                raise
            log.warning("consumer group vanished (Redis restarted or flushed?); recreating it", stream=self.stream,
                        group=self.group)
            self._group_ready = False
            self._cursor = b"0-0"

    async def _turn(self) -> None:
        free = self.batch if self.capacity is None else min(self.capacity(), self.batch)
        if free <= 0:
            self._room.clear()
            # Bounded, so the loop comes round to reclaiming (and to being stopped) while full.
            try:
                async with asyncio.timeout(self.block_ms / 1000):
                    await self._room.wait()
            except TimeoutError:
                pass
            return
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.reclaim_interval_s
            await self._reclaim(free)
            return
        block_ms = max(1, min(self.block_ms, int((self._next_reclaim - now) * 1000)))
        entries = await read_group(self.redis, self.stream, self.group, self.name, free, block_ms)
        await self._take(entries, reclaimed=False)

    async def _reclaim(self, count: int) -> None:
        start, sent = self._cursor, time.monotonic()
        found = await reclaim(self.redis, self.stream, self.group, self.name, self.reclaim_idle_ms, count, start)
        self._cursor = found.cursor
        if found.unnamed:
            await self._drop_unnamed(start, found, sent)
        await self._take(found.entries, reclaimed=True)

    async def _take(self, entries: list[Entry], *, reclaimed: bool) -> None:
        if not entries:
            return
        if self.stopping:
            # Read in the last turn before a stop: not started, so let a live consumer have them now.
            await hand_back(self.redis, self.stream, self.group, self.name, [entry_id for entry_id, _ in entries])
            return
        await self.handle(entries, reclaimed)

    async def _drop_unnamed(self, start: bytes, found: Reclaimed, sent: float) -> None:
        """Redis 6.2 claims pending entries whose payload was trimmed away without naming them: they
        are this consumer's pending entries in the range just scanned that were delivered by that
        very call and did not come back with a payload. Ack them, or they return on every pass."""
        end = b"+" if found.cursor == b"0-0" else found.cursor
        try:
            pending = await self.redis.xpending_range(self.stream, self.group, start, end, count=10_000,
                                                      consumername=self.name)
        except RedisError as exc:
            log.warning("could not list entries lost to trimming", error=repr(exc))
            return
        just_now_ms = (time.monotonic() - sent) * 1000 + 1
        keep = {entry_id for entry_id, _ in found.entries} | set(self.owned())
        lost = [item["message_id"] for item in pending
                if item["time_since_delivered"] <= just_now_ms and item["message_id"] not in keep]
        if lost:
            log.warning("acking pending entries trimmed before anyone ran them", stream=self.stream, count=len(lost))
            await ack(self.redis, self.stream, self.group, *lost)
