"""The one exception hierarchy for upstream failures, whatever the provider.

Every failure of an upstream call is an UpstreamError naming the tier, the deployment and the
model, so an operator knows which upstream to look at, and saying whether trying again can help
(`retryable`) and how long the upstream asked us to wait (`retry_after_s`). The router maps them
to the client's OpenAI errors in one place (services/router/failures.py).

`retryable` describes the failure, not the request: the upstream had not begun to answer
(the connection failed, no byte came before the timeout) or it said so (408, 409, 429, 5xx).
A failure after the first byte (a stream cut, a stall, an error event, garbage) is not: the
upstream was already generating. Whether a request may be tried again at all (a stream whose
first token reached the client may not) is the caller's decision.
"""

from __future__ import annotations

from typing import Any

RETRYABLE_STATUSES = frozenset({408, 409, 429})


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


class UpstreamError(Exception):
    """An upstream call failed; `str()` names the tier and model, `message` is what went wrong."""

    def __init__(self, message: str, *, tier: str = "", deployment: str = "", model: str = "",
                 status: int | None = None, retry_after_s: float | None = None, retryable: bool = False,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tier = tier
        self.deployment = deployment
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = retryable
        self.body = body

    def at(self, tier: str, deployment: str, model: str) -> UpstreamError:
        """The same error, placed: fills in where it happened unless it already says so."""
        self.tier = self.tier or tier
        self.deployment = self.deployment or deployment
        self.model = self.model or model
        return self

    def __str__(self) -> str:
        where = self.tier or self.deployment or "an"
        if self.deployment and self.deployment != self.tier:
            where = f"{where} ({self.deployment})" if self.tier else self.deployment
        model = f" ({self.model})" if self.model else ""
        return f"{where} upstream{model}: {self.message}"


class UpstreamTimeout(UpstreamError):
    """No answer in time: before the first byte (retryable) or a stream that stalled (not)."""


class UpstreamConnectError(UpstreamError):
    """The connection failed: refused, reset, DNS, TLS, or dropped in the middle of a stream."""


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an HTTP status >= 400; `body` is its error object, in OpenAI's
    shape (message, type, param, code) whatever the provider's own was."""


class UpstreamStreamError(UpstreamError):
    """The upstream reported an error inside an already-open (200) stream."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered 200 with something that is not a well-formed stream; `detail` says what."""

    def __init__(self, detail: str, **where: Any) -> None:
        super().__init__(f"sent {detail}", **where)
        self.detail = detail

    def __str__(self) -> str:  # "heavyweight upstream (big-model) sent a stream that ..."
        return super().__str__().replace(": sent ", " sent ", 1)
