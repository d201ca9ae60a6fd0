"""The calibration prompt set: reproducible byte for byte, shipped as generated, split by family, and
every answer it grades by is right: code references pass their tests (and a stub fails them), numbers are
what the prompt's numbers make (computed here a second way), yes/no answers match an independent check.
The item model rejects malformed files with an error naming the line."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts import calibration_prompts
from scripts.calibration_prompt_families import FAMILIES
from services.router.calibration import dataset
from services.router.calibration.dataset import CATEGORIES, DatasetError, Item, load_items

REPO = Path(__file__).resolve().parents[2]

# Each number-graded family's answer from the numbers in its prompt, in order: a second implementation
# of every template's arithmetic, written from the wording.
INDEPENDENT: dict[str, Callable[[list[int]], float]] = {
    "more": lambda n: n[0] + n[1],
    "fly_away": lambda n: n[0] - n[1],
    "packs": lambda n: n[0] * n[1],
    "share": lambda n: n[0] / n[1],
    "older": lambda n: n[0] + n[1],
    "change": lambda n: n[4] - (n[0] * n[1] + n[2] * n[3]),
    "marbles": lambda n: n[0] - n[1] + n[2],
    "trip": lambda n: n[0] * n[1] + n[2] * n[3],
    "ages": lambda n: n[0] + (n[0] - n[1]) + 2 * n[2],
    "garden": lambda n: n[0] * n[1] - n[2] + n[3],
    "factory": lambda n: n[0] * n[1] * n[2],
    "discount": lambda n: n[2] * n[0] * (100 - n[1]) / 100,
    "savings": lambda n: n[0] * n[1] - n[2],
    "cookies": lambda n: (n[0] * n[1] - n[2]) / n[3],
    "book": lambda n: n[0] - n[1] * n[2],
    "fuel": lambda n: n[2] / n[1] * n[0],
    "average": lambda n: sum(n[:4]) / 4,
    "consecutive": lambda n: next(x for x in range(n[0]) if (x - 2) + (x - 1) + x == n[0]),
    "tank": lambda n: n[0] / (n[1] - n[2]),
    "tickets": lambda n: n[0] * n[2] + n[1] * n[3],
    "equation": lambda n: (n[1] - n[0]) / 2,
    "flour": lambda n: math.ceil(n[2] * n[0] / n[1]),
    "temperature": lambda n: n[0] + n[1] - n[2],
    "pens": lambda n: n[0] * n[1] - n[2] * n[3],
    "duration": lambda n: n[0] * 60 + n[1],
    "pipes": lambda n: 1 / (1 / n[0] + 1 / n[1]),
    "bus": lambda n: n[0] - n[0] * n[1] / 100,
    "times_table": lambda n: n[0] * n[1],
    "multiply_two_digits": lambda n: n[0] * n[1],
    "add_three_digits": lambda n: n[0] + n[1],
    "subtract": lambda n: n[0] - n[1],
    "divide": lambda n: n[0] / n[1],
    "square": lambda n: n[0] ** 2,
}
# Constraint families whose prompt states the checked number (the only number in the prompt).
STATED = {"poem_lines": "lines", "list_n": "items", "word_limit": "max_words", "slogan": "max_words",
          "title": "max_words", "min_words": "min_words"}


@pytest.fixture(scope="module")
def entries() -> list[calibration_prompts.Entry]:
    return calibration_prompts.generate(calibration_prompts.DEFAULT_SEED)


@pytest.fixture(scope="module")
def shipped() -> list[Item]:
    return load_items()


def test_same_seed_same_file_and_the_shipped_file_is_the_generators_output(tmp_path: Path) -> None:
    first, second, fresh = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    calibration_prompts.main(["--out", str(first)])
    calibration_prompts.write(calibration_prompts.generate(calibration_prompts.DEFAULT_SEED), second)
    # a fresh interpreter with another hash seed: no set or dict order leaks into the file
    subprocess.run([sys.executable, "-m", "scripts.calibration_prompts", "--out", str(fresh)], cwd=REPO, check=True,
                   capture_output=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert first.read_bytes() == second.read_bytes() == fresh.read_bytes() == dataset.DATASET.read_bytes()
    assert calibration_prompts.DEFAULT_OUT == dataset.DATASET


def test_another_seed_draws_and_splits_differently() -> None:
    one, other = calibration_prompts.generate(1), calibration_prompts.generate(2)
    assert [e.item.dumps() for e in one] != [e.item.dumps() for e in other]
    assert {e.item.family: e.item.split for e in one} != {e.item.family: e.item.split for e in other}


def test_loading_gives_back_the_generated_items(entries: list[calibration_prompts.Entry], shipped: list[Item]) -> None:
    assert shipped == [e.item for e in entries]
    assert all(Item.from_json(item.to_json()) == item for item in shipped)


def test_counts_per_category_and_a_small_token_budget(shipped: list[Item]) -> None:
    per_category = Counter(item.category for item in shipped)
    assert len(shipped) >= 600
    assert set(per_category) == set(CATEGORIES)
    assert all(count >= 100 for count in per_category.values()), per_category
    assert sum(item.max_tokens for item in shipped) / len(shipped) <= 100
    budget = {category: {item.max_tokens for item in shipped if item.category == category} for category in CATEGORIES}
    assert max(budget["factual"]) <= 64 and min(budget["code"]) >= 160 and max(budget["creative"]) <= 128
    kinds = Counter(item.kind for item in shipped)
    assert set(kinds) == set(dataset.GRADER_KINDS)
    assert kinds["judge"] < 0.1 * len(shipped)  # most items grade without a model call


def test_ids_and_prompts_are_unique(shipped: list[Item]) -> None:
    assert len({item.id for item in shipped}) == len(shipped)
    assert len({item.prompt for item in shipped}) == len(shipped)
    assert all(item.id.startswith(f"{item.category}-{item.family}-") for item in shipped)


def test_split_by_whole_family_about_thirty_percent_test_in_every_category(shipped: list[Item]) -> None:
    split_of: dict[str, set[str]] = defaultdict(set)
    for item in shipped:
        split_of[item.family].add(item.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert 0.25 <= sum(item.split == "test" for item in shipped) / len(shipped) <= 0.35
    for category in CATEGORIES:
        items = [item for item in shipped if item.category == category]
        assert 0.2 <= sum(item.split == "test" for item in items) / len(items) <= 0.4, category
    strata: dict[tuple[str, str], set[str]] = defaultdict(set)
    families: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in shipped:
        strata[item.category, item.kind].add(item.split)
        families[item.category, item.kind].add(item.family)
    for stratum, splits in strata.items():
        if len(families[stratum]) >= 2:
            assert splits == {"train", "test"}, stratum
    assert len(FAMILIES) == len(split_of)


def test_every_code_reference_passes_its_tests_and_a_stub_fails_them(entries: list[calibration_prompts.Entry]
                                                                     ) -> None:
    code = [e for e in entries if e.item.kind == "code"]
    assert len(code) >= 100 and all(e.reference for e in code)
    for entry in code:
        grader = entry.item.grader
        namespace: dict[str, object] = {}
        exec(entry.reference, namespace)  # our own reference solutions
        for test in grader["tests"]:
            exec(test, namespace)
        stub: dict[str, object] = {}
        exec(f"def {grader['entry_point']}(*args, **kwargs):\n    return None\n", stub)
        assert any(_fails(test, stub) for test in grader["tests"]), entry.item.id
        assert f"`{grader['entry_point']}(" in entry.item.prompt


def _fails(test: str, namespace: dict[str, object]) -> bool:
    try:
        exec(test, dict(namespace))
    except Exception:
        return True
    return False


def test_every_number_answer_is_what_the_prompts_numbers_make(shipped: list[Item]) -> None:
    numbered = [item for item in shipped if item.kind == "number"]
    assert {item.family for item in numbered} == set(INDEPENDENT)
    for item in numbered:
        numbers = [int(n) for n in re.findall(r"\d+", item.prompt)]
        expected = INDEPENDENT[item.family](numbers)
        value = item.grader["value"]
        assert isinstance(value, int) and value > 0, item.id  # a whole positive number: no sign for a parser to lose
        assert math.isclose(expected, value, abs_tol=1e-9), (item.id, item.prompt, value, expected)
        assert item.grader["tolerance"] == 0


def test_yes_no_and_exact_answers(shipped: list[Item]) -> None:
    for item in shipped:
        if item.kind == "regex":
            right, wrong = ("Yes", "No") if item.grader["pattern"].endswith(r"yes\b") else ("No", "Yes")
            for reply in (f"{right}.", f"Sure! {right}, of course.\nNot {wrong.lower()}.", f"The answer is {right}"):
                assert re.search(item.grader["pattern"], reply, re.IGNORECASE), (item.id, reply)
            for reply in (f"{wrong}.", f"Hmm, {wrong}, {right.lower()}?", "I cannot say."):
                assert not re.search(item.grader["pattern"], reply, re.IGNORECASE), (item.id, reply)
        if item.family == "prime_or_not":
            n = int(re.search(r"\d+", item.prompt).group())
            prime = all(n % d for d in range(2, n))
            assert re.search(item.grader["pattern"], "Yes, it is." if prime else "No, it is not.", re.IGNORECASE)
            assert not re.search(item.grader["pattern"], "No." if prime else "Yes.", re.IGNORECASE)
        if item.family == "backwards":
            word = re.search(r"'(\w+)'", item.prompt).group(1)
            assert item.grader["answer"] == "".join(reversed(word))
        if item.family == "alphabet_position":
            assert item.grader["answer"] in "abcdefghijklmnopqrstuvwxyz"


def test_no_alias_gives_itself_away_in_the_prompt(shipped: list[Item]) -> None:
    for item in shipped:
        if item.kind == "aliases":
            for answer in item.grader["answers"]:
                assert not re.search(rf"\b{re.escape(answer)}\b", item.prompt, re.IGNORECASE), (item.id, answer)


def test_constraint_numbers_are_the_ones_the_prompt_states(shipped: list[Item]) -> None:
    for item in shipped:
        if item.family in STATED:
            stated = [int(n) for n in re.findall(r"\d+", item.prompt)]
            checked = [c["value"] for c in item.grader["checks"] if c["kind"] == STATED[item.family]]
            assert stated == checked, item.id
        if item.family == "must_use_word":
            word = re.search(r"'(\w+)'", item.prompt).group(1)
            assert {"kind": "contains", "value": word} in item.grader["checks"]


# --- the item model's validation ---

def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"id": "factual-x-0001", "category": "factual", "family": "x", "split": "train",
                              "messages": [{"role": "user", "content": "What is the capital of France?"}],
                              "max_tokens": 48, "grader": {"kind": "aliases", "answers": ["Paris"]}}
    row.update(changes)
    return row


def _file(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("bad", "message"), [
    ({"grader": {"kind": "vibes"}}, "unknown grader kind 'vibes'"),
    ({"grader": {"kind": "aliases", "answers": []}}, "answers must be a non-empty list"),
    ({"grader": {"kind": "aliases", "answers": ["Paris", " "]}}, "answers must be a non-empty list"),
    ({"grader": {"kind": "code", "entry_point": "add", "tests": ["assert plus(1, 2) == 3"]}},
     "does not call the entry point add()"),
    ({"grader": {"kind": "code", "entry_point": "add", "tests": ["assert add(1, 2) =="]}}, "is not valid Python"),
    ({"grader": {"kind": "code", "entry_point": "add two", "tests": ["add(1)"]}}, "must be a Python identifier"),
    ({"grader": {"kind": "regex", "pattern": "(unclosed"}}, "pattern does not compile"),
    ({"grader": {"kind": "number", "value": "391"}}, "value must be a number"),
    ({"grader": {"kind": "number", "value": 3, "tolerance": -1}}, "tolerance must be a number >= 0"),
    ({"grader": {"kind": "exact"}}, "missing or mistyped field"),
    ({"grader": {"kind": "constraints", "checks": [{"kind": "rhymes", "value": 2}]}}, "unknown kind 'rhymes'"),
    ({"grader": {"kind": "constraints", "checks": [{"kind": "lines", "value": "3"}]}}, "needs a positive integer"),
    ({"grader": {"kind": "judge", "rubric": ""}}, "rubric must be a non-empty string"),
    ({"category": "trivia"}, "category must be one of"),
    ({"split": "dev"}, "split must be one of"),
    ({"max_tokens": 0}, "max_tokens must be an integer"),
    ({"messages": [{"role": "assistant", "content": "Hi"}]}, "the last message must be the user's"),
    ({"messages": [{"role": "user", "content": ""}]}, "content must be a non-empty string"),
])
def test_a_malformed_item_is_an_error_naming_its_line(tmp_path: Path, bad: dict[str, object], message: str) -> None:
    path = _file(tmp_path, _row(), "", _row(id="factual-x-0002", **bad))
    with pytest.raises(DatasetError, match=rf"prompts\.jsonl:3: .*{re.escape(message)}"):
        load_items(path)


def test_missing_fields_bad_json_and_duplicate_ids_name_their_line(tmp_path: Path) -> None:
    row = _row()
    del row["family"]
    with pytest.raises(DatasetError, match=r":1: missing family"):
        load_items(_file(tmp_path, row))
    with pytest.raises(DatasetError, match=r":2: "):
        load_items(_file(tmp_path, _row(), "{not json"))
    with pytest.raises(DatasetError, match=r":2: duplicate id 'factual-x-0001' \(first on line 1\)"):
        load_items(_file(tmp_path, _row(), _row()))
    with pytest.raises(DatasetError, match="no items"):
        load_items(_file(tmp_path, ""))


def test_a_valid_file_loads_with_its_fields(tmp_path: Path) -> None:
    code = {"kind": "code", "entry_point": "add", "tests": ["assert add(2, 3) == 5"]}
    items = load_items(_file(tmp_path, _row(), _row(id="code-y-0001", category="code", family="y", grader=code)))
    assert [item.kind for item in items] == ["aliases", "code"]
    assert items[0].prompt == "What is the capital of France?"
    assert items[1].messages == ({"role": "user", "content": "What is the capital of France?"},)
