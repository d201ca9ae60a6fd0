"""The calibration prompt set (scripts/calibration_prompts.py writes it): items, each with what grades it.

`collect` runs every item's messages through the tiers and `grade` marks each answer right or wrong by
the item's grader, so a malformed item must fail here, on load, naming its line, and never halfway through
a two-hour collection run. One JSON object per line:

    {"id", "category": factual|reasoning|code|creative, "family": <template>, "split": train|test,
     "messages": [{"role", "content"}...], "max_tokens": int, "grader": {"kind": ..., ...}}

Grader kinds (what `grade` does with each is its business; what the fields mean is fixed here):
- aliases: {"answers": [str, ...]}: right when any answer appears in the normalised reply, word-bounded
  (every accepted spelling is listed: "Brasília" and "Brasilia", "1000" and "1,000").
- number: {"value": int|float, "tolerance": number}: the reply's answer number, within tolerance: the
  number stated after "the answer is" or "####" when there is one, else the last number in the reply.
- exact: {"answer": str}: the whole reply, normalised (case, surrounding whitespace and punctuation), equals.
- regex: {"pattern": str}: re.search with IGNORECASE matches the reply.
- code: {"entry_point": str, "tests": [str, ...]}: the reply's code, run with each test (a statement that
  calls entry_point, usually an assert) in a subprocess, passes them all.
- constraints: {"checks": [{"kind", "value"}, ...]}: every check holds (CONSTRAINT_KINDS says what each means).
- judge: {"rubric": str}: an LLM judge scores the reply 1-5 against the rubric; right at 3 or more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASET = Path(__file__).resolve().parent / "data" / "prompts.jsonl"
CATEGORIES = ("factual", "reasoning", "code", "creative")
SPLITS = ("train", "test")
ROLES = ("system", "user", "assistant")
GRADER_KINDS = ("aliases", "number", "exact", "regex", "code", "constraints", "judge")
MAX_TOKENS_LIMIT = 4096

# A constraint check's kind: (the type of its value, what it requires of the reply). Words are
# whitespace-separated runs; matching is case-insensitive; a line counts when it has non-space text.
CONSTRAINT_KINDS: dict[str, tuple[type, str]] = {
    "max_words": (int, "at most value words"),
    "min_words": (int, "at least value words"),
    "lines": (int, "exactly value non-empty lines"),
    "items": (int, "exactly value list items: lines starting with a bullet (-, *, •) or a number (1. or 1)); "
                   "when no line does, every non-empty line is an item"),
    "contains": (str, "the word or phrase value appears, word-bounded"),
    "excludes": (str, "the word or phrase value does not appear, word-bounded"),
    "starts_with": (str, "the reply, leading whitespace and quotes stripped, begins with value"),
    "ends_with": (str, "the reply, trailing whitespace and quotes stripped, ends with value"),
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatasetError(ValueError):
    """A prompts file that collect and grade must not run on; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    category: str
    family: str  # the template it came from: the unit of the train/test split
    split: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    grader: dict[str, Any]  # {"kind": one of GRADER_KINDS, ...its fields}

    @property
    def kind(self) -> str:
        return str(self.grader["kind"])

    @property
    def prompt(self) -> str:
        """The last user message: what the item asks."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "family": self.family, "split": self.split,
                "messages": [dict(m) for m in self.messages], "max_tokens": self.max_tokens,
                "grader": self.grader}

    def dumps(self) -> str:
        """One line of the prompts file."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, row: Any) -> Item:
        """A validated item; ValueError saying what is wrong otherwise."""
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("id", "category", "family", "split", "messages", "max_tokens", "grader") if k not in row]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        item_id, family = row["id"], row["family"]
        if not isinstance(item_id, str) or not item_id.strip():
            raise ValueError("id must be a non-empty string")
        if not isinstance(family, str) or not family.strip():
            raise ValueError("family must be a non-empty string")
        _one_of("category", row["category"], CATEGORIES)
        _one_of("split", row["split"], SPLITS)
        max_tokens = row["max_tokens"]
        if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"max_tokens must be an integer in 1..{MAX_TOKENS_LIMIT}, got {max_tokens!r}")
        return cls(item_id, row["category"], family, row["split"], _messages(row["messages"]), max_tokens,
                   validate_grader(row["grader"]))


def load_items(path: str | Path = DATASET) -> list[Item]:
    """Every item of a prompts file, in file order; DatasetError naming the line of the first bad one."""
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = Item.from_json(json.loads(line))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise DatasetError(f"{path}:{number}: {exc}") from exc
        if item.id in first_line:
            raise DatasetError(f"{path}:{number}: duplicate id {item.id!r} (first on line {first_line[item.id]})")
        first_line[item.id] = number
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no items")
    return items


def validate_grader(grader: Any) -> dict[str, Any]:
    """The grader, checked for its kind's fields; ValueError naming what is wrong."""
    if not isinstance(grader, dict):
        raise ValueError("grader must be an object")
    kind = grader.get("kind")
    check = _GRADER_CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise ValueError(f"unknown grader kind {kind!r} (known: {', '.join(GRADER_KINDS)})")
    try:
        check(grader)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{kind} grader: missing or mistyped field ({exc})") from exc
    return grader


def _messages(messages: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"messages[{index}]: role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"messages[{index}]: content must be a non-empty string")
        out.append({"role": message["role"], "content": content})
    if out[-1]["role"] != "user":
        raise ValueError("the last message must be the user's")
    return tuple(out)


def _check_aliases(grader: dict[str, Any]) -> None:
    answers = grader["answers"]
    if not isinstance(answers, list) or not answers or not all(_nonempty(a) for a in answers):
        raise ValueError("aliases grader: answers must be a non-empty list of non-empty strings")


def _check_number(grader: dict[str, Any]) -> None:
    if not _is_number(grader["value"]):
        raise ValueError(f"number grader: value must be a number, got {grader['value']!r}")
    tolerance = grader.get("tolerance", 0)
    if not _is_number(tolerance) or tolerance < 0:
        raise ValueError(f"number grader: tolerance must be a number >= 0, got {tolerance!r}")


def _check_exact(grader: dict[str, Any]) -> None:
    if not _nonempty(grader["answer"]):
        raise ValueError("exact grader: answer must be a non-empty string")


def _check_regex(grader: dict[str, Any]) -> None:
    pattern = grader["pattern"]
    if not _nonempty(pattern):
        raise ValueError("regex grader: pattern must be a non-empty string")
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"regex grader: pattern does not compile ({exc})") from exc


def _check_code(grader: dict[str, Any]) -> None:
    entry, tests = grader["entry_point"], grader["tests"]
    if not isinstance(entry, str) or not _IDENTIFIER.match(entry):
        raise ValueError(f"code grader: entry_point must be a Python identifier, got {entry!r}")
    if not isinstance(tests, list) or not tests:
        raise ValueError("code grader: tests must be a non-empty list")
    calls = re.compile(rf"\b{entry}\s*\(")
    for index, test in enumerate(tests):
        if not isinstance(test, str) or not calls.search(test):
            raise ValueError(f"code grader: tests[{index}] does not call the entry point {entry}(): {test!r}")
        try:
            compile(test, f"<tests[{index}]>", "exec")
        except SyntaxError as exc:
            raise ValueError(f"code grader: tests[{index}] is not valid Python ({exc.msg}): {test!r}") from exc


def _check_constraints(grader: dict[str, Any]) -> None:
    checks = grader["checks"]
    if not isinstance(checks, list) or not checks:
        raise ValueError("constraints grader: checks must be a non-empty list")
    for index, check in enumerate(checks):
        kind = check.get("kind") if isinstance(check, dict) else None
        if kind not in CONSTRAINT_KINDS:
            raise ValueError(f"constraints grader: checks[{index}] has unknown kind {kind!r} "
                             f"(known: {', '.join(CONSTRAINT_KINDS)})")
        wanted, _meaning = CONSTRAINT_KINDS[kind]
        value = check.get("value")
        ok = (_is_int(value) and value > 0) if wanted is int else _nonempty(value)
        if not ok:
            raise ValueError(f"constraints grader: checks[{index}] ({kind}) needs a "
                             f"{'positive integer' if wanted is int else 'non-empty string'} value, got {value!r}")


def _check_judge(grader: dict[str, Any]) -> None:
    if not _nonempty(grader["rubric"]):
        raise ValueError("judge grader: rubric must be a non-empty string")


_GRADER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "aliases": _check_aliases, "number": _check_number, "exact": _check_exact, "regex": _check_regex,
    "code": _check_code, "constraints": _check_constraints, "judge": _check_judge,
}


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
