"""Pure: which requests the cache may answer or remember.

Sampling hot enough to want variety makes a stored answer the wrong answer. An absent
temperature is OpenAI's default of 1.0, so with the default max_temperature of 1.0 it is cacheable.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TEMPERATURE = 1.0


def effective_temperature(body: dict[str, Any]) -> float:
    value = body.get("temperature")
    if value is None:
        return DEFAULT_TEMPERATURE
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"temperature must be a number, got {value!r}")
    return float(value)


def cacheable(body: dict[str, Any], max_temperature: float) -> bool:
    """True when a request may be looked up and its answer stored (same rule both ways)."""
    return effective_temperature(body) <= max_temperature
