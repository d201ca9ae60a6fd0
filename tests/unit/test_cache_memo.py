"""The vector memo that lets an accepted miss be embedded once: bounded by count and by age."""

from __future__ import annotations

from services.cache.memo import VectorMemo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_vector_comes_back_exactly_until_it_expires() -> None:
    clock = Clock()
    memo = VectorMemo(capacity=8, ttl_s=120, clock=clock)
    vector = [0.25, -0.5, 0.125]  # float32-exact values survive the compact storage unchanged
    memo.put("what is the capital of France", vector)

    clock.now += 119.9
    assert memo.get("what is the capital of France") == vector
    assert memo.get("what is the capital of Spain") is None

    clock.now += 0.2
    assert memo.get("what is the capital of France") is None
    assert len(memo) == 0  # the expired entry is gone, not just hidden


def test_the_least_recently_used_text_goes_first_past_capacity() -> None:
    memo = VectorMemo(capacity=2, ttl_s=120, clock=Clock())
    memo.put("a", [1.0])
    memo.put("b", [2.0])
    assert memo.get("a") == [1.0]  # a is now the most recently used
    memo.put("c", [3.0])

    assert (memo.get("a"), memo.get("b"), memo.get("c")) == ([1.0], None, [3.0])
    assert len(memo) == 2


def test_putting_a_text_again_renews_its_vector_and_its_age() -> None:
    clock = Clock()
    memo = VectorMemo(capacity=4, ttl_s=10, clock=clock)
    memo.put("a", [1.0])
    clock.now += 8
    memo.put("a", [0.5])
    clock.now += 8
    assert memo.get("a") == [0.5]
