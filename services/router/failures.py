"""Which upstream failures we catch, and the OpenAI error the client gets for each."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx2
from openai import APIError, APIStatusError, APITimeoutError

from services.router.upstream import UpstreamProtocolError
from shared.errors import error_body

# The SDK wraps most failures in APIError; a stream that breaks mid-read surfaces its
# transport's own errors (httpx2 over aiohttp); garbage in a 200 stream is an UpstreamProtocolError.
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (APIError, UpstreamProtocolError, httpx2.HTTPError,
                                                    aiohttp.ClientError)

_RELAYED_STATUSES = frozenset({400, 409, 413, 422, 429})


def upstream_error_reply(tier: str, exc: BaseException, model: str | None = None) -> tuple[int, dict[str, Any]]:
    """Client mistakes the upstream caught (bad tool schema, rate limit) keep their status;
    everything else is the gateway's upstream failing: 502, or 504 for a timeout. The message
    names the tier and its deployed model, so an operator knows which upstream to look at."""
    upstream = f"The {tier} model ({model})" if model else f"The {tier} model"
    if isinstance(exc, APITimeoutError | httpx2.TimeoutException):  # before the headers, or mid-stream
        return 504, error_body(f"{upstream} did not answer in time.", "timeout", code="upstream_timeout")
    if isinstance(exc, UpstreamProtocolError):
        return 502, error_body(f"{upstream} sent a malformed response: {exc.detail}.", "upstream_error",
                               code="upstream_malformed")
    if isinstance(exc, APIStatusError) and exc.status_code in _RELAYED_STATUSES:
        body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body, dict) else None
        return exc.status_code, error_body(message if isinstance(message, str) and message else str(exc),
                                           _type_for(exc.status_code),
                                           _text(body.get("param")) if isinstance(body, dict) else None,
                                           _text(body.get("code")) if isinstance(body, dict) else None)
    status = f" (status {exc.status_code})" if isinstance(exc, APIStatusError) else ""
    return 502, error_body(f"{upstream} failed{status}.", "upstream_error", code="upstream_failed")


def _type_for(status: int) -> str:
    return "rate_limit_error" if status == 429 else "invalid_request_error"


def _text(value: Any) -> str | None:
    """An upstream's error field as a string (or null): its garbage must not break our error shape."""
    return None if value is None else str(value)
