"""One model tier behind the openai AsyncOpenAI client, streamed as raw chunk dicts.

Chunks are read as raw SSE data and passed on as dicts: no model objects are built per
token on the hot path, and whatever fields the upstream sends reach the client unchanged.
Each chunk is checked here, once, so nothing past this module meets a malformed one: garbage
(data that is not a JSON object, a wrong-typed field, a stream cut short) is one
UpstreamProtocolError naming the tier and its model.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx2
from openai import APIError, AsyncOpenAI, DefaultAioHttpClient

from services.router.wellformed import MalformedChunk, has_finished, parse_chunk
from shared import fastjson
from shared.config import UpstreamConfig
from shared.pricing import Price

_GATEWAY_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "n"})
CHAT_COMPLETIONS_PATH = "/chat/completions"
DONE = b"[DONE]"
# An event line this long is no chat chunk: a body that is not an event stream, or garbage.
MAX_LINE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Tier:
    name: str
    model: str
    client: AsyncOpenAI
    continuation: str = "instruction"  # how it continues a partly shown answer (continuation.py)
    price: Price | None = None  # None: unpriced, no cost is counted


class UpstreamStreamError(APIError):
    """The upstream reported an error inside an already-open stream."""


class UpstreamProtocolError(APIError):
    """The upstream answered 200 with something that is not a well-formed chunk stream."""

    def __init__(self, tier: Tier, detail: str) -> None:
        super().__init__(f"{tier.name} upstream ({tier.model}) sent {detail}", None, body=None)
        self.detail = detail


def create_tier(name: str, config: UpstreamConfig, env: Mapping[str, str]) -> Tier:
    api_key = env.get(config.api_key_env, "") if config.api_key_env else ""
    base_url, basic_auth = split_credentials(config.base_url or "")
    # Credentials in the URL (a server behind a basic-auth proxy) travel as HTTP Basic auth;
    # left in the URL, aiohttp refuses to send them beside the SDK's own Authorization header.
    headers = {"Authorization": basic_auth} if basic_auth else None
    # The SDK's aiohttp transport: about a millisecond less CPU per call than its default under load.
    client = AsyncOpenAI(base_url=base_url, api_key=api_key or "no-key", timeout=config.timeout_s,
                         max_retries=0, http_client=DefaultAioHttpClient(), default_headers=headers)
    return Tier(name=name, model=config.model or "", client=client, continuation=config.continuation,
                price=config.price)


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user:password part, and that part as a Basic Authorization value."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return urlunsplit(parts._replace(netloc=netloc)), "Basic " + base64.b64encode(user_pass.encode()).decode()


def stream_params(body: dict[str, Any], model: str, min_top_logprobs: int | None = None) -> dict[str, Any]:
    """The request body for this tier: the client's, always streamed with usage.

    Everything the gateway does not own passes through untouched (tools, response_format,
    seed, vendor fields). A drafter call asks for at least `min_top_logprobs` alternatives
    per token.
    """
    params = {key: value for key, value in body.items() if key not in _GATEWAY_FIELDS}
    params.update(model=model, messages=body["messages"], stream=True, stream_options={"include_usage": True})
    if min_top_logprobs is not None:
        params["logprobs"] = True
        params["top_logprobs"] = max(min_top_logprobs, int(params.get("top_logprobs") or 0))
    return params


@asynccontextmanager
async def open_chunks(tier: Tier, params: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Open the tier's stream; leaving the block closes the upstream connection at once.

    The client's generic post() with the raw response, not chat.completions.create(): the
    body is already a valid request, and create()'s typed-parameter transform and response
    wrappers cost about 0.13 ms of CPU per call (the router's largest share after the SDK's
    own transport). The body goes as orjson bytes: a dict would be deep-copied twice and
    serialised by the SDK, per call and in proportion to the conversation's length. Auth,
    timeouts and status errors are still the SDK's.
    """
    response = await tier.client.post(CHAT_COMPLETIONS_PATH, content=fastjson.dumps(params), cast_to=httpx2.Response,
                                      stream=True, options={"headers": {"Content-Type": "application/json"}})
    try:
        yield _chunks(response.aiter_bytes(), tier)
    finally:
        await response.aclose()


def sse_data(pending: bytes, block: bytes) -> tuple[list[bytes], bytes]:
    """The `data:` values of the complete lines in pending + block, and the unfinished tail.

    Bytes, not text: orjson parses them as they are, and the SDK's text line decoder costs
    more than the JSON itself. Lines end in LF or CRLF, as every OpenAI-compatible server sends.
    """
    lines = (pending + block).split(b"\n")
    tail = lines.pop()
    if len(tail) > MAX_LINE_BYTES:
        raise MalformedChunk(f"a line longer than {MAX_LINE_BYTES} bytes")
    return [line[5:].strip() for line in lines if line.startswith(b"data:")], tail


async def _data_values(blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    pending = b""
    async for block in blocks:
        values, pending = sse_data(pending, block)
        for data in values:
            yield data
    for data in sse_data(pending, b"\n")[0]:  # a last line the server did not end
        yield data


async def _chunks(blocks: AsyncIterator[bytes], tier: Tier) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks, each checked. It must hold a choice and end in [DONE]; from a server
    that omits [DONE], a stream whose last choice finished is whole too. Else it was cut short."""
    events = 0
    last: dict[str, Any] | None = None  # the latest chunk with choices: the one a finish_reason is in
    try:
        async for data in _data_values(blocks):
            events += 1
            if data == DONE:
                if last is None:
                    raise MalformedChunk("a stream without any choice")
                return
            chunk = parse_chunk(data)
            if "error" in chunk:
                error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                raise UpstreamStreamError(f"{tier.name}: {error.get('message', 'stream error')}", None, body=error)
            if chunk.get("choices"):
                last = chunk
            yield chunk
    except MalformedChunk as exc:
        raise UpstreamProtocolError(tier, str(exc)) from None
    if not events:
        raise UpstreamProtocolError(tier, "a response that is not an event stream")
    if last is None or not has_finished(last):
        raise UpstreamProtocolError(tier, "a stream that ended before [DONE] (cut short)")
