"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, OpenRouter): the router's own shape.

The body goes as it is (orjson bytes: the conversation is serialised once, never copied) and each
`data:` value is parsed and checked once into the chunk dict the router reads, whatever fields the
server adds reaching the client unchanged. Hot path: one parse_chunk per event, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.router.upstreams.base import HttpRequest, Target, error_object, retry_after_s
from services.router.upstreams.errors import UpstreamError, UpstreamStatusError, UpstreamStreamError, retryable_status
from services.router.wellformed import parse_chunk
from shared import fastjson

CHAT_COMPLETIONS_PATH = "/chat/completions"
DONE = b"[DONE]"


class OpenAIDecoder:
    """`data: {chunk}` events until `data: [DONE]`; an `{"error": ...}` object is the server failing mid-stream."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if data == DONE:
            self.done = True
            return []
        chunk = parse_chunk(data)
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            message = error.get("message")
            raise UpstreamStreamError(message if isinstance(message, str) and message else "stream error", body=error)
        return [chunk]


class OpenAIProvider:
    name = "openai"
    logprobs = True

    def request(self, target: Target, params: dict[str, Any]) -> HttpRequest:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        headers.update(target.headers)  # Basic auth from the URL replaces the (absent) key
        return HttpRequest("POST", target.base_url.rstrip("/") + CHAT_COMPLETIONS_PATH, headers,
                           fastjson.dumps(params))

    def decoder(self) -> OpenAIDecoder:
        return OpenAIDecoder()

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        error = error_object(body)
        message = error.get("message") if error else None
        return UpstreamStatusError(message if isinstance(message, str) and message else f"HTTP {status}",
                                   status=status, body=error, retryable=retryable_status(status),
                                   retry_after_s=retry_after_s(headers))


PROVIDER = OpenAIProvider()
