"""What a router remembers of clients that left, and when it must ask Redis instead."""

from __future__ import annotations

from typing import Any

import pytest

from services.router import cancels
from services.router.cancels import CancelListener, entry_ms
from shared.messages import Cancel, encode


def listener(on_cancel: Any = lambda request_id: False, ttl_s: float = 60.0) -> CancelListener:
    return CancelListener(redis=None, on_cancel=on_cancel, ttl_s=ttl_s)  # type: ignore[arg-type]


def test_an_entry_id_says_when_redis_added_it() -> None:
    assert entry_ms(b"1700000000123-4") == 1_700_000_000_123


def test_only_entries_queued_after_the_subscription_are_covered_by_it() -> None:
    heard = listener()
    assert not heard.covers(b"1700000000500-0"), "not subscribed: nothing is covered"
    heard.subscribed_at_ms = 1_700_000_000_000
    assert heard.covers(b"1700000000001-0")
    assert not heard.covers(b"1700000000000-3"), "the same millisecond may be before it"
    assert not heard.covers(b"1699999999999-0")
    heard._reconnected(object())
    assert not heard.covers(b"1700000000001-0"), "after a reconnect cancels may have been missed"


def test_a_cancel_for_a_request_running_here_stops_it_and_is_not_remembered() -> None:
    running = {"here"}
    stopped: list[str] = []
    heard = listener(lambda request_id: request_id in running and not stopped.append(request_id))
    heard._heard(encode(Cancel(request_id="here")))
    heard._heard(encode(Cancel(request_id="queued")))
    heard._heard(b"not msgpack")
    assert stopped == ["here"]
    assert heard.heard("queued") and not heard.heard("here")


def test_cancels_are_forgotten_after_their_ttl_and_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(cancels.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(cancels, "MAX_REMEMBERED", 3)
    heard = listener(ttl_s=10)
    for request_id in ("a", "b", "c"):
        heard._remember(request_id)
    heard._remember("d")
    assert not heard.heard("a") and heard.heard("d"), "past the bound the oldest goes"
    now[0] = 105.0
    heard._remember("b")  # heard again: kept from now on
    now[0] = 111.0
    heard._remember("e")
    assert [r for r in "abcde" if heard.heard(r)] == ["b", "e"]
