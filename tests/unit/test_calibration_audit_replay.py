"""bench.calibration_audit's stand-in heavyweight: for every item of the shipped set that has a reference, the
answer it gives is graded right by the item's own grader (code by running its tests), and items without one
(creative constraints, judge items) get none."""

from __future__ import annotations

from bench.calibration_audit import code_references, reference_answer
from services.router.calibration.dataset import DATASET, load_items
from services.router.calibration.graders import grade_reference
from services.router.calibration.sandbox import extract_code, run_tests


def test_every_reference_answer_is_right_by_its_items_grader() -> None:
    items, code = load_items(DATASET), code_references()
    answered = {kind: 0 for kind in ("aliases", "number", "exact", "regex", "code")}
    for item in items:
        answer = reference_answer(item, code)
        kind = item.grader["kind"]
        if kind in ("constraints", "judge"):
            assert answer is None
            continue
        assert answer is not None, item.id
        answered[kind] += 1
        if kind != "code":
            assert grade_reference(answer, item.grader).correct, (item.id, answer)
    assert all(answered.values())
    sample = next(item for item in items if item.grader["kind"] == "code")
    entry_point = sample.grader["entry_point"]
    verdict = run_tests(extract_code(reference_answer(sample, code) or "", entry_point), sample.grader["tests"])
    assert verdict.correct, verdict.detail
