"""Where a shown draft may end, and the repair of the seam to the heavyweight's continuation. Pure.

The router shows a draft only up to a word boundary: a continuation asked for by instruction
starts a new word, never the rest of half a word, and whether a space belongs between the two
is known from the drafter's own next token. Scripts written without spaces between words (Chinese,
Japanese, Thai, ...) have a boundary between any two characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")
_IN_WORD = frozenset("'\u2019-_")  # don't, well-known, snake_case: the word goes on


def _word_char(char: str) -> bool:
    """A character that glues to its neighbours into one word."""
    if char in _IN_WORD:
        return True
    if not char.isalnum():
        return False
    return char.isascii() or not unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS)


def word_boundary(before: str, after: str) -> bool:
    """May a shown text that is `before` stop here, when `after` is what the drafter wrote next?

    Both must be non-empty: at the very start nothing is shown yet, and without the next text it
    is unknown whether the word goes on."""
    if not before or not after:
        return False
    return not (_word_char(before[-1]) and _word_char(after[0]))


def delta_text(chunk: dict[str, Any]) -> str:
    """The content a chunk adds (first choice; the gateway serves n=1)."""
    choices = chunk.get("choices") or ()
    if not choices:
        return ""
    return (choices[0].get("delta") or {}).get("content") or ""


def _set_delta_text(chunk: dict[str, Any], text: str) -> None:
    chunk["choices"][0].setdefault("delta", {})["content"] = text


@dataclass
class Seam:
    """Repairs the start of a continuation of `shown`.

    Two slips of chat models told to continue: starting again from the beginning (the restated
    text is dropped; instruction style only), and starting the next word without its space (one is
    added when the drafter's own next token began with whitespace: any style, as a server that
    ignores prefill or continue_final_message opens a new turn that starts with a letter). Chunks are
    held only while the continuation's text could still be a restatement, that is while it is a
    prefix of the shown text: usually not past the first token."""

    shown: str
    space_expected: bool
    restatements: bool = True  # drop a restated prefix (instruction style; servers that extend the text don't)
    _held: list[dict[str, Any]] = field(default_factory=list)
    _text: str = ""
    _settled: bool = False

    def __post_init__(self) -> None:
        self._target = self.shown.strip() if self.restatements else ""
        self._settled = not self.shown or (not self._target and not self.space_expected)

    def take(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks to send now, in order, given the continuation's next chunk."""
        if self._settled:
            return [chunk]
        self._held.append(chunk)
        self._text += delta_text(chunk)
        if not self._text:
            return []  # a role chunk or an empty delta: wait for the first text
        start = self._text.lstrip()
        if len(start) < len(self._target) and self._target.startswith(start):
            return []  # may still be a restatement: wait for more text
        return self._settle(restated=start.startswith(self._target))

    def flush(self) -> list[dict[str, Any]]:
        """The stream ended: whatever is held goes out (a continuation shorter than a restatement)."""
        return [] if self._settled else self._settle(restated=False)

    def _settle(self, restated: bool) -> list[dict[str, Any]]:
        self._settled = True
        held, self._held = self._held, []
        if restated:
            _drop_text(held, len(self._text) - len(self._text.lstrip()) + len(self._target))
        first = next((c for c in held if delta_text(c)), None)
        if first is not None and self.space_expected and not self.shown[-1:].isspace():
            text = delta_text(first)
            if _word_char(text[0]):
                _set_delta_text(first, " " + text)
        return held


def _drop_text(chunks: list[dict[str, Any]], count: int) -> None:
    """Remove the first `count` characters of content from the chunks, in place."""
    for chunk in chunks:
        if count <= 0:
            return
        text = delta_text(chunk)
        if not text:
            continue
        _set_delta_text(chunk, text[count:])
        chunk["choices"][0]["logprobs"] = None  # its entries were for the text now gone
        count -= len(text)
