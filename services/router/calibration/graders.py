"""Reference graders: is an answer right, by the item's reference? Pure (no model, no subprocess).

Each grader takes the answer text and the item's grader spec (the `grader` object of a prompts.jsonl
line) and returns a Verdict. They are lenient about form and strict about content, because the
question calibration asks is "would serving this draft have been fine?", not "did it follow a format":
case, accents, punctuation and thousands separators are normalised away, but an alias must appear as
whole words ("Paris", not "Parisian") and a number must be the answer's number, not any number in it.
Code (sandbox.py) and judge (judge.py) items are graded elsewhere; `grade_reference` refuses them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REFERENCE_KINDS = frozenset({"aliases", "number", "exact", "regex", "constraints"})


@dataclass(frozen=True)
class Verdict:
    correct: bool
    detail: str  # why, short: what was found or missed
    score: int | None = None  # the judge's 1-5; None for every other grader


def normalise(text: str) -> str:
    """Casefolded, accents and punctuation gone, thousands separators dropped, decimal points kept
    ("Washington, D.C." -> "washington d c"; "1,234.5" -> "1234.5"), whitespace collapsed."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"(?!(?<=\d)\.(?=\d))[^\w]", " ", text)
    return " ".join(text.split())


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether normalised `phrase` occurs in normalised `text` as whole words (and whole numbers:
    "4" is not found in "14" or "4.5")."""
    needle = normalise(phrase)
    if not needle:
        return False
    pattern = rf"(?<![\w.]){re.escape(needle)}(?!\w)(?!\.\d)"
    return re.search(pattern, normalise(text)) is not None


def grade_aliases(text: str, spec: dict[str, Any]) -> Verdict:
    """Right when any alias of the reference answer appears as whole words."""
    answers = [str(a) for a in spec.get("answers") or ()]
    if not answers:
        raise ValueError("aliases grader without answers")
    for alias in answers:
        if contains_phrase(text, alias):
            return Verdict(True, f"found {alias!r}")
    return Verdict(False, f"none of {answers[:4]!r}{' ...' if len(answers) > 4 else ''} found")


# A number as people write it: sign, currency, thousands separators, decimals. Not part of a word
# ("B12"), a version ("1.2.3" yields 1.2 and 3 at worst) or a range's second end ("5-3" is 5 and 3).
_NUMBER = re.compile(r"(?<![\w.])([-\u2212]?)\$?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?(?!\w)")
_ANSWER_MARKER = re.compile(r"(?:####|\\boxed\{|answer\s*(?:is|:|=))[\s:*$=]*", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*[-+*/\u00d7x\u2212=^]\s*\d")
_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_WORD_NUMBER = re.compile(rf"\b(?:({'|'.join(_TENS)})(?:[-\s]({'|'.join(_UNITS)}))?|({'|'.join(_UNITS)}))\b",
                          re.IGNORECASE)


def _value(match: re.Match[str]) -> float:
    sign, whole, decimals = match.groups()
    number = float(whole.replace(",", "") + (decimals or ""))
    return -number if sign else number


def _word_value(match: re.Match[str]) -> float:
    tens, unit, alone = match.groups()
    if alone:
        return float(_UNITS[alone.lower()])
    return float(_TENS[tens.lower()] + (_UNITS[unit.lower()] if unit else 0))


def answer_number(text: str) -> float | None:
    """The number an answer gives: after an explicit answer marker ("The answer is 42", "#### 42",
    "\\boxed{42}") when one is followed directly by a number that is not the start of a calculation
    ("The answer is 6 x 7 = 42" is 42); else the final number in the text; else the final number
    word ("twelve", "forty-two") when the text has no digits at all."""
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        match = _NUMBER.match(text, markers[-1].end())
        if match and not _OPERATOR_AFTER.match(text, match.end()):
            return _value(match)
    numbers = list(_NUMBER.finditer(text))
    if numbers:
        return _value(numbers[-1])
    words = list(_WORD_NUMBER.finditer(text))
    return _word_value(words[-1]) if words else None


def grade_number(text: str, spec: dict[str, Any]) -> Verdict:
    """Right when the answer's number is the reference value, within `tolerance` (default 0)."""
    value = float(spec["value"])
    tolerance = float(spec.get("tolerance") or 0.0)
    got = answer_number(text)
    if got is None:
        return Verdict(False, "no number in the answer")
    right = abs(got - value) <= tolerance + 1e-9 * max(1.0, abs(value))
    return Verdict(right, f"answer {_show(got)}, expected {_show(value)}"
                          + (f" +/- {_show(tolerance)}" if tolerance else ""))


def _show(number: float) -> str:
    return str(int(number)) if math.isfinite(number) and number == int(number) else f"{number:g}"


def grade_exact(text: str, spec: dict[str, Any]) -> Verdict:
    """Right when the whole answer, normalised, is the reference, normalised ("Yes." == "yes")."""
    expected = str(spec["answer"])
    right = normalise(text) == normalise(expected)
    return Verdict(right, "matches" if right else f"expected exactly {expected!r}")


def grade_regex(text: str, spec: dict[str, Any]) -> Verdict:
    """Right when the pattern is found anywhere in the answer (re.search, case-insensitive)."""
    pattern = str(spec["pattern"])
    match = re.search(pattern, text, re.IGNORECASE)
    return Verdict(match is not None, f"matched {match.group(0)[:40]!r}" if match else f"no match for /{pattern}/")


# --- constraints: checkable properties of open-ended answers -------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)]|[a-z][.)])\s+\S", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Words as a reader counts them: whitespace-separated runs holding a letter or digit."""
    return [w for w in text.split() if any(c.isalnum() for c in w)]


def lines(text: str) -> list[str]:
    """The non-empty lines."""
    return [line for line in text.splitlines() if line.strip()]


def list_items(text: str) -> list[str]:
    """The list's items: lines bulleted (-, *, +, a bullet) or numbered (1. 2) a.); when no line is,
    every non-empty line (a list written one item per line)."""
    bulleted = [line for line in text.splitlines() if _LIST_ITEM.match(line)]
    return bulleted or lines(text)


def _lead(text: str) -> str:
    """The text without leading whitespace, quotes, markdown emphasis or heading marks."""
    return text.lstrip(" \t\r\n\"'`*#_>\u201c\u2018")


def _trail(text: str) -> str:
    return text.rstrip(" \t\r\n\"'`*_\u201d\u2019")


def _ends_with(text: str, suffix: str) -> bool:
    """Whole words as _starts does; a suffix of punctuation alone ("?") against the raw trimmed text,
    which normalising would empty."""
    if not normalise(suffix):
        return _trail(text).endswith(suffix.strip())
    return _starts(normalise(_trail(text))[::-1], normalise(suffix)[::-1])


def _starts_with(text: str, prefix: str) -> bool:
    if not normalise(prefix):
        return _lead(text).startswith(prefix.strip())
    return _starts(normalise(_lead(text)), normalise(prefix))


def _starts(text: str, prefix: str) -> bool:
    """Whether normalised `text` begins with the whole words of `prefix` ("the" does not start "there")."""
    return bool(prefix) and (text == prefix or text.startswith(prefix + " "))


Check = Callable[[str, Any], tuple[bool, str]]

CHECKS: dict[str, Check] = {  # the kinds dataset.CONSTRAINT_KINDS defines, as it defines them
    "max_words": lambda t, v: (len(words(t)) <= int(v), f"{len(words(t))} words (max {v})"),
    "min_words": lambda t, v: (len(words(t)) >= int(v), f"{len(words(t))} words (min {v})"),
    "lines": lambda t, v: (len(lines(t)) == int(v), f"{len(lines(t))} lines (want {v})"),
    "items": lambda t, v: (len(list_items(t)) == int(v), f"{len(list_items(t))} list items (want {v})"),
    "contains": lambda t, v: (contains_phrase(t, str(v)), f"contains {v!r}"),
    "excludes": lambda t, v: (not contains_phrase(t, str(v)), f"does not contain {v!r}"),
    "starts_with": lambda t, v: (_starts_with(t, str(v)), f"starts with {v!r}"),
    "ends_with": lambda t, v: (_ends_with(t, str(v)), f"ends with {v!r}"),
}


def grade_constraints(text: str, spec: dict[str, Any]) -> Verdict:
    """Right when every check holds; the detail names the first that fails (or all that held)."""
    checks = spec.get("checks") or ()
    if not checks:
        raise ValueError("constraints grader without checks")
    held = []
    for check in checks:
        kind = check.get("kind")
        if kind not in CHECKS:
            raise ValueError(f"unknown constraint check {kind!r}; known: {sorted(CHECKS)}")
        ok, why = CHECKS[kind](text, check.get("value"))
        if not ok:
            return Verdict(False, f"failed {kind}: {why}")
        held.append(why)
    return Verdict(True, "; ".join(held))


GRADERS: dict[str, Callable[[str, dict[str, Any]], Verdict]] = {
    "aliases": grade_aliases, "number": grade_number, "exact": grade_exact, "regex": grade_regex,
    "constraints": grade_constraints,
}


def grade_reference(text: str, spec: dict[str, Any]) -> Verdict:
    """Grade by the spec's reference; an empty answer is wrong whatever the grader."""
    kind = spec.get("kind")
    if kind not in GRADERS:
        raise ValueError(f"{kind!r} is not a reference grader (those are {sorted(GRADERS)})")
    if not text.strip():
        return Verdict(False, "empty answer")
    return GRADERS[kind](text, spec)
