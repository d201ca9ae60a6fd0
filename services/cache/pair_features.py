"""Pure: compare two readings: the rule a pair breaks (a veto), and the features the learned model scores.

The vetoes are the `rules` verifier: literals must match exactly, quantities must have the same units in
the same roles, negation polarity must agree, operators must agree, neither may name a place on a scale the
other does not ("good"/"harmful", "today"/"tomorrow", "plus"/"minus"), questions must ask for the same
kind of answer ("when"/"where"), languages must agree, every named entity of one request must appear in
the other, and what they share must not be swapped around a directional word ("from X to Y").
"""

from __future__ import annotations

import difflib
from collections import Counter

from services.cache import lexicon as lx
from services.cache.reading import Kind, Reading, lemma

# The learned model's inputs, in its coefficient order.
FEATURES: tuple[str, ...] = (
    "cosine", "content_jaccard", "unmatched_max", "unmatched_min", "contained", "length_ratio", "sequence_ratio",
    "scale_unmatched", "frame_swap", "frame_insert")
_EMPTY: Counter[str] = Counter()
_UNIT_KEYS = frozenset(lx.UNITS.values())
_SMALL = 2  # tokens: an edit this small in an otherwise identical sentence is a substitution, not a rewording
_NEAR = 6  # positions apart: "X instead of Y" is 3, "X be used instead of baking Y" 6
_SYMMETRIC = frozenset({"and", "or", "vs", "versus", "between", "both", "either", "with"})


def veto(a: Reading, b: Reading) -> str | None:
    """The first rule the pair breaks, as a rejection reason, or None when the rules let it through."""
    for kind in Kind:
        if a.literals.get(kind, _EMPTY) != b.literals.get(kind, _EMPTY):
            return kind.value
    if a.quantities != b.quantities:
        return "order" if _units(a) == _units(b) else "unit"
    if a.negated != b.negated:
        return "negation"
    if a.operators and b.operators and a.operators != b.operators:
        return "operator"
    scale = _scale_conflict(a, b)
    if scale is not None:
        return scale
    if a.asks and b.asks and not a.asks & b.asks:
        return "question"
    if a.languages != b.languages:
        return "language"
    missing = _missing_entity(a, b) or _missing_entity(b, a)
    if missing is not None:
        return "unit" if missing in _UNIT_KEYS else "entity"
    if _inverted(a.sequence, b.sequence) or _transposed(a.sequence, b.sequence) or (
            a.anchored and b.anchored and a.anchored != b.anchored) or _roles_swapped(a, b):
        return "order"
    return None


def features(a: Reading, b: Reading, similarity: float) -> list[float]:
    """FEATURES for one pair, symmetric in a and b."""
    only_a, only_b = a.content - b.content, b.content - a.content
    union = len(a.content | b.content)
    longest = max(len(a.words), len(b.words), 1)
    matcher = difflib.SequenceMatcher(None, a.sequence, b.sequence, autojunk=False)
    # Edits that touch a content word: "Which river" / "What river" or "Tell me" / "What is" change none.
    edits = [op for op in matcher.get_opcodes() if op[0] != "equal"
             and not set(a.sequence[op[1]:op[2]] + b.sequence[op[3]:op[4]]) <= lx.STOPWORDS]
    one_small_edit = len(edits) == 1 and max(edits[0][2] - edits[0][1], edits[0][4] - edits[0][3]) <= _SMALL
    return [
        similarity,
        len(a.content & b.content) / union if union else 1.0,
        float(max(len(only_a), len(only_b))),
        float(min(len(only_a), len(only_b))),
        1.0 if bool(only_a) != bool(only_b) else 0.0,  # one says all the other does, and more
        min(len(a.words), len(b.words)) / longest,
        matcher.ratio(),
        float(len((set(a.words) ^ set(b.words)) & lx.SCALE_WORDS)),
        # The same sentence with one word or two swapped ("revenue" -> "profit") or added ("descending"):
        # how near misses are made, and rarely how people reword.
        1.0 if one_small_edit and edits[0][0] == "replace" else 0.0,
        1.0 if one_small_edit and edits[0][0] != "replace" else 0.0,
    ]


def _units(reading: Reading) -> set[str]:
    """Every unit named, with a number or without: a swap keeps this set and changes the quantities."""
    return {unit for _, unit in reading.quantities if unit} | (set(reading.entities) & _UNIT_KEYS)


def _scale_conflict(a: Reading, b: Reading) -> str | None:
    """A scale on which each request names a group the other does not (or, for a one-sided scale, either does)."""
    words_a, words_b = set(a.words), set(b.words)
    scales = {scale for word in words_a ^ words_b for scale, _ in lx.SCALE_PLACES.get(word, ())}
    for index in sorted(scales):
        scale = lx.SCALES[index]
        in_a = {g for g, members in enumerate(scale.groups) if members & words_a}
        in_b = {g for g, members in enumerate(scale.groups) if members & words_b}
        if (in_a - in_b and in_b - in_a) or (scale.one_sided and in_a != in_b):
            return scale.reason
    return None


def _missing_entity(a: Reading, b: Reading) -> str | None:
    for entity in a.entities:
        if entity not in b.keys and lemma(entity) not in b.content:
            return entity
    return None


def _roles_swapped(a: Reading, b: Reading) -> bool:
    """A language that is the source of one translation and the target of the other."""
    return any(b.roles.get(language, role) != role for language, role in a.roles.items())


def _inverted(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two things both name, swapped around the same middle (X M Y / Y M X) and joined in both requests by
    the same directional word ("from English to French" / "from French to English", "sour cream instead of
    yogurt" / "yogurt instead of sour cream"). A reworded sentence moves its parts around other shared
    words, so its middles differ ("get from Berlin to Prague fast" / "the fastest way to get from...")."""
    first_a = {key: i for i, key in reversed(list(enumerate(a)))}
    first_b = {key: i for i, key in reversed(list(enumerate(b)))}
    heads = _phrase_heads([key for key in first_a if key in first_b and key not in lx.STOPWORDS], first_a, first_b)
    for i, x in enumerate(heads):
        for y in heads[i + 1:]:
            if (first_a[x] < first_a[y]) == (first_b[x] < first_b[y]):
                continue
            if _between(heads, first_a, x, y) != _between(heads, first_b, x, y):
                continue
            joined_a = _joining(a, first_a[x], first_a[y])
            if joined_a and joined_a & _joining(b, first_b[x], first_b[y]):
                return True
    return False


def _phrase_heads(shared: list[str], first_a: dict[str, int], first_b: dict[str, int]) -> list[str]:
    """The first word of each run of shared words that stand together in both ("sour cream", "New York")."""
    heads: list[str] = []
    previous: str | None = None
    for key in sorted(shared, key=first_a.__getitem__):
        together = previous is not None and first_a[key] == first_a[previous] + 1 and (
            first_b[key] == first_b[previous] + 1)
        if not together:
            heads.append(key)
        previous = key
    return heads


def _between(heads: list[str], first: dict[str, int], x: str, y: str) -> set[str]:
    low, high = sorted((first[x], first[y]))
    return {h for h in heads if low < first[h] < high}


def _joining(sequence: tuple[str, ...], one: int, other: int) -> set[str]:
    """The directional words between two positions, when they are close enough to be one relation."""
    low, high = min(one, other), max(one, other)
    if high - low > _NEAR:
        return set()
    return {lx.DIRECTIONAL[key] for key in sequence[low + 1:high] if key in lx.DIRECTIONAL}


def _transposed(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """b is a with two parts exchanged around a middle that is not a symmetric "and"/"or": X M Y -> Y M X."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    middle_a, middle_b = a[start:len(a) - end], b[start:len(b) - end]
    if len(middle_a) != len(middle_b) or not middle_a:
        return False
    n = len(middle_a)
    for x in range(1, n - 1):
        if middle_b[n - x:] != middle_a[:x]:
            continue
        for y in range(1, n - x):
            middle = middle_a[x:n - y]
            if middle_a[n - y:] == middle_b[:y] and middle == middle_b[y:n - x] and _meaningful_swap(
                    middle_a[:x], middle_a[n - y:], middle):
                return True
    return False


def _meaningful_swap(x: tuple[str, ...], y: tuple[str, ...], middle: tuple[str, ...]) -> bool:
    return (bool(middle) and not set(middle) <= _SYMMETRIC and not set(x) <= lx.STOPWORDS
            and not set(y) <= lx.STOPWORDS)
