"""Wire messages: explicit msgpack round trips, tolerant of new fields, strict on missing ones."""

from __future__ import annotations

import msgpack
import pytest

from shared.messages import (
    WIRE_VERSION,
    CacheWrite,
    Cancel,
    ChatRequest,
    Reply,
    ReplyBatch,
    ReplyKind,
    WireError,
    decode,
    encode,
)


@pytest.mark.parametrize("message", [
    ChatRequest(request_id="r", reply_to="s", body={"messages": [{"role": "user", "content": "hi"}]},
                tier="auto", deadline=1.5, tenant="t", cache_store=False),
    Reply(request_id="r", seq=3, kind=ReplyKind.CHUNK, data={"choices": []}),
    Reply(request_id="r", seq=1, kind=ReplyKind.HEAD, decision="accept", draft_entropy=0.25, speculation="none"),
    ReplyBatch(replies=[encode(Reply(request_id="r", seq=1, kind=ReplyKind.END))]),
    CacheWrite(request_id="r", body={"a": 1}, completion={"b": 2}, tenant="t", created=2.0),
    Cancel(request_id="r"),
])
def test_round_trip(message: object) -> None:
    assert decode(type(message), encode(message)) == message


def test_unknown_fields_are_ignored() -> None:
    raw = msgpack.packb({"v": WIRE_VERSION, "type": "cancel", "request_id": "r", "added_later": True})
    assert decode(Cancel, raw) == Cancel(request_id="r")


def test_missing_required_field_is_a_clear_error() -> None:
    raw = msgpack.packb({"v": WIRE_VERSION, "type": "reply", "request_id": "r", "kind": "end"})
    with pytest.raises(WireError, match="missing required field 'seq'"):
        decode(Reply, raw)


@pytest.mark.parametrize(("raw", "message"), [
    (b"\xc1", "not a msgpack payload"),
    (msgpack.packb([1, 2]), "not a map"),
    (msgpack.packb({"v": WIRE_VERSION, "type": "reply", "request_id": "r"}), "expected a cancel message"),
    (msgpack.packb({"v": 99, "type": "cancel", "request_id": "r"}), "unsupported wire version 99"),
])
def test_bad_payloads_raise_wire_error(raw: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode(Cancel, raw)


def test_a_history_entry_that_is_not_utf8_decodes_and_text_elsewhere_that_is_not_refuses_the_request() -> None:
    """The key script splices a session's stored entries into the request as msgpack text, whatever their
    bytes (shared/sessions.with_history skips an entry that is no turn); any other field must be UTF-8."""
    published = encode(ChatRequest(request_id="req-1", reply_to="replies:g", body={"messages": []}))
    assert published[-1:] == b"\xc0"  # the history's place, as the script finds it
    turn = '{"messages":[],"tokens":1}'
    spliced = published[:-1] + b"\x92" + b"\xa2\xff\xfe" + msgpack.packb(turn)
    assert decode(ChatRequest, spliced).history == ["\udcff\udcfe", turn]
    with pytest.raises(WireError, match="not a msgpack payload"):
        decode(ChatRequest, spliced.replace(b"req-1", b"req\xff1", 1))
    with pytest.raises(WireError, match="not a msgpack payload"):  # other messages: strict everywhere
        decode(Cancel, encode(Cancel(request_id="req-1")).replace(b"req-1", b"req\xff1", 1))
