"""JSON on the hot paths (upstream chunks, request and answer bodies, SSE frames): orjson.

Python-based upstreams can emit NaN and Infinity literals, and integers can exceed 64 bits;
only the stdlib handles those, so the rare payloads that carry them fall back to it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (what json.dumps with separators=(",", ":"), ensure_ascii=False gives)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
