"""shared/bus.py's reading of XREAD replies as the server sends them (read_own takes them unparsed):
RESP3's map (redis-py's default protocol) and RESP2's list of pairs give the same entries."""

from __future__ import annotations

from shared.bus import _raw_entries
from shared.keys import MESSAGE_FIELD

ENTRIES = [[b"1-0", [MESSAGE_FIELD, b"first"]], [b"2-0", [b"other", b"x", MESSAGE_FIELD, b"second"]],
           [b"3-0", [b"other", b"no message"]], [b"4-0", []]]


def test_resp3_and_resp2_replies_give_the_same_entries() -> None:
    expected = [(b"1-0", b"first"), (b"2-0", b"second")]
    assert _raw_entries({b"replies:g": ENTRIES}) == expected
    assert _raw_entries([[b"replies:g", ENTRIES]]) == expected


def test_no_reply_is_no_entries() -> None:
    assert _raw_entries(None) == []
    assert _raw_entries({}) == []
