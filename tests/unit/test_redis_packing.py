"""Commands packed by hiredis (shared/redis_client.HiredisPacking) are the bytes redis-py's own asyncio
packer makes, for every kind of argument the services send, and refused where redis-py refuses them."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from shared.config import RedisConfig
from shared.redis_client import PackedConnection, connect

ARGUMENT = st.one_of(st.text(), st.binary(), st.integers(), st.floats(allow_nan=True, allow_infinity=True))


def ours(*args: object) -> bytes:
    return b"".join(PackedConnection().pack_command(*args))


def redis_pys(*args: object) -> bytes:
    return b"".join(Connection().pack_command(*args))


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@given(st.sampled_from(["XADD", "EVALSHA", b"SET"]), st.lists(ARGUMENT, max_size=40))
def test_the_same_bytes_as_redis_py(name: str | bytes, args: list[object]) -> None:
    assert ours(name, *args) == redis_pys(name, *args)


@pytest.mark.parametrize("args", [
    ("SCRIPT LOAD", "return 1"),  # a command named in two words goes as two arguments
    (b"CONFIG GET", "maxmemory"),
    ("SET", "k", bytearray(b"\x00\xff")),
    ("SET", "k", memoryview(b"abc")),
    ("SET", "k", Colour.RED),
    ("SET", "k", Level.HIGH),  # hiredis refuses an IntEnum: redis-py's encoder writes it as it does
    ("SET", "k", "é" * 10_000),  # past redis-py's buffer cut-off: it sends pieces, we one buffer
])
def test_the_same_bytes_for_what_hiredis_does_not_take_as_it_is(args: tuple[object, ...]) -> None:
    assert ours(*args) == redis_pys(*args)


@pytest.mark.parametrize("value", [True, None, 1j, [1]])
def test_what_redis_py_refuses_is_refused(value: object) -> None:
    with pytest.raises(DataError):
        redis_pys("SET", "k", value)
    with pytest.raises(DataError):
        ours("SET", "k", value)


@pytest.mark.parametrize(("url", "base"), [("redis://127.0.0.1:6379/0", Connection),
                                            ("rediss://127.0.0.1:6380/0", SSLConnection),
                                            ("unix:///tmp/redis.sock?db=0", UnixDomainSocketConnection)])
def test_every_url_scheme_keeps_its_connection_kind(url: str, base: type) -> None:
    connection_class = connect(RedisConfig(url=url)).connection_pool.connection_class
    assert issubclass(connection_class, base)
    assert connection_class is not base
