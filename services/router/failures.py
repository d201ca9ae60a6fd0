"""Which upstream failures we catch, and the OpenAI error the client gets for each."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import httpx2
from openai import APIError, APIStatusError, APITimeoutError

from shared.errors import error_body

# The SDK wraps most failures in APIError; a stream that breaks mid-read surfaces its
# transport's own errors (httpx2 over aiohttp).
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (APIError, httpx2.HTTPError, aiohttp.ClientError,
                                                    json.JSONDecodeError)

_RELAYED_STATUSES = frozenset({400, 409, 413, 422, 429})


def upstream_error_reply(tier: str, exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Client mistakes the upstream caught (bad tool schema, rate limit) keep their status;
    everything else is the gateway's upstream failing: 502, or 504 for a timeout."""
    if isinstance(exc, APITimeoutError):
        return 504, error_body(f"The {tier} model did not answer in time.", "timeout", code="upstream_timeout")
    if isinstance(exc, APIStatusError) and exc.status_code in _RELAYED_STATUSES:
        upstream = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        message = upstream.get("message") if isinstance(upstream, dict) else None
        return exc.status_code, error_body(message or str(exc), _type_for(exc.status_code),
                                           upstream.get("param") if isinstance(upstream, dict) else None,
                                           upstream.get("code") if isinstance(upstream, dict) else None)
    status = f" (status {exc.status_code})" if isinstance(exc, APIStatusError) else ""
    return 502, error_body(f"The {tier} model failed{status}.", "upstream_error", code="upstream_failed")


def _type_for(status: int) -> str:
    return "rate_limit_error" if status == 429 else "invalid_request_error"
