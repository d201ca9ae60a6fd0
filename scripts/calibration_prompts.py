"""Generate the calibration prompt set: `python -m scripts.calibration_prompts [--seed N] [--out PATH]`.

Every family (scripts/calibration_prompt_families.py, scripts/calibration_code_tasks.py) asks one kind of
question in one of the four categories draft-thinker routes: simple factual (graded by aliases, a number,
or a yes/no pattern), multi-step reasoning (word problems whose numbers the seed draws, graded by the
number they make; a few one-word puzzles graded exactly), code generation (a Python function, graded by
running the item's asserts) and ambiguous/creative (checkable constraints: lines, words, list items,
required or banned words, how it starts or ends; the judge's rubric where nothing is checkable).

The split is by whole family (no template of the test split is ever seen in training), stratified by
category and grader kind (factual aliases, factual numbers, creative constraints, creative judge...):
within each stratum the families are shuffled by the seed, and each goes to the test split when that
brings the stratum's test share nearer 30%, so every stratum of two or more families is in both splits.
Each family draws from its own generator (seeded by the seed and its name), so adding a family leaves
the others' items unchanged. The lines are written in an order shuffled by the seed, so the first N
(collect --limit N) mix all four categories.
Same seed, same file, byte for byte.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from scripts.calibration_prompt_families import FAMILIES, Draft, Family
from services.router.calibration.dataset import CATEGORIES, DATASET, Item

DEFAULT_OUT = DATASET
DEFAULT_SEED = 11
TEST_SHARE = 0.3


@dataclass(frozen=True, slots=True)
class Entry:
    item: Item
    reference: str | None  # code items: a solution that passes the item's tests


def generate(seed: int = DEFAULT_SEED, families: tuple[Family, ...] = FAMILIES) -> list[Entry]:
    drafts = {family.name: family.build(random.Random(f"{seed}/{family.name}")) for family in families}
    splits = assign_splits(families, drafts, random.Random(f"{seed}/split"))
    entries = [_entry(family, index, draft, splits[family.name])
               for family in families for index, draft in enumerate(drafts[family.name], start=1)]
    random.Random(f"{seed}/order").shuffle(entries)
    return entries


def assign_splits(families: tuple[Family, ...], drafts: dict[str, list[Draft]], rng: random.Random
                  ) -> dict[str, str]:
    """Per stratum (category, grader kind), shuffled families go to test while that brings the stratum's
    test share nearer TEST_SHARE."""
    strata: dict[tuple[str, str], list[str]] = {}
    for family in families:
        strata.setdefault((family.category, drafts[family.name][0].grader["kind"]), []).append(family.name)
    splits: dict[str, str] = {}
    for _stratum, names in sorted(strata.items()):
        rng.shuffle(names)
        target = TEST_SHARE * sum(len(drafts[name]) for name in names)
        test = 0
        for name in names:
            size = len(drafts[name])
            joins = abs(test + size - target) < abs(test - target)
            test += size if joins else 0
            splits[name] = "test" if joins else "train"
    return splits


def write(entries: list[Entry], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(entry.item.dumps() + "\n" for entry in entries), encoding="utf-8")


def _entry(family: Family, index: int, draft: Draft, split: str) -> Entry:
    """Built through Item.from_json, so the generator can only write items that load."""
    row = {"id": f"{family.category}-{family.name}-{index:04d}", "category": family.category, "family": family.name,
           "split": split, "messages": [{"role": "user", "content": draft.prompt}], "max_tokens": draft.max_tokens,
           "grader": draft.grader}
    try:
        return Entry(Item.from_json(row), draft.reference)
    except ValueError as exc:
        raise ValueError(f"family {family.name}, item {index}: {exc}") from exc


def summary(entries: list[Entry]) -> str:
    items = [e.item for e in entries]
    per_category = Counter(item.category for item in items)
    test = sum(item.split == "test" for item in items)
    mean_tokens = sum(item.max_tokens for item in items) / len(items)
    return (f"{len(items)} prompts ({', '.join(f'{per_category[c]} {c}' for c in CATEGORIES)}; {test} in the test "
            f"split) from {len({item.family for item in items})} families, mean max_tokens {mean_tokens:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.calibration_prompts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON lines")
    args = parser.parse_args(argv)
    entries = generate(args.seed)
    write(entries, args.out)
    print(f"{summary(entries)} -> {args.out}")


if __name__ == "__main__":
    main()
