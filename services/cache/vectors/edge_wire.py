"""Pure: the frames between the cache service and its Edge worker process.

A frame is a 4-byte big-endian length and a msgpack body. A request is [op, *args]; a reply is
[True, result] or [False, "what went wrong"], in request order. Vectors travel as float32 bytes:
less than half the size of msgpack doubles, and packed without a loop in Python.
"""

from __future__ import annotations

import struct
from array import array
from typing import IO, Any

import msgpack

from services.cache.vectors.base import Hit, Point, Scope

HEADER = struct.Struct(">I")


def frame(message: Any) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def unframe(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def read_frame(stream: IO[bytes]) -> Any | None:
    """The next message on a blocking stream; None at its end."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return unframe(body)


def pack_vector(vector: list[float]) -> bytes:
    return array("f", vector).tobytes()


def unpack_vector(data: bytes) -> list[float]:
    values = array("f")
    values.frombytes(data)
    return values.tolist()


def pack_scope(scope: Scope) -> list[Any]:
    return [scope.tenant, scope.partition, scope.live_at, scope.expired_at]


def unpack_scope(data: list[Any]) -> Scope:
    return Scope(*data)


def pack_points(points: list[Point]) -> list[Any]:
    return [[p.id, pack_vector(p.vector), p.payload] for p in points]


def unpack_points(data: list[Any]) -> list[Point]:
    return [Point(id_, unpack_vector(vector), payload) for id_, vector, payload in data]


def pack_hits(hits: list[Hit]) -> list[Any]:
    return [[h.payload, h.score] for h in hits]


def unpack_hits(data: list[Any]) -> list[Hit]:
    return [Hit(payload, score) for payload, score in data]
