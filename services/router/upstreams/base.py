"""What a provider is: the small interface every upstream module implements, and what a deployment is.

A provider translates in both directions between the OpenAI chat shape the router speaks and its
own wire format: `request` turns an OpenAI chat-completions body into the HTTP request to send,
`decoder` reads the provider's server-sent events back into OpenAI `chat.completion.chunk` dicts,
and `error` turns a failed HTTP answer into an UpstreamError. The transport (transport.py) does
the HTTP, the SSE framing and the checks common to every provider; a provider is pure.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.router.upstreams.errors import UpstreamError
from shared import fastjson

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment: where it is, which model, how to authenticate, how long to wait.

    `headers` are extra request headers (HTTP Basic auth taken from user:password in the URL).
    `tier` is the tier the deployment serves; errors name both.
    """

    name: str
    provider: str
    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    tier: str = ""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class StreamDecoder(Protocol):
    """Reads one response's events; `done` once the provider said the stream is over."""

    done: bool

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        """The OpenAI chunks one SSE event (its `event:` name, its `data:` bytes) stands for.

        Raises MalformedChunk for data that is not what the provider sends, UpstreamStreamError
        for an error the provider reported inside the stream."""
        ...


class Provider(Protocol):
    name: str
    logprobs: bool  # can it return token log-probs, i.e. can it be a drafter

    def request(self, target: Target, params: dict[str, Any]) -> HttpRequest:
        """The HTTP request for an OpenAI chat-completions body (stream=True, as stream_params builds it)."""
        ...

    def decoder(self) -> StreamDecoder:
        ...

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """The UpstreamStatusError for an HTTP answer with status >= 400 (its body read whole)."""
        ...


def join_url(base_url: str, version: str, path: str, also: tuple[str, ...] = ()) -> str:
    """`base_url` + `version` + `path`, whether or not the configured base already ends in the version
    (https://api.anthropic.com and https://api.anthropic.com/v1 both work) or in one of `also`."""
    base = base_url.rstrip("/")
    if not base.endswith((version, *also)):
        base += version
    return base + path


def error_object(body: bytes) -> dict[str, Any] | None:
    """The `error` object of a JSON error body (or the body itself when it has none), else None."""
    try:
        parsed = fastjson.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    inner = parsed.get("error", parsed)
    return inner if isinstance(inner, dict) else {"message": str(inner)}


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """What the upstream asked us to wait: Retry-After-Ms, or Retry-After in seconds or as an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def tool_arguments(arguments: Any) -> dict[str, Any]:
    """An OpenAI tool call's `arguments` (a JSON string) as the object Anthropic and Gemini want;
    what is not a JSON object is kept under "arguments" rather than lost."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = fastjson.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def content_text(content: Any) -> str:
    """The text of an OpenAI message content: a string, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content
                       if isinstance(part, dict) and part.get("type") in ("text", "input_text"))
    return ""


def split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, _, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if encoding != "base64" or not data:
        return None
    return media_type or "application/octet-stream", data
