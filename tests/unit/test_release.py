"""What a progressive stream may show: after the early-exit region, calm, behind the hold-back,
at a word boundary; finish, usage and tool-call chunks only at the end."""

from __future__ import annotations

from typing import Any

from services.router.release import Release
from services.router.seam import delta_text


def token(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def feed(release: Release, texts: list[str], calm: bool = True) -> list[list[str]]:
    """Add one-token chunks and return what each addition released."""
    shown = []
    for i, text in enumerate(texts, start=len(release.chunks) + 1):
        release.add(token(text), 1)
        shown.append([delta_text(c) for c in release.ready(i, calm)])
    return shown


def test_nothing_is_shown_inside_the_early_exit_region() -> None:
    release = Release(early_exit_tokens=5, holdback_tokens=2)
    assert feed(release, [f" w{i}" for i in range(4)]) == [[], [], [], []]
    assert release.shown_tokens == 0 and release.shown_text == ""


def test_after_it_everything_but_the_hold_back_goes_out_token_by_token() -> None:
    release = Release(early_exit_tokens=5, holdback_tokens=2)
    shown = feed(release, [f" w{i}" for i in range(8)])
    assert shown[4] == [" w0", " w1", " w2"]  # 5 judged, 2 held back
    assert shown[5:] == [[" w3"], [" w4"], [" w5"]]
    assert release.shown_tokens == 6 and release.shown_text == " w0 w1 w2 w3 w4 w5"
    assert release.next_text == " w6"


def test_an_elevated_token_holds_everything_until_calm_returns() -> None:
    release = Release(early_exit_tokens=2, holdback_tokens=1)
    feed(release, [" a", " b"])
    assert feed(release, [" c", " d"], calm=False) == [[], []]
    assert feed(release, [" e"]) == [[" b", " c", " d"]]


def test_the_shown_text_never_ends_inside_a_word() -> None:
    release = Release(early_exit_tokens=1, holdback_tokens=0)
    shown = feed(release, [" The", " capit", "al", " city", " is"])
    assert shown == [[], [" The"], [], [" capit", "al"], [" city"]]


def test_hold_back_zero_still_keeps_the_last_word_and_the_finish_for_the_end() -> None:
    """Without a next word it is unknown whether the last one is whole: it goes out with the end."""
    release = Release(early_exit_tokens=1, holdback_tokens=0)
    assert feed(release, [" a", " b"]) == [[], [" a"]]
    release.add(token("", finish="stop"), 0)
    release.add({"choices": [], "usage": {"completion_tokens": 2}}, 0)
    assert release.ready(2, True) == []
    rest = release.rest()
    assert [delta_text(c) for c in rest] == [" b", "", ""]
    assert rest[-1].get("usage") is not None and rest[-2]["choices"][0]["finish_reason"] == "stop"
    assert release.released == len(release.chunks) and release.shown_tokens == 2


def test_a_tool_call_stops_showing_for_good() -> None:
    release = Release(early_exit_tokens=1, holdback_tokens=0)
    feed(release, [" Let", " me", " look"])
    release.add({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f"}}]},
                              "finish_reason": None}]}, 1)
    release.add(token(" more"), 1)
    before = release.released
    assert release.ready(5, True) == [] and release.released == before


def test_multi_token_chunks_count_their_tokens() -> None:
    release = Release(early_exit_tokens=3, holdback_tokens=2)
    release.add(token(" one two three"), 3)
    release.add(token(" four"), 1)
    assert release.ready(4, True) == []  # the first chunk ends at token 3 > 4 - 2
    release.add(token(" five"), 1)
    assert [delta_text(c) for c in release.ready(5, True)] == [" one two three"]
