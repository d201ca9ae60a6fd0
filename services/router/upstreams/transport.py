"""The lean transport: one pooled aiohttp session, server-sent events read as bytes, every chunk checked.

`open_stream(session, provider, target, params)` sends one provider request and yields the
response as OpenAI chunk dicts. Everything every provider shares is here, once: the HTTP call with
the deployment's timeout, the SSE framing (bytes, not text: orjson parses the data values as they
are), the checks that nothing malformed gets past (wellformed.py, through the provider's decoder)
and that a stream ended whole, and the mapping of every transport failure to an UpstreamError.
Leaving the block closes the connection at once (the upstream sees the client go), unless the
stream ended whole, when it goes back to the pool for the next call.

The router process owns one session (app.py's cleanup_ctx); other callers make their own with
create_session() and close it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from services.router.upstreams.base import Provider, StreamDecoder, Target
from services.router.upstreams.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from services.router.wellformed import MalformedChunk, has_finished

# An event line this long is no chat chunk: a body that is not an event stream, or garbage.
MAX_LINE_BYTES = 8 * 1024 * 1024
# An error answer's body is read this far: enough for any JSON error object, not for a runaway page.
MAX_ERROR_BYTES = 64 * 1024

Event = tuple[str | None, bytes]


def create_session(trace_configs: list[aiohttp.TraceConfig] | None = None) -> aiohttp.ClientSession:
    """The pooled session upstream calls share: keep-alive connections, no connection limit (the
    router's max_in_flight bounds its calls), no environment proxies or .netrc (read per request,
    they cost CPU on every call), no cookies (an upstream's must not leak between clients).
    `trace_configs` are aiohttp's request hooks (the tests count connections with them)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                 raise_for_status=False, trace_configs=trace_configs)


class SseReader:
    """Server-sent events from a byte stream, whatever its block boundaries.

    An event is dispatched at the blank line that ends it: its `event:` name (None when it has
    none) and its `data:` lines joined by LF. Comments (`: keep-alive`), `id:` and `retry:` lines
    are skipped. Lines end in LF or CRLF, as every server we speak to sends.
    """

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._event: str | None = None
        self._data: bytes | None = None

    def feed(self, block: bytes) -> list[Event]:
        lines = (self._pending + block if self._pending else block).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            raise MalformedChunk(f"a line longer than {MAX_LINE_BYTES} bytes")
        events: list[Event] = []
        for line in lines:
            if line.startswith(b"data:"):
                value = line[5:].strip()
                self._data = value if self._data is None else self._data + b"\n" + value
            elif not line or line == b"\r":
                if self._data is not None:
                    events.append((self._event, self._data))
                self._event = self._data = None
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
        return events

    def end(self) -> list[Event]:
        """What the stream's end completes: a last line without its LF, an event without its blank line."""
        events = self.feed(b"\n")
        if self._data is not None:
            events.append((self._event, self._data))
            self._event = self._data = None
        return events


def sse_data(pending: bytes, block: bytes) -> tuple[list[bytes], bytes]:
    """The `data:` values of the complete lines in pending + block, and the unfinished tail: the
    line-level reading SseReader does, for callers that want data values alone."""
    lines = (pending + block).split(b"\n")
    tail = lines.pop()
    if len(tail) > MAX_LINE_BYTES:
        raise MalformedChunk(f"a line longer than {MAX_LINE_BYTES} bytes")
    return [line[5:].strip() for line in lines if line.startswith(b"data:")], tail


@functools.lru_cache(maxsize=64)
def client_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    """The deployment's timeout for connecting (a pooled connection included) and for each read:
    a server that sends nothing for that long has stalled, however long the whole answer takes."""
    return aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)


@asynccontextmanager
async def open_stream(session: aiohttp.ClientSession, provider: Provider, target: Target,
                      params: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Open the deployment's stream for an OpenAI chat body; the block gets its checked chunks.

    Raises UpstreamError (a subclass saying which failure) for everything that goes wrong, when
    opening and while reading. Leaving the block early closes the connection at once."""
    where = (target.tier or target.name, target.name, target.model)
    request = provider.request(target, params)
    try:
        response = await session.request(request.method, request.url, headers=request.headers, data=request.body,
                                         timeout=client_timeout(target.timeout_s))
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _transport_error(exc, target.timeout_s, answering=False).at(*where) from exc
    reading = _Reading(response.content.iter_any(), provider.decoder(), where, target.timeout_s)
    try:
        if response.status >= 400:
            raise (await _status_error(response, provider)).at(*where)
        yield reading.chunks
    finally:
        await reading.chunks.aclose()
        if reading.whole:
            response.release()  # back to the pool when the body was read to its end
        else:
            response.close()


def read_chunks(blocks: AsyncIterator[bytes], decoder: StreamDecoder, where: tuple[str, str, str],
                timeout_s: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    """The checked chunks of a response body read in `blocks`, decoded by a provider's decoder;
    `where` is (tier, deployment, model) for the errors. What open_stream reads, without the HTTP."""
    return _Reading(blocks, decoder, where, timeout_s).chunks


class _Reading:
    """One response being read: its chunks, and whether it ended whole."""

    __slots__ = ("chunks", "whole")

    def __init__(self, blocks: AsyncIterator[bytes], decoder: StreamDecoder, where: tuple[str, str, str],
                 timeout_s: float) -> None:
        self.whole = False
        self.chunks = self._read(blocks, decoder, where, timeout_s)

    async def _read(self, blocks: AsyncIterator[bytes], decoder: StreamDecoder, where: tuple[str, str, str],
                    timeout_s: float) -> AsyncIterator[dict[str, Any]]:
        """The stream's chunks. It must hold a choice, and end as the provider ends it (OpenAI: [DONE])
        or, from a server that omits the end marker, with its last choice finished; else it was cut short."""
        reader = SseReader()
        events = 0
        last: dict[str, Any] | None = None  # the latest chunk with choices: the one a finish_reason is in
        try:
            async for block in blocks:
                for event, data in reader.feed(block):
                    events += 1
                    for chunk in decoder.feed(event, data):
                        if chunk.get("choices"):
                            last = chunk
                        yield chunk
                    if decoder.done:
                        if last is None:
                            raise MalformedChunk("a stream without any choice")
                        self.whole = True
                        return
            for event, data in reader.end():  # a last event the server did not end
                events += 1
                for chunk in decoder.feed(event, data):
                    if chunk.get("choices"):
                        last = chunk
                    yield chunk
                if decoder.done:
                    break
        except MalformedChunk as exc:
            raise UpstreamProtocolError(str(exc)).at(*where) from None
        except UpstreamError as exc:  # an error event the provider sent
            raise exc.at(*where) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc, timeout_s, answering=events > 0).at(*where) from exc
        if not events:
            raise UpstreamProtocolError("a response that is not an event stream").at(*where)
        if last is None and decoder.done:
            raise UpstreamProtocolError("a stream without any choice").at(*where)
        if not decoder.done and (last is None or not has_finished(last)):
            raise UpstreamProtocolError("a stream that ended before [DONE] (cut short)").at(*where)
        self.whole = True


def _transport_error(exc: BaseException, timeout_s: float, *, answering: bool) -> UpstreamError:
    """A network failure as an UpstreamError: retryable while the upstream had not begun to answer."""
    if isinstance(exc, TimeoutError):  # asyncio's and aiohttp's timeouts are TimeoutErrors
        what = "sent nothing more" if answering else "did not answer"
        return UpstreamTimeout(f"{what} within {timeout_s:g} s", retryable=not answering)
    if answering:
        return UpstreamConnectError(f"the connection was lost mid-stream ({_describe(exc)})")
    return UpstreamConnectError(f"could not be reached ({_describe(exc)})", retryable=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _status_error(response: aiohttp.ClientResponse, provider: Provider) -> UpstreamError:
    try:
        body = await response.content.read(MAX_ERROR_BYTES)
    except (TimeoutError, aiohttp.ClientError, OSError):
        body = b""
    return provider.error(response.status, body, response.headers)
