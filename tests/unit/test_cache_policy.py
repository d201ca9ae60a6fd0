"""Cache policy: temperature decides whether a request may be cached, both ways."""

from __future__ import annotations

import pytest

from services.cache.policy import cacheable, effective_temperature


def test_absent_temperature_is_openais_default_of_one_and_cacheable_at_the_default_limit() -> None:
    assert effective_temperature({}) == 1.0
    assert effective_temperature({"temperature": None}) == 1.0
    assert cacheable({}, max_temperature=1.0)


def test_temperature_above_the_limit_is_not_cacheable() -> None:
    assert not cacheable({"temperature": 1.2}, max_temperature=1.0)
    assert not cacheable({}, max_temperature=0.5)


def test_temperature_at_or_below_the_limit_is_cacheable() -> None:
    assert cacheable({"temperature": 1}, max_temperature=1.0)
    assert cacheable({"temperature": 0.0}, max_temperature=0.0)


@pytest.mark.parametrize("value", ["0.5", True, [1]])
def test_non_numeric_temperature_is_an_error(value: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        effective_temperature({"temperature": value})
