"""Which upstream failures we catch, and the OpenAI error the client gets for each."""

from __future__ import annotations

from typing import Any

from services.router.upstreams.errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout
from shared.errors import error_body

# Every provider's every failure, opening or mid-stream, is one of these (upstreams/errors.py).
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (UpstreamError,)

_RELAYED_STATUSES = frozenset({400, 409, 413, 422, 429})


def upstream_error_reply(tier: str, exc: BaseException, model: str | None = None) -> tuple[int, dict[str, Any]]:
    """Client mistakes the upstream caught (bad tool schema, rate limit) keep their status;
    everything else is the gateway's upstream failing: 502, or 504 for a timeout. The message
    names the tier and its deployed model, so an operator knows which upstream to look at."""
    upstream = f"The {tier} model ({model})" if model else f"The {tier} model"
    if isinstance(exc, UpstreamTimeout):  # before the headers, or mid-stream
        return 504, error_body(f"{upstream} did not answer in time.", "timeout", code="upstream_timeout")
    if isinstance(exc, UpstreamProtocolError):
        return 502, error_body(f"{upstream} sent a malformed response: {exc.detail}.", "upstream_error",
                               code="upstream_malformed")
    status = exc.status if isinstance(exc, UpstreamStatusError) else None
    if status is not None and status in _RELAYED_STATUSES:
        body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body, dict) else None
        return status, error_body(message if isinstance(message, str) and message else str(exc), _type_for(status),
                                  _text(body.get("param")) if isinstance(body, dict) else None,
                                  _text(body.get("code")) if isinstance(body, dict) else None)
    said = f" (status {status})" if status is not None else ""
    return 502, error_body(f"{upstream} failed{said}.", "upstream_error", code="upstream_failed")


def _type_for(status: int) -> str:
    return "rate_limit_error" if status == 429 else "invalid_request_error"


def _text(value: Any) -> str | None:
    """An upstream's error field as a string (or null): its garbage must not break our error shape."""
    return None if value is None else str(value)
