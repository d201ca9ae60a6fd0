"""Word boundaries for shown drafts, and the repair of an instruction-style seam."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.seam import Seam, delta_text, word_boundary


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "choices": [{"index": 0, "delta": {"content": text},
                                    "logprobs": {"content": [{"token": text, "logprob": -0.1}]},
                                    "finish_reason": finish}]}


@pytest.mark.parametrize(("before", "after", "expected"), [
    ("Paris", " is", True),         # the next token starts a word
    ("Paris ", "is", True),         # the space ended the shown text
    ("capit", "al", False),         # half a word
    ("Paris", ",", True),           # punctuation
    ("don", "'t", False),           # an apostrophe inside a word
    ("well", "-known", False),
    ("東京", "は", True),            # no spaces between words: any character
    ("café", "s", False),           # accented Latin letters glue like ASCII ones
    ("", " is", False),             # nothing shown yet
    ("Paris", "", False),           # unknown what follows
    ("x = 4", "2", False),          # a number goes on
])
def test_word_boundary(before: str, after: str, expected: bool) -> None:
    assert word_boundary(before, after) is expected


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(delta_text(c) for c in chunks)


def run(seam: Seam, parts: list[str]) -> tuple[str, list[int]]:
    """The text the client gets, and after which input chunk each output went out."""
    out, when = [], []
    for i, part in enumerate(parts):
        sent = seam.take(chunk(part))
        out.extend(sent)
        when.extend([i] * len(sent))
    out.extend(seam.flush())
    return texts(out), when


def test_a_continuation_that_starts_a_new_word_gets_the_space_the_drafter_meant() -> None:
    text, when = run(Seam("The capital of France is", space_expected=True), ["Paris", "."])
    assert text == " Paris."
    assert when == [0, 1]  # nothing held: "Paris" cannot be a restatement


def test_no_space_is_added_before_punctuation_or_when_one_is_there() -> None:
    assert run(Seam("Paris is", space_expected=True), [", of course"])[0] == ", of course"
    assert run(Seam("Paris is", space_expected=True), [" big"])[0] == " big"
    assert run(Seam("Paris is", space_expected=False), ["big"])[0] == "big"
    assert run(Seam("Paris is ", space_expected=True), ["big"])[0] == "big"


def test_a_restated_prefix_is_dropped_and_the_rest_goes_on() -> None:
    text, when = run(Seam("The capital of", space_expected=True), ["The", " capital", " of", " France", " is"])
    assert text == " France is"
    assert when == [2, 2, 2, 3, 4]  # held while it could still be a restatement, then released at once


def test_a_start_that_only_looks_like_a_restatement_is_kept_whole() -> None:
    assert run(Seam("The capital of", space_expected=True), ["The", " city"])[0] == " The city"


def test_a_stream_that_ends_inside_a_possible_restatement_is_flushed() -> None:
    assert run(Seam("The capital of France", space_expected=True), ["The", " capital"])[0] == " The capital"


def test_cut_chunks_lose_their_stale_logprobs_but_untouched_ones_keep_them() -> None:
    seam = Seam("Hello there", space_expected=True)
    assert seam.take(chunk("Hello")) == []
    out = seam.take(chunk(" there friend"))
    assert texts(out) == " friend"
    assert out[0]["choices"][0]["logprobs"] is None and out[1]["choices"][0]["logprobs"] is None
    assert seam.take(chunk("!"))[0]["choices"][0]["logprobs"] is not None


def test_nothing_shown_means_nothing_to_repair() -> None:
    assert run(Seam("", space_expected=True), ["Paris"])[0] == "Paris"


def test_without_restatements_only_the_space_is_repaired_and_nothing_is_held() -> None:
    """Styles where the server extends the text: a restatement is not dropped, but a server that
    ignored the style and opened a new turn still gets its missing space."""
    seam = Seam("The capital of", space_expected=True, restatements=False)
    text, when = run(seam, ["The", " capital"])
    assert text == " The capital" and when == [0, 1]
    assert run(Seam("Paris is", space_expected=False, restatements=False), ["big"])[0] == "big"


def test_a_role_chunk_before_the_text_is_held_with_it_not_judged_alone() -> None:
    seam = Seam("Paris is", space_expected=True)
    assert seam.take({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) == []
    out = seam.take(chunk("big"))
    assert texts(out) == " big" and len(out) == 2
