"""Generate the labelled cache-pair dataset: `python -m scripts.cache_pairs [--seed N] [--out PATH]`.

Each template family (scripts/cache_pair_families.py) asks one question in several wordings over slot
values. Paraphrase pairs take two wordings of one case (label "same", class = how the second wording
differs: reworded, reordered, synonyms, contractions, question_form); near-miss pairs change one thing that
changes the answer (label "different", class = what changed: number, identifier, entity, negation,
antonym, direction, unit, year, language, programming_language, operator, code, quoted, url, email,
question, attribute). Whole families go to one split, so the test split's wordings are never seen in
training. Same seed, same file, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts.cache_pair_families import FAMILIES, Bump, Family, Reverse, Swap, Variant

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "services/router/calibration/data/cache_pairs.jsonl"
DEFAULT_SEED = 15
TEST_SHARE = 0.4
PER_FAMILY = 5  # paraphrase pairs and near-miss pairs drawn from each family (when it has that many)
_LAST_DIGITS = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    label: str  # "same" | "different"
    cls: str
    family: str
    split: str  # "train" | "test"

    def to_json(self) -> str:
        return json.dumps({"a": self.a, "b": self.b, "label": self.label, "class": self.cls,
                           "family": self.family, "split": self.split}, ensure_ascii=False)


def generate(seed: int = DEFAULT_SEED) -> list[Pair]:
    rng = random.Random(seed)
    splits = assign_splits(FAMILIES, rng)
    pairs: list[Pair] = []
    for family in FAMILIES:
        split = splits[family.name]
        pairs += _draw(rng, list(_paraphrases(family)), family, "same", split)
        pairs += _draw(rng, _interleave(_near_misses(family, rng)), family, "different", split, ordered=True)
    return pairs


def assign_splits(families: tuple[Family, ...], rng: random.Random) -> dict[str, str]:
    """Stratified by each family's first near-miss class: every class lands in both splits when it can."""
    groups: dict[str, list[str]] = {}
    for family in families:
        groups.setdefault(family.near[0].cls, []).append(family.name)
    splits: dict[str, str] = {}
    for _cls, names in sorted(groups.items()):
        rng.shuffle(names)
        test = max(1, round(len(names) * TEST_SHARE)) if len(names) > 1 else 0
        splits.update({name: "test" if i < test else "train" for i, name in enumerate(names)})
    return splits


def write(pairs: list[Pair], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(pair.to_json() + "\n" for pair in pairs))


def _draw(rng: random.Random, candidates: list[tuple[str, str, str]], family: Family, label: str,
          split: str, *, ordered: bool = False) -> list[Pair]:
    """PER_FAMILY distinct pairs: a random sample, or the first ones when the candidates are already mixed."""
    unique = list(dict.fromkeys((a, b, cls) for a, b, cls in candidates if a != b))
    chosen = unique[:PER_FAMILY] if ordered else rng.sample(unique, min(PER_FAMILY, len(unique)))
    out = []
    for a, b, cls in chosen:
        if rng.random() < 0.5:
            a, b = b, a
        out.append(Pair(a, b, label, cls, family.name, split))
    return out


def _interleave(per_change: list[list[tuple[str, str, str]]]) -> list[tuple[str, str, str]]:
    """Each change's candidates shuffled in turn, so a family's draws spread over its kinds of near miss."""
    out = []
    for index in range(max(map(len, per_change), default=0)):
        out += [candidates[index] for candidates in per_change if index < len(candidates)]
    return out


def _paraphrases(family: Family) -> Iterator[tuple[str, str, str]]:
    """The first wording against each other one (class: the other's tag), for every case."""
    base, *others = family.forms
    for case in family.cases:
        for template, tag in others:
            yield base[0].format(**case), template.format(**case), tag


def _near_misses(family: Family, rng: random.Random) -> list[list[tuple[str, str, str]]]:
    """Per change, its candidate pairs in random order."""
    per_change = []
    for change in family.near:
        candidates = []
        for case in family.cases:
            template = rng.choice(family.forms)[0]
            other = rng.choice(family.forms)[0]  # the near miss is often worded differently too
            if isinstance(change, Variant):
                candidates.append((template.format(**case), rng.choice(change.templates).format(**case), change.cls))
                continue
            changed = _changed(change, case, family, rng)
            if changed is not None:
                candidates.append((template.format(**case), other.format(**changed), change.cls))
        rng.shuffle(candidates)
        per_change.append(candidates)
    return per_change


def _changed(change: Swap | Reverse | Bump, case: dict[str, str], family: Family, rng: random.Random
             ) -> dict[str, str] | None:
    if isinstance(change, Reverse):
        return {**case, change.first: case[change.second], change.second: case[change.first]}
    if isinstance(change, Bump):
        value = case[change.slot]
        digits = _LAST_DIGITS.search(value)
        if digits is None:
            return None
        bumped = int(digits.group(1)) + rng.choice(change.deltas)
        if bumped < 0:
            return None
        return {**case, change.slot: value[:digits.start()] + str(bumped) + value[digits.end():]}
    others = sorted({c[change.slot] for c in family.cases} - set(case.values()))
    return {**case, change.slot: rng.choice(others)} if others else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.cache_pairs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON lines")
    args = parser.parse_args(argv)
    pairs = generate(args.seed)
    write(pairs, args.out)
    same = sum(p.label == "same" for p in pairs)
    test = sum(p.split == "test" for p in pairs)
    print(f"{len(pairs)} pairs ({same} paraphrases, {len(pairs) - same} near misses; {test} in the test split) "
          f"from {len(FAMILIES)} families -> {args.out}")


if __name__ == "__main__":
    main()
