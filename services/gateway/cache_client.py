"""The gateway's side of the cache service: lookups that can only ever make things faster.

Any failure (cache or embedder down, slow, broken) raises CacheUnavailable and the caller
goes on to the router as on a miss.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

CACHE_CONTROL_NO_CACHE = "no-cache"
CACHE_CONTROL_NO_STORE = "no-store"


class CacheUnavailable(Exception):
    """The cache service could not answer."""


@dataclass(frozen=True)
class CacheHit:
    tier: str
    similarity: float
    completion: dict[str, Any]
    verified: str | None = None  # semantic hits: the checks that passed them ("learned", "learned+drafter")


def cache_directives(header: str | None) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in (header or "").split(",") if part.strip())


async def lookup(session: aiohttp.ClientSession, base_url: str, tenant: str, body: dict[str, Any],
                 timeout_s: float) -> CacheHit | None:
    """The cache is told how long we wait, so it answers a miss in time rather than work on for nobody."""
    try:
        async with session.post(f"{base_url}/lookup", json={"tenant": tenant, "body": body, "timeout_s": timeout_s},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                raise CacheUnavailable(f"cache answered {response.status}")
            found = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CacheUnavailable(str(exc) or type(exc).__name__) from exc
    if not found.get("hit"):
        return None
    return CacheHit(tier=found["tier"], similarity=float(found["similarity"]), completion=found["completion"],
                    verified=found.get("verified"))


def served_from_cache(completion: dict[str, Any]) -> dict[str, Any]:
    """A fresh id and timestamp, and usage that shows no upstream tokens were spent."""
    return {**completion, "id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
