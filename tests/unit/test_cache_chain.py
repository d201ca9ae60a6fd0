"""The verification chain over semantic candidates, with a hand-written verifier standing in for
services/cache/verify.py's (the chain's job is the order, the counting and what is never served)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.cache.chain import NO_TEXT, Chain
from services.cache.semantic import Candidate
from services.cache.verify import Verdict


@dataclass
class Listed:
    """Passes exactly the cached texts it lists; records what it was asked."""

    passes: set[str]
    name: str = "rules"
    asked: list[tuple[str, str, float]] = field(default_factory=list)

    def check(self, query: str, cached: str, similarity: float) -> Verdict:
        self.asked.append((query, cached, similarity))
        return Verdict(True, "passed") if cached in self.passes else Verdict(False, "number")


def candidate(text: str | None, similarity: float) -> Candidate:
    return Candidate(text=text, completion={"answer": text}, similarity=similarity)


async def test_the_best_candidate_that_passes_is_served_and_those_before_it_are_counted() -> None:
    verifier = Listed(passes={"order 4411 status", "status of order 4411"})
    rejected: list[str] = []
    candidates = [candidate("order 4412 status", 0.99), candidate("order 4411 status", 0.97),
                  candidate("status of order 4411", 0.95)]

    served = await Chain(verifier).first_passing("status of order 4411", candidates, rejected.append)

    assert served is not None and served.candidate == candidates[1]
    assert served.verified == "rules"
    assert rejected == ["number"]
    assert [cached for _, cached, _ in verifier.asked] == ["order 4412 status", "order 4411 status"]
    assert verifier.asked[0] == ("status of order 4411", "order 4412 status", 0.99)


async def test_no_candidate_passing_is_a_miss_with_every_rejection_counted() -> None:
    rejected: list[str] = []
    served = await Chain(Listed(passes=set())).first_passing(
        "q", [candidate("a", 0.9), candidate("b", 0.85)], rejected.append)
    assert served is None
    assert rejected == ["number", "number"]


async def test_a_candidate_without_its_text_is_never_served_nor_shown_to_the_verifier() -> None:
    verifier = Listed(passes={"anything"})
    rejected: list[str] = []

    served = await Chain(verifier).first_passing("q", [candidate(None, 0.999)], rejected.append)

    assert served is None
    assert rejected == [NO_TEXT]
    assert verifier.asked == []


async def test_no_candidates_is_a_miss_without_rejections() -> None:
    rejected: list[str] = []
    assert await Chain(Listed(passes=set())).first_passing("q", [], rejected.append) is None
    assert rejected == []


def test_the_chain_names_the_verifier_it_runs() -> None:
    assert Chain(Listed(passes=set(), name="learned")).verified == "learned"
