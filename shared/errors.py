"""OpenAI-style errors: the exceptions handlers raise and the JSON body they become."""

from __future__ import annotations

from typing import Any


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class ApiError(Exception):
    """An error the client should see, with its HTTP status and OpenAI error type."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}  # sent with the error (Retry-After, the rate-limit headers)
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ApiError):
    status = 401
    type = "authentication_error"


class PermissionDenied(ApiError):
    """A valid key without the right to this endpoint (the SDKs raise PermissionDeniedError)."""

    status = 403
    type = "permission_error"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"


class RateLimited(ApiError):
    """Over a key's requests per minute (OpenAI's type "requests", code rate_limit_exceeded); its
    headers carry Retry-After and the x-ratelimit-* state."""

    status = 429
    type = "requests"


class TokensRateLimited(RateLimited):
    """Over a key's tokens per minute (OpenAI's type "tokens")."""

    type = "tokens"


class QuotaExceeded(ApiError):
    """A key's budget is spent (OpenAI's insufficient_quota): retrying soon does not help."""

    status = 429
    type = "insufficient_quota"


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"


class UpstreamFailed(ApiError):
    status = 502
    type = "upstream_error"


class Unavailable(ApiError):
    status = 503
    type = "service_unavailable"


class TimedOut(ApiError):
    status = 504
    type = "timeout"
