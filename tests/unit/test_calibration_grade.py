"""Every grader on right answers, wrong answers and the edge cases a small model produces: numbers with
thousands separators or a trailing full stop, aliases in another case or with punctuation, code that
loops forever, allocates 10 GB, exits early or does not parse (graded wrong, never hanging the grader),
and a judge that answers in prose."""

from __future__ import annotations

import time

import pytest

from services.router.calibration.grade import grade_code
from services.router.calibration.graders import (
    answer_number,
    contains_phrase,
    grade_reference,
    list_items,
    normalise,
)
from services.router.calibration.judge import parse_judgement
from services.router.calibration.sandbox import Limits, extract_code, run_tests

FAST = Limits(time_s=10, cpu_s=1, memory_mb=256)


def right(text: str, spec: dict) -> bool:
    return grade_reference(text, spec).correct


# --- aliases ------------------------------------------------------------------------------------

CAPITAL = {"kind": "aliases", "answers": ["Paris"]}


@pytest.mark.parametrize("text", ["Paris", "The capital of France is Paris.", "PARIS!", "It's paris, of course",
                                  "**Paris**", "\"Paris\""])
def test_an_alias_is_found_whatever_its_case_and_punctuation(text: str) -> None:
    assert right(text, CAPITAL)


@pytest.mark.parametrize("text", ["Lyon", "Parisian food is great", "The capital is Pari", ""])
def test_an_alias_must_appear_as_whole_words(text: str) -> None:
    assert not right(text, CAPITAL)


def test_aliases_match_across_accents_and_punctuation_inside_them() -> None:
    brasilia = {"kind": "aliases", "answers": ["Brasília"]}
    assert right("The capital of Brazil is Brasilia.", brasilia)
    washington = {"kind": "aliases", "answers": ["Washington, D.C."]}
    assert right("It is Washington DC", washington) is False  # "d c" is two words; list "DC" as an alias
    assert right("It is Washington, D.C.", washington)
    assert right("It is Washington D.C", washington)


def test_any_alias_will_do_and_the_detail_says_which() -> None:
    verdict = grade_reference("Gold has the symbol Au.", {"kind": "aliases", "answers": ["Au", "aurum"]})
    assert verdict.correct and "Au" in verdict.detail


def test_a_number_alias_is_not_found_inside_a_longer_number() -> None:
    spec = {"kind": "aliases", "answers": ["4"]}
    assert not right("There are 14 of them", spec)
    assert not right("About 4.5", spec)
    assert right("There are 4.", spec)
    assert contains_phrase("1,000 people", "1000")


# --- number -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), ("The answer is 42.", 42), ("1,234", 1234), ("It costs $1,234,567.50 in all", 1234567.5),
    ("17 * 23 = 391\nThe answer is indeed 391.", 391), ("The temperature is -5 degrees", -5),
    ("5-3 = 2", 2), ("The answer is 12. Let me know if you have 2 more questions.", 12),
    ("The answer is 6 x 7 = 42", 42), ("#### 18", 18), ("so \\boxed{7} apples", 7), ("**Answer:** 3.25 km", 3.25),
    ("She has twelve apples.", 12), ("forty-two", 42), ("Version B12 of 3 cars", 3), ("3.14159", 3.14159),
])
def test_the_answers_number_is_read_as_people_write_it(text: str, expected: float) -> None:
    assert answer_number(text) == pytest.approx(expected)


def test_no_number_at_all_is_wrong_with_a_reason() -> None:
    verdict = grade_reference("I don't know.", {"kind": "number", "value": 42})
    assert not verdict.correct and "no number" in verdict.detail


def test_a_number_grade_is_exact_unless_a_tolerance_is_given() -> None:
    assert right("The answer is 42.", {"kind": "number", "value": 42, "tolerance": 0})
    assert not right("The answer is 43.", {"kind": "number", "value": 42})
    assert not right("42 then 43", {"kind": "number", "value": 42})  # the final number counts
    assert right("about 3.14", {"kind": "number", "value": 3.14159, "tolerance": 0.01})
    assert not right("about 3.2", {"kind": "number", "value": 3.14159, "tolerance": 0.01})
    assert right("0.1 + 0.2 = 0.30000000000000004", {"kind": "number", "value": 0.3, "tolerance": 1e-9})
    verdict = grade_reference("It is 1,000", {"kind": "number", "value": 999})
    assert verdict.detail == "answer 1000, expected 999"


# --- exact and regex ----------------------------------------------------------------------------


def test_exact_compares_the_whole_normalised_answer() -> None:
    spec = {"kind": "exact", "answer": "yes"}
    assert right("Yes.", spec) and right("  YES ", spec)
    assert not right("Yes, it is.", spec)
    assert normalise("Washington, D.C.") == "washington d c"
    assert normalise("1,234.5 km.") == "1234.5 km"


def test_regex_searches_case_insensitively_anywhere() -> None:
    spec = {"kind": "regex", "pattern": r"\bO\(n log n\)"}
    assert right("Merge sort runs in o(n log n) time", spec)
    assert not right("It is O(n^2)", spec)


def test_an_empty_answer_is_wrong_whatever_the_grader() -> None:
    for spec in (CAPITAL, {"kind": "number", "value": 0}, {"kind": "exact", "answer": "x"},
                 {"kind": "regex", "pattern": ".*"}, {"kind": "constraints", "checks": [{"kind": "max_words",
                                                                                         "value": 5}]}):
        verdict = grade_reference("   \n", spec)
        assert not verdict.correct and verdict.detail == "empty answer"


def test_the_code_and_judge_kinds_are_not_reference_graders() -> None:
    with pytest.raises(ValueError, match="not a reference grader"):
        grade_reference("x", {"kind": "judge", "rubric": "r"})


# --- constraints --------------------------------------------------------------------------------


def constraints(*checks: tuple[str, object]) -> dict:
    return {"kind": "constraints", "checks": [{"kind": kind, "value": value} for kind, value in checks]}


def test_word_limits_count_words_not_punctuation() -> None:
    assert right("The sea is calm - and blue.", constraints(("max_words", 6), ("min_words", 6)))
    assert not right("one two three four", constraints(("max_words", 3)))
    assert not right("one two", constraints(("min_words", 3)))


def test_lines_count_non_empty_lines() -> None:
    haiku = "An old silent pond\n\nA frog jumps into the pond\nsplash! Silence again\n"
    assert right(haiku, constraints(("lines", 3)))
    assert not right("one line only", constraints(("lines", 3)))


def test_list_items_are_bulleted_or_numbered_lines_else_every_line() -> None:
    assert len(list_items("Fruits:\n- apple\n* pear\n3. plum\n")) == 3
    assert len(list_items("apple\npear\nplum")) == 3
    assert right("Here:\n1) red\n2) green\n3) blue", constraints(("items", 3)))
    assert not right("- red\n- green", constraints(("items", 3)))


def test_contains_and_excludes_are_word_bounded_and_case_insensitive() -> None:
    spec = constraints(("contains", "sea"), ("excludes", "storm"))
    assert right("The Sea at dawn.", spec)
    assert not right("The seashore at dawn.", spec)
    assert not right("The sea in a storm.", spec)
    assert right("The sea brainstorming", spec)


def test_starts_and_ends_with_skip_quotes_and_markdown_and_respect_words() -> None:
    spec = constraints(("starts_with", "Once upon a time"), ("ends_with", "the end"))
    assert right('"Once upon a time, a fox... The End."', spec)
    assert right("**Once upon a time** there was a fox. The end", spec)
    assert not right("There once was a fox. The end", spec)
    assert not right("Once upon a timeline... the end", spec)


def test_constraints_fail_on_the_first_broken_check_and_name_it() -> None:
    verdict = grade_reference("a b c d e f", constraints(("contains", "a"), ("max_words", 3), ("lines", 1)))
    assert not verdict.correct and verdict.detail.startswith("failed max_words: 6 words")
    with pytest.raises(ValueError, match="unknown constraint check 'rhymes'"):
        grade_reference("x", constraints(("rhymes", True)))


# --- code ---------------------------------------------------------------------------------------

ADD = {"kind": "code", "entry_point": "add", "tests": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]}


def test_fenced_code_that_passes_every_test_is_right() -> None:
    answer = "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds two numbers."
    verdict = grade_code(answer, ADD, FAST)
    assert verdict.correct and verdict.detail == "2/2 tests passed"


def test_code_failing_a_test_is_wrong_and_the_detail_names_the_test() -> None:
    verdict = grade_code("def add(a, b):\n    return a - b\n", ADD, FAST)
    assert not verdict.correct
    assert verdict.detail.startswith("0/2 tests passed; assert add(2, 3) == 5: AssertionError")


def test_code_with_a_syntax_error_is_wrong() -> None:
    verdict = grade_code("```python\ndef add(a, b)\n    return a + b\n```", ADD, FAST)
    assert not verdict.correct
    assert "SyntaxError" in verdict.detail or "NameError" in verdict.detail


def test_code_that_loops_forever_is_killed_and_wrong() -> None:
    started = time.monotonic()
    verdict = grade_code("def add(a, b):\n    while True:\n        pass\n", ADD, FAST)
    assert not verdict.correct and verdict.detail.startswith("killed")
    assert time.monotonic() - started < FAST.time_s + 5  # the limit stopped it, not the test's timeout


def test_code_that_sleeps_past_the_wall_clock_limit_is_killed_with_its_children() -> None:
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "time.sleep(60)\n")
    verdict = run_tests(code, ["assert add(1, 1) == 2"], Limits(time_s=1, cpu_s=1, memory_mb=256))
    assert not verdict.correct and verdict.detail == "killed: no result within 1 s"


def test_code_that_allocates_10_gb_is_refused_the_memory_and_wrong() -> None:
    verdict = grade_code("def add(a, b):\n    block = bytearray(10 * 1024 ** 3)\n    return a + b\n", ADD, FAST)
    assert not verdict.correct and "MemoryError" in verdict.detail


def test_code_that_exits_before_the_tests_cannot_pass_for_right() -> None:
    for exit_call in ("import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit(0)"):
        verdict = grade_code(f"def add(a, b):\n    return a + b\n{exit_call}\n", ADD, FAST)
        assert not verdict.correct, exit_call


def test_code_that_prints_without_end_is_stopped_by_the_output_limit() -> None:
    verdict = run_tests("while True:\n    print('x' * 10000)\n", ["assert add(1, 1) == 2"],
                        Limits(time_s=20, cpu_s=5, memory_mb=256, file_mb=1))
    assert not verdict.correct


def test_a_main_block_and_input_do_not_run_or_block() -> None:
    answer = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(int(input()), 1))\n"
    assert grade_code(answer, ADD, FAST).correct


def test_an_empty_answer_is_wrong_without_running_anything() -> None:
    assert grade_code("", ADD, FAST).detail == "empty answer"


@pytest.mark.parametrize(("answer", "code"), [
    ("```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```",
     "def add(a, b):\n    return a + b\n"),
    ("```\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a + b\n"),
    ("```python\ndef add(a, b):\n    return a + b\n\nprint(add(1,", "def add(a, b):\n    return a + b\n"),
    ("Sure! Here it is:\ndef add(a, b):\n    return a + b\nThis returns the sum.",
     "def add(a, b):\n    return a + b\n"),
    ("```python\nimport math\n```\n```python\ndef hyp(a, b):\n    return math.hypot(a, b)\n```",
     "import math\n\ndef hyp(a, b):\n    return math.hypot(a, b)\n"),
])
def test_the_code_is_taken_from_its_fence_or_the_raw_text(answer: str, code: str) -> None:
    assert extract_code(answer, "add") == code


# --- the judge's answer -------------------------------------------------------------------------


@pytest.mark.parametrize(("said", "score"), [
    ('{"score": 4, "reasoning": "good"}', 4), ('```json\n{"score": 2, "reasoning": "meh"}\n```', 2),
    ('Here you go: {"score": "3", "reasoning": "ok"}', 3), ("Score: 5\nGreat answer.", 5),
    ("I would rate this 2/5.", 2), ("I'd give it 4 out of 5", 4), ("3", 3), ("**Score:** 1", 1),
    ("The score is 1.", 1), ("I give it a score of 4 because it is kind.", 4),
])
def test_the_judges_score_is_read_from_json_or_prose(said: str, score: int) -> None:
    judgement = parse_judgement(said)
    assert judgement is not None and judgement.score == score


@pytest.mark.parametrize("said", ["", "The answer is fine.", '{"score": 7}', "Score: 10/10", '{"score": true}'])
def test_no_score_from_one_to_five_is_no_judgement(said: str) -> None:
    assert parse_judgement(said) is None


# --- the shipped prompt set ---------------------------------------------------------------------


def shipped() -> list:
    from scripts.calibration_prompts import generate

    return generate()


def test_every_shipped_reference_answer_written_as_a_model_writes_it_is_graded_right() -> None:
    checked = 0
    for entry in shipped():
        item, grader = entry.item, entry.item.grader
        if item.kind == "aliases":
            answer = f"I think the answer is {grader['answers'][0]}."
        elif item.kind == "number":
            value = grader["value"]
            answer = f"Let me work it out.\nThe answer is {value:,}." if value == int(value) else f"It is {value}."
        elif item.kind == "exact":
            answer = f"{grader['answer'].upper()}."
        else:
            continue
        verdict = grade_reference(answer, grader)
        assert verdict.correct, (item.id, answer, verdict.detail)
        checked += 1
    assert checked >= 300


def test_the_reference_solution_of_every_shipped_code_family_passes_in_the_sandbox() -> None:
    firsts = {}
    for entry in shipped():
        if entry.item.kind == "code":
            firsts.setdefault(entry.item.family, entry)
    assert len(firsts) >= 20
    for entry in firsts.values():
        answer = f"Here is the function:\n```python\n{entry.reference}\n```\nIt does what was asked."
        verdict = grade_code(answer, entry.item.grader)
        assert verdict.correct, (entry.item.id, verdict.detail)


def test_a_punctuation_only_ending_or_opening_is_checked_on_the_raw_text() -> None:
    """Normalising strips punctuation: "ends with ?" compares the trimmed reply itself."""
    from services.router.calibration.graders import grade_constraints

    asks = {"checks": [{"kind": "ends_with", "value": "?"}]}
    assert grade_constraints("What would you do then?", asks).correct
    assert grade_constraints("What would you do then? ", asks).correct
    assert not grade_constraints("You would do this.", asks).correct
    opens = {"checks": [{"kind": "starts_with", "value": "-"}]}
    assert grade_constraints("- first item", opens).correct
    assert not grade_constraints("first item", opens).correct
