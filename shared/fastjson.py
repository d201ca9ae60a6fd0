"""JSON on the hot paths (upstream chunks, request and answer bodies, SSE frames): orjson.

Python-based upstreams can emit NaN and Infinity literals, which orjson refuses, and integers
beyond 64 bits, which it reads as floats (precision lost, silently); the stdlib reads both
exactly, so the rare payloads that carry them go to it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class TooDeep(ValueError):
    """JSON nested deeper than the parsers go (orjson stops at 1024 levels, the stdlib at Python's
    recursion limit): malformed input like any other, not a crash."""


# 19 digits in a row may be an integer past 64 bits (-2**63 - 1 has 19). Found by mapping every
# digit to "0" and the rest to " " (C-speed: about a third of orjson's own time on a chunk); inside
# a string such a run only costs the slower parser.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def loads(data: bytes | str) -> Any:
    """Raises ValueError (json.JSONDecodeError, UnicodeDecodeError, TooDeep) for what is not JSON."""
    try:
        if _LONG_RUN not in (data.encode() if isinstance(data, str) else data).translate(_DIGITS_ONLY):
            return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
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
