"""The fake upstream's native provider routes: Anthropic's `POST /v1/messages` and Gemini's
`POST /v1beta/models/{model}:generateContent` / `:streamGenerateContent` (also under /v1/, the API version
the google-genai SDK now defaults to), scripted like the OpenAI route.

The same State picks the Script (prompt rules match the last user turn of either wire, model rules
the request's model) and records a Seen with `api` = "anthropic" | "gemini" and the request's headers.
Scripts keep every knob they have on the OpenAI route: pacing (ttft_s, tokens_per_s; one paced unit per
text token or tool call piece), status (the provider's error shape, Retry-After / RetryInfo from
retry_after_s), stream_error (an error inside a 200 stream after garbage_after units), garbage modes
(page modes, truncated, cut_mid_json, and the data modes each wire has a form for), entropies (Gemini's
log-probs) and tool_calls. Client disconnects are noticed as on the OpenAI route.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import anthropic_wire, gemini_wire
from tests.fakes.garbage import DATA_MODES, PAGE_MODES
from tests.fakes.scripts import Frames, Script, tokens_due
from tests.fakes.state import Seen, State

_ids = itertools.count(1)
_RESPONSE = web.RequestKey("fake_response", web.StreamResponse)  # returned when the client has gone


@dataclass(frozen=True)
class Wire:
    """How one native API spells the parts of an answer the handlers below send."""

    api: str
    stream_type: str  # the content type of a streamed answer
    frames: Callable[[Script], Frames]
    whole: Callable[[Script], bytes]  # a non-streamed answer's body
    error: Callable[[int, str, float | None], tuple[bytes, dict[str, str]]]  # body and headers of an error
    error_frame: Callable[[int, str], bytes]  # an error inside a 200 stream
    bad_value: Callable[[str], bytes | None]  # a garbage data mode's bad value (None: the wire has no form)
    frame: Callable[[bytes], bytes]  # a data value as a frame of the stream (not its first)
    cut: bytes  # half a frame, for cut_mid_json
    headers: dict[str, str]  # sent with every answer


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes, last: bool = False) -> None:
    """Write now, or fail at once if the client has gone; the last write carries the end of the body."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client closed the connection")
    await (resp.write_eof(data) if last else resp.write(data))


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _send(request: web.Request, status: int, body: bytes, headers: dict[str, str],
                content_type: str = "application/json") -> web.Response:
    resp = request[_RESPONSE] = web.Response(status=status, body=body, content_type=content_type,
                                             headers=headers)
    await resp.prepare(request)
    await resp.write_eof()
    return resp


async def _open(request: web.Request, wire: Wire) -> web.StreamResponse:
    resp = request[_RESPONSE] = web.StreamResponse(headers={**wire.headers, "Cache-Control": "no-cache"})
    resp.content_type = wire.stream_type
    await resp.prepare(request)
    return resp


async def _stream(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.StreamResponse:
    """Write the units on an absolute schedule: the first (with the head) after ttft, then one every
    1/tokens_per_s; every unit that is due goes out in one write, as on the OpenAI route."""
    frames = wire.frames(script)
    resp = await _open(request, wire)
    await _pause(script.ttft_s)
    loop = asyncio.get_running_loop()
    first, n = loop.time(), len(frames.units)
    gap = 1 / script.tokens_per_s if script.tokens_per_s else 0.0
    pending = frames.head
    while seen.tokens_sent < n:
        await _pause(first + seen.tokens_sent * gap - loop.time())
        due = tokens_due(seen.tokens_sent, n, gap, loop.time() + state.tick_s - first)
        if due == n:
            break
        await _write(request, resp, pending + b"".join(frames.units[seen.tokens_sent:due]))
        pending, seen.tokens_sent = b"", due
    tail = pending + b"".join(frames.units[seen.tokens_sent:]) + frames.tail
    written, seen.tokens_sent = seen.tokens_sent, n
    state.finish(seen, completed=True)
    try:
        await _write(request, resp, tail, last=True)
    except ConnectionResetError:
        seen.tokens_sent = written
        raise
    return resp


async def _broken_stream(request: web.Request, state: State, seen: Seen, wire: Wire,
                         script: Script) -> web.StreamResponse:
    """A stream that carries an error event, or is broken the way `script.garbage` says, after
    `script.garbage_after` good units (written at once after ttft, as on the OpenAI route)."""
    frames = wire.frames(script)
    after = min(script.garbage_after, len(frames.units))
    good = frames.head + b"".join(frames.units[:after])
    resp = await _open(request, wire)
    await _pause(script.ttft_s)
    seen.tokens_sent = after
    if script.stream_error is not None:
        state.finish(seen, completed=True)
        await _write(request, resp, good + wire.error_frame(script.stream_error, "Overloaded" if
                                                             script.stream_error == 529 else
                                                             f"scripted stream error {script.stream_error}"), last=True)
    elif script.garbage in DATA_MODES:
        seen.tokens_sent = len(frames.units)
        state.finish(seen, completed=True)
        bad = wire.bad_value(script.garbage)
        assert bad is not None  # checked before the answer began
        await _write(request, resp, good + wire.frame(bad) + b"".join(frames.units[after:]) + frames.tail, last=True)
    elif script.garbage == "truncated":
        state.finish(seen, completed=True)
        await _write(request, resp, good, last=True)
    else:  # cut_mid_json
        await _write(request, resp, good + wire.cut)
        state.finish(seen, completed=True)
        assert request.transport is not None
        request.transport.abort()
    return resp


async def _whole(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.Response:
    frames = wire.frames(script)
    n = len(frames.units)
    generation = (n - 1) / script.tokens_per_s if script.tokens_per_s and n > 1 else 0.0
    await _pause(script.ttft_s + generation)
    if script.garbage in DATA_MODES:
        body = wire.bad_value(script.garbage) or b""
    elif script.garbage is not None:  # a stream mode: the whole body cut in half
        whole = wire.whole(script)
        body = whole[:len(whole) // 2]
    else:
        body = wire.whole(script)
    seen.tokens_sent = n
    state.finish(seen, completed=True)
    return await _send(request, 200, body, wire.headers)


async def _fail(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.Response:
    await _pause(script.ttft_s)
    state.finish(seen, completed=True)
    message = "Overloaded" if script.status == 529 else f"scripted failure {script.status}"
    body, headers = wire.error(script.status, message, script.retry_after_s)
    return await _send(request, script.status, body, headers)


async def _page(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.Response:
    """A body that is no answer of this API: an HTML page, or a whole JSON answer where a stream belongs."""
    await _pause(script.ttft_s)
    state.finish(seen, completed=True)
    if script.garbage == "not_sse":
        return await _send(request, 200, wire.whole(script), wire.headers)
    status, content_type, body = PAGE_MODES[script.garbage or ""]
    return await _send(request, status, body, {}, content_type)


async def _answer(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.StreamResponse:
    if script.garbage in PAGE_MODES:
        return await _page(request, state, seen, wire, script)
    if script.status != 200:
        return await _fail(request, state, seen, wire, script)
    if script.garbage in DATA_MODES and wire.bad_value(script.garbage) is None:
        state.finish(seen, completed=True)
        body, headers = wire.error(500, f"fake: garbage mode {script.garbage!r} has no {wire.api} form", None)
        return await _send(request, 500, body, headers)
    if not seen.stream:
        return await _whole(request, state, seen, wire, script)
    if script.garbage is not None or script.stream_error is not None:
        return await _broken_stream(request, state, seen, wire, script)
    return await _stream(request, state, seen, wire, script)


async def _serve(request: web.Request, state: State, seen: Seen, wire: Wire, script: Script) -> web.StreamResponse:
    """Answer, marking the record closed early when the client left before the last unit."""
    try:
        return await _answer(request, state, seen, wire, script)
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        planned = len(wire.frames(script).units) if script.status == 200 else 0
        state.finish(seen, completed=False, closed_early=seen.tokens_sent < planned)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return request.get(_RESPONSE) or web.Response()


def _refused(state: State, api: str, body: bytes, headers: dict[str, str], model: str, stream: bool,
             status: int) -> None:
    """Record a request the API refused, with whatever of its body was JSON, so tests see what was sent."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    seen = state.record(model, parsed if isinstance(parsed, dict) else {}, stream, status=status, api=api,
                        headers=headers)
    state.finish(seen, completed=True)


# --- Anthropic ---------------------------------------------------------------------------------------

def _anthropic_wire(request: anthropic_wire.Request, message_id: str, request_id: str) -> Wire:
    def error(status: int, message: str, retry_after_s: float | None) -> tuple[bytes, dict[str, str]]:
        headers = {"request-id": request_id}
        if retry_after_s is not None:
            headers["retry-after"] = f"{retry_after_s:g}"
        return json.dumps(anthropic_wire.error_body(status, message, request_id)).encode(), headers

    return Wire(api="anthropic", stream_type="text/event-stream",
                frames=lambda script: anthropic_wire.frames(request, script, message_id),
                whole=lambda script: json.dumps(anthropic_wire.message(request, script, message_id)).encode(),
                error=error, error_frame=anthropic_wire.error_event, bad_value=anthropic_wire.bad_value,
                frame=anthropic_wire.delta_frame, cut=anthropic_wire.CUT_EVENT, headers={"request-id": request_id})


def _lower(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def anthropic_messages(state_of: Callable[[web.Request], State]) -> Callable[[web.Request], Awaitable[Any]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        state, raw, headers = state_of(request), await request.read(), _lower(request)
        n = next(_ids)
        request_id = f"req_fake_{n}"
        try:
            body, parsed = anthropic_wire.parse_request(headers, raw)
        except anthropic_wire.AnthropicError as exc:
            _refused(state, "anthropic", raw, headers, "", False, exc.status)
            error = anthropic_wire.error_body(exc.status, exc.message, request_id)
            return await _send(request, exc.status, json.dumps(error).encode(), {"request-id": request_id})
        script = state.pick(parsed.model, parsed.messages)
        seen = state.record(parsed.model, body, parsed.stream, status=script.status, api="anthropic", headers=headers)
        return await _serve(request, state, seen, _anthropic_wire(parsed, f"msg_fake_{n}", request_id), script)
    return handler


# --- Gemini ------------------------------------------------------------------------------------------

def _gemini_wire(request: gemini_wire.Request, response_id: str) -> Wire:
    def error(status: int, message: str, retry_after_s: float | None) -> tuple[bytes, dict[str, str]]:
        return json.dumps(gemini_wire.error_body(status, message, retry_after_s)).encode(), {}

    def error_frame(status: int, message: str) -> bytes:
        return gemini_wire.frame(request, json.dumps(gemini_wire.error_body(status, message), separators=(",", ":"))
                                 .encode(), False)

    def bad_value(mode: str) -> bytes:
        return gemini_wire.bad_data(mode, gemini_wire.sample_chunk(request, Script(tokens=["x"]), response_id))

    return Wire(api="gemini", stream_type="text/event-stream" if request.sse else "application/json",
                frames=lambda script: gemini_wire.frames(request, script, response_id),
                whole=lambda script: json.dumps(gemini_wire.response(request, script, response_id)).encode(),
                error=error, error_frame=error_frame, bad_value=bad_value,
                frame=lambda value: gemini_wire.frame(request, value, False), cut=gemini_wire.CUT, headers={})


def gemini_generate(state_of: Callable[[web.Request], State]) -> Callable[[web.Request], Awaitable[Any]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        state, raw, headers = state_of(request), await request.read(), _lower(request)
        target = request.match_info["target"]
        try:
            body, parsed = gemini_wire.parse_request(headers, request.query, target, raw)
        except gemini_wire.GeminiError as exc:
            _refused(state, "gemini", raw, headers, target.rpartition(":")[0], "streamGenerateContent" in target,
                     exc.status)
            return await _send(request, exc.status, json.dumps(gemini_wire.error_body(exc.status, exc.message))
                               .encode(), {})
        script = state.pick(parsed.model, parsed.messages)
        seen = state.record(parsed.model, body, parsed.stream, status=script.status, api="gemini", headers=headers)
        return await _serve(request, state, seen, _gemini_wire(parsed, f"fake-{next(_ids)}-{int(time.time())}"),
                            script)
    return handler


def routes(state_of: Callable[[web.Request], State]) -> list[web.RouteDef]:
    """The native routes, reading the fake's State through `state_of` (the server owns the app key)."""
    gemini = gemini_generate(state_of)
    return [web.post("/v1/messages", anthropic_messages(state_of)),
            web.post("/v1beta/models/{target}", gemini), web.post("/v1/models/{target}", gemini)]
