"""The labelled cache pairs (scripts/cache_pairs.py writes them): read, and put in the cache's own text forms."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.cache.normalise import key_form, semantic_form

DATASET = Path(__file__).resolve().parent.parent / "data" / "cache_pairs.jsonl"
LABELS = ("same", "different")
SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """query: the new request; cached: the stored one; both in semantic form, as the cache sees them."""

    query: str
    cached: str
    same: bool  # a paraphrase: the cached answer answers the query
    cls: str
    family: str
    split: str

    @property
    def exact(self) -> bool:
        """The two share an exact key (normalisation alone makes the hit): no verifier runs."""
        return key_form(self.query) == key_form(self.cached)


def load(path: str | Path = DATASET) -> list[LabelledPair]:
    pairs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, cached = semantic_form(row["a"]), semantic_form(row["b"])
            if row["label"] not in LABELS or row["split"] not in SPLITS or not query or not cached:
                raise ValueError("label must be same|different, split train|test, and both texts non-empty")
            pairs.append(LabelledPair(query, cached, row["label"] == "same", str(row["class"]),
                                      str(row.get("family", "")), row["split"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled pair ({exc})") from exc
    return pairs


def texts(pairs: list[LabelledPair]) -> list[str]:
    """Every distinct text, in first-seen order: what needs embedding."""
    return list(dict.fromkeys(t for p in pairs for t in (p.query, p.cached)))
