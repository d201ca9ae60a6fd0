"""JSON on the hot paths (upstream chunks, request and answer bodies, SSE frames): orjson.

Python-based upstreams can emit NaN and Infinity literals, and integers can exceed 64 bits;
only the stdlib handles those, so the rare payloads that carry them fall back to it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class TooDeep(ValueError):
    """JSON nested deeper than the parsers go (orjson stops at 1024 levels, the stdlib at Python's
    recursion limit): malformed input like any other, not a crash."""


def loads(data: bytes | str) -> Any:
    """Raises ValueError (json.JSONDecodeError, UnicodeDecodeError, TooDeep) for what is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except RecursionError:
            raise TooDeep("JSON nested too deeply") from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (what json.dumps with separators=(",", ":"), ensure_ascii=False gives)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
