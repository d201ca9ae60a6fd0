"""The labelled cache-pair dataset: reproducible from its seed, shipped as generated, balanced and varied."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from scripts import cache_pairs
from scripts.cache_pair_families import FAMILIES
from services.cache.normalise import key_form, semantic_form
from services.router.calibration.cache_pairs import pairs

NEAR_MISS_CLASSES = {"number", "identifier", "entity", "negation", "antonym", "direction", "unit", "year", "language",
                     "programming_language", "operator"}
PARAPHRASE_CLASSES = {"reworded", "reordered", "synonyms", "contractions", "question_form"}


def test_same_seed_same_file_and_the_shipped_file_is_the_generators_output(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    cache_pairs.main(["--out", str(first)])
    cache_pairs.write(cache_pairs.generate(cache_pairs.DEFAULT_SEED), second)
    assert first.read_bytes() == second.read_bytes() == cache_pairs.DEFAULT_OUT.read_bytes()
    assert cache_pairs.DEFAULT_OUT == pairs.DATASET


def test_another_seed_draws_and_splits_differently() -> None:
    one, other = cache_pairs.generate(1), cache_pairs.generate(2)
    assert [p.to_json() for p in one] != [p.to_json() for p in other]
    assert {p.family: p.split for p in one} != {p.family: p.split for p in other}


def test_counts_labels_and_classes() -> None:
    shipped = pairs.load()
    assert len(shipped) >= 400
    same = sum(p.same for p in shipped)
    assert 0.45 <= same / len(shipped) <= 0.55
    near_classes = Counter(p.cls for p in shipped if not p.same)
    assert set(near_classes) >= NEAR_MISS_CLASSES
    assert {p.cls for p in shipped if p.same} == PARAPHRASE_CLASSES
    test_near = {p.cls for p in shipped if not p.same and p.split == "test"}
    assert test_near >= NEAR_MISS_CLASSES  # every class is measured on unseen families too
    assert len(FAMILIES) >= 60


def test_split_by_family_never_shares_a_family_or_a_wording() -> None:
    shipped = pairs.load()
    split_of: dict[str, set[str]] = {}
    for pair in shipped:
        split_of.setdefault(pair.family, set()).add(pair.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    texts = {split: {t for p in shipped if p.split == split for t in (p.query, p.cached)} for split in pairs.SPLITS}
    assert not texts["train"] & texts["test"]
    assert 0.3 <= sum(p.split == "test" for p in shipped) / len(shipped) <= 0.5


def test_no_near_miss_collapses_to_one_exact_key() -> None:
    for pair in pairs.load():
        if not pair.same:
            assert key_form(pair.query) != key_form(pair.cached), pair


def test_pairs_are_distinct_and_every_text_has_a_semantic_form() -> None:
    generated = cache_pairs.generate(cache_pairs.DEFAULT_SEED)
    assert len({(p.a, p.b) for p in generated}) == len(generated)
    assert all(p.a != p.b and semantic_form(p.a) and semantic_form(p.b) for p in generated)
