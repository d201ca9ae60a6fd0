"""The `grade` step: mark each recorded answer right or wrong, by its prompt's grader.

Whether a draft was right is the label everything after this learns from (which threshold keeps
accuracy, which signal predicts a wrong draft), so grading is by reference wherever there is one
(graders.py), by running the code for code items (sandbox.py), and by an LLM judge only for items
that have no reference (judge.py). An answer that cannot be graded (the judge failed or stated no
score) gets no record: it is left out rather than guessed, and the next run tries it again.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.router.calibration.dataset import DATASET, Item, load_items
from services.router.calibration.graders import REFERENCE_KINDS, Verdict, grade_reference
from services.router.calibration.interrupt import run_interruptibly
from services.router.calibration.jsonl import Appender, read_jsonl
from services.router.calibration.sandbox import DEFAULT_LIMITS, Limits, extract_code, run_tests
from services.router.calibration.traces import DEFAULT_TRACES, Key, Trace, load_traces
from shared.config import load_config

if TYPE_CHECKING:  # the openai client's modules load in run(), so `--help` stays quick
    from services.router.upstream import Tier

VERSION = 1
DEFAULT_GRADES = Path(".data/calibration/grades.jsonl")

HELP = "mark each recorded answer right or wrong by its prompt's grader (reference, tests, or an LLM judge)"
DESCRIPTION = """\
Read the answers `collect` recorded (--traces) and grade each by its prompt's grader in the prompt set
(--prompts): by reference (any of the accepted aliases appears; the answer's number equals the expected
one, thousands separators and "The answer is 42." understood; the whole answer equals; a regex matches;
checkable constraints such as a word limit, a number of lines or list items, a required word); by running
the answer's code (from its ``` fence, or the raw text) against the item's tests in a separate `python -I`
with limits on time, CPU, memory and output; or, for items without a reference, by an LLM judge: the
heavyweight tier of --config scores the answer 1-5 against the item's rubric, right at 3 or more.

One JSON line per answer is appended to --out (.data/calibration/grades.jsonl): id, tier, correct, method,
the judge's score, and a short reason. Resumable: answers already graded are skipped. Answers the judge
could not grade (it failed or stated no score) are left out and counted; --no-judge skips judge items.

Exit status: 0 when every answer is graded (judge items skipped by --no-judge aside), 1 when some could not
be, 2 when the judge's upstream refused the requests, 130 when interrupted."""

DEFAULT_CONCURRENCY = 2


@dataclass(frozen=True)
class Grade:
    id: str
    tier: str
    correct: bool
    method: str  # the grader kind: aliases, number, exact, regex, code, constraints, judge
    score: int | None  # the judge's 1-5; None for every other method
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"v": VERSION, "id": self.id, "tier": self.tier, "correct": self.correct, "method": self.method,
                "score": self.score, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grade:
        return cls(str(data["id"]), str(data["tier"]), bool(data["correct"]), str(data["method"]),
                   data.get("score"), str(data.get("detail") or ""))


@dataclass
class Tally:
    graded: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (tier, correct) -> answers
    methods: Counter[str] = field(default_factory=Counter)
    ungraded: list[str] = field(default_factory=list)


def read_grades(path: Path) -> dict[Key, Grade]:
    """(id, tier) -> its grade; the last record of a pair counts."""
    return {(g.id, g.tier): g for g in (Grade.from_json(r) for r in read_jsonl(path))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES,
                        help=f"the answers `collect` recorded (default: {DEFAULT_TRACES})")
    parser.add_argument("--prompts", type=Path, default=DATASET,
                        help="the prompt set they answer, with each prompt's grader (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_GRADES,
                        help=f"grades file, appended to (default: {DEFAULT_GRADES})")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"),
                        help="config YAML; its heavyweight tier is the judge (default: config.yaml)")
    parser.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True,
                        help="grade items without a reference with the LLM judge (default: on); --no-judge "
                             "leaves them ungraded")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"answers graded at once: code runs and judge calls (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--code-time-s", type=float, default=Limits.time_s,
                        help=f"wall-clock limit of one code run (default {Limits.time_s:g})")
    parser.add_argument("--code-cpu-s", type=int, default=Limits.cpu_s,
                        help=f"CPU-seconds limit of one code run (default {Limits.cpu_s})")
    parser.add_argument("--code-memory-mb", type=int, default=Limits.memory_mb,
                        help=f"address-space limit of one code run in MB (default {Limits.memory_mb})")
    parser.add_argument("--retries", type=int, default=4, help="retries of a failing judge call (default 4)")
    parser.add_argument("--backoff-s", type=float, default=1.0,
                        help="first retry's wait, doubled per retry and jittered (default 1.0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from services.router.calibration.retry import Refused

    items = {item.id: item for item in load_items(args.prompts)}
    traces = load_traces(args.traces)
    done = set(read_grades(args.out))
    todo, skipped = plan(traces.values(), items, done, args.judge)
    print(f"{len(traces)} answers in {args.traces}: {len(done & set(traces))} already graded, {len(todo)} to grade"
          + "".join(f", {n} {why}" for why, n in sorted(skipped.items())) + f" -> {args.out}")
    tally = Tally()
    try:
        run_interruptibly(grade_all(todo, items, args, tally))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {sum(tally.graded.values())} grades written to {args.out}; run again to do the rest",
              file=sys.stderr)
        return 130
    except Refused as exc:
        print(f"grade: the judge's {exc}", file=sys.stderr)
        return 2
    _summary(read_grades(args.out), tally)
    return 1 if tally.ungraded else 0


def plan(traces: Iterable[Trace], items: Mapping[str, Item], done: set[Key],
         use_judge: bool) -> tuple[list[Trace], Counter[str]]:
    """The answers to grade now, and why the others are not graded (counted)."""
    todo: list[Trace] = []
    skipped: Counter[str] = Counter()
    for trace in traces:
        item = items.get(trace.id)
        if trace.key in done:
            continue
        if not trace.ok:
            skipped["failed in collect"] += 1
        elif item is None:
            skipped["not in the prompt set"] += 1
        elif item.kind == "judge" and not use_judge:
            skipped["judge items skipped (--no-judge)"] += 1
        else:
            todo.append(trace)
    return todo, skipped


async def grade_all(todo: Sequence[Trace], items: Mapping[str, Item], args: argparse.Namespace,
                    tally: Tally) -> None:
    """Grade with at most --concurrency code runs or judge calls at once, appending each grade."""
    from tqdm import tqdm

    from services.router.calibration.judge import NoScore
    from services.router.calibration.retry import GaveUp, Refused
    from services.router.upstream import create_tier

    needs_judge = any(items[t.id].kind == "judge" for t in todo)
    # The judge call is retried here (--retries): the tier's own retries would repeat it unseen.
    judge_tier = create_tier("heavyweight", dataclasses.replace(load_config(args.config, os.environ).heavyweight,
                                                                retries=0), os.environ) if needs_judge else None
    limits = Limits(time_s=args.code_time_s, cpu_s=args.code_cpu_s, memory_mb=args.code_memory_mb)
    rng = random.Random()
    queue = iter(todo)
    try:
        with Appender(args.out) as out, tqdm(total=len(todo), desc="grade", unit="answer", disable=args.quiet,
                                             file=sys.stderr) as bar:
            async def worker() -> None:
                for trace in queue:
                    item = items[trace.id]
                    try:
                        verdict = await grade_one(trace, item, judge_tier, limits, args, rng)
                    except (GaveUp, NoScore) as exc:
                        tally.ungraded.append(f"{trace.id} ({trace.tier}): {exc}")
                    else:
                        grade = Grade(trace.id, trace.tier, verdict.correct, item.kind, verdict.score, verdict.detail)
                        out.append(grade.to_json())
                        tally.graded[(trace.tier, grade.correct)] += 1
                        tally.methods[grade.method] += 1
                    bar.update(1)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(max(1, min(args.concurrency, len(todo)))):
                        group.create_task(worker())
            except* Refused as refused:
                raise refused.exceptions[0] from None
    finally:
        if judge_tier is not None:
            await judge_tier.client.close()


async def grade_one(trace: Trace, item: Item, judge_tier: Tier | None, limits: Limits, args: argparse.Namespace,
                    rng: random.Random) -> Verdict:
    """The verdict on one answer by its item's grader."""
    from services.router.calibration.judge import judge
    from services.router.calibration.retry import with_retries

    kind = item.kind
    if kind in REFERENCE_KINDS:
        return grade_reference(trace.text, item.grader)
    if kind == "code":
        return await asyncio.to_thread(grade_code, trace.text, item.grader, limits)
    if kind == "judge":
        if judge_tier is None:
            raise RuntimeError("a judge item with no judge tier")
        if not trace.text.strip():
            return Verdict(False, "empty answer")
        verdict, _attempts = await with_retries(
            lambda: judge(judge_tier, item.prompt, str(item.grader["rubric"]), trace.text),
            args.retries, args.backoff_s, rng)
        return verdict
    raise ValueError(f"{item.id}: grader kind {kind!r} unknown to grade")


def grade_code(text: str, grader: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> Verdict:
    """Extract the answer's code and run the item's tests against it."""
    if not text.strip():
        return Verdict(False, "empty answer")
    code = extract_code(text, str(grader["entry_point"]))
    return run_tests(code, [str(t) for t in grader["tests"]], limits)


def _summary(grades: Mapping[Key, Grade], tally: Tally) -> None:
    for tier in ("drafter", "heavyweight"):
        mine = [g for g in grades.values() if g.tier == tier]
        if mine:
            right = sum(g.correct for g in mine)
            print(f"{tier}: {right}/{len(mine)} right ({right / len(mine):.1%})")
    if tally.methods:
        print("graded now: " + ", ".join(f"{n} by {m}" for m, n in sorted(tally.methods.items())))
    if tally.ungraded:
        print(f"{len(tally.ungraded)} answers could not be graded (run again to retry them):", file=sys.stderr)
        for line in tally.ungraded[:10]:
            print(f"  {line}", file=sys.stderr)
