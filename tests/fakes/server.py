"""The fake upstream's aiohttp app: scripted OpenAI chat completions, streamed or whole, recorded as Seen;
the same scripts answer on Anthropic's and Gemini's native routes (tests.fakes.native).

A request is marked finished just before its last write, so a client that has read the whole reply
always finds it `completed` in `seen`; a failing last write marks it back.
Client disconnects are noticed three ways, whichever comes first: handler cancellation (the runner is
built with `handler_cancellation=True`), a closing transport before a write, or a failing write.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tests.fakes import native, wire
from tests.fakes.garbage import CUT, DATA_MODES, PAGE_MODES, bad_data
from tests.fakes.scripts import Script, tokens_due
from tests.fakes.state import BadRequest, Seen, State, parse_shape, prompt_words

STATE = web.AppKey("state", State)


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes, last: bool = False) -> None:
    """Write now, or fail at once if the client has gone; the last write carries the end of the body."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client closed the connection")
    await (resp.write_eof(data) if last else resp.write(data))


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _send(request: web.Request, resp: web.Response, status: int, body: bytes) -> None:
    resp.set_status(status)
    resp.content_type = "application/json"
    resp.body = body
    await resp.prepare(request)
    await resp.write_eof()


async def _stream(request: web.Request, resp: web.StreamResponse, seen: Seen, plan: wire.Plan, script: Script,
                  shape: wire.Shape) -> None:
    """Write tokens on an absolute schedule: the first after ttft, then one every 1/tokens_per_s.

    Every token that is due goes out in one write, so a loaded server catches up instead of drifting
    slower than scripted, and a script without a token rate costs a single write.
    """
    state = request.app[STATE]
    # Held until the test releases it: a threading.Event, set from the test's thread, so polled here.
    while script.hold is not None and not script.hold.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    cid, created = state.next_id(), int(time.time())
    resp.content_type = "text/event-stream"
    resp.headers["Cache-Control"] = "no-cache"
    await resp.prepare(request)
    await _pause(script.ttft_s)
    loop = asyncio.get_running_loop()
    first, n = loop.time(), len(plan.tokens)
    gap = 1 / script.tokens_per_s if script.tokens_per_s else 0.0
    pending = [plan.role]
    while seen.tokens_sent < n:
        await _pause(first + seen.tokens_sent * gap - loop.time())
        due = tokens_due(seen.tokens_sent, n, gap, loop.time() + state.tick_s - first)
        if due == n:
            break
        chunks = [*pending, *plan.tokens[seen.tokens_sent:due]]
        await _write(request, resp, b"".join(wire.sse(cid, created, c) for c in chunks))
        pending, seen.tokens_sent = [], due
    tail = [*pending, *plan.tokens[seen.tokens_sent:], plan.final]
    if shape.include_usage:
        tail.append(wire.usage_chunk(shape.model, prompt_words(seen.body["messages"]), n))
    written, seen.tokens_sent = seen.tokens_sent, n
    state.finish(seen, completed=True)
    try:
        await _write(request, resp, b"".join(wire.sse(cid, created, c) for c in tail) + wire.DONE, last=True)
    except ConnectionResetError:
        seen.tokens_sent = written
        raise


async def _garbage_stream(request: web.Request, resp: web.StreamResponse, seen: Seen, plan: wire.Plan,
                          script: Script, shape: wire.Shape) -> None:
    """A stream broken the way `script.garbage` says, after `script.garbage_after` good tokens."""
    state = request.app[STATE]
    cid, created = state.next_id(), int(time.time())
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    await _pause(script.ttft_s)
    after = min(script.garbage_after, len(plan.tokens))
    good = [plan.role, *plan.tokens[:after]] if after else []
    head = b"".join(wire.sse(cid, created, c) for c in good)
    seen.tokens_sent = after
    if script.garbage in DATA_MODES:
        sample = wire.sse(cid, created, plan.tokens[after] if after < len(plan.tokens) else plan.role)[6:-2]
        rest = [*([] if after else [plan.role]), *plan.tokens[after:], plan.final]
        if shape.include_usage:
            rest.append(wire.usage_chunk(shape.model, prompt_words(seen.body["messages"]), len(plan.tokens)))
        body = (head + b"data: " + bad_data(script.garbage, sample) + b"\n\n"
                + b"".join(wire.sse(cid, created, c) for c in rest) + wire.DONE)
        seen.tokens_sent = len(plan.tokens)
        state.finish(seen, completed=True)
        await _write(request, resp, body, last=True)
    elif script.garbage == "truncated":
        state.finish(seen, completed=True)
        await _write(request, resp, head, last=True)
    else:  # cut_mid_json: the connection drops in the middle of a data line
        await _write(request, resp, head + CUT)
        state.finish(seen, completed=True)
        assert request.transport is not None
        request.transport.abort()


async def _page(request: web.Request, resp: web.Response, seen: Seen, script: Script) -> None:
    """A body that is no chat completion (an HTML error page, JSON where a stream belongs)."""
    await _pause(script.ttft_s)
    status, content_type, body = PAGE_MODES[script.garbage or ""]
    request.app[STATE].finish(seen, completed=True)
    resp.set_status(status)
    resp.content_type = content_type
    resp.body = body
    await resp.prepare(request)
    await resp.write_eof()


async def _garbage_whole(request: web.Request, resp: web.Response, seen: Seen, plan: wire.Plan,
                         script: Script) -> None:
    """A non-streamed request: a data mode's bad value, or a stream mode's body cut in half, as the body."""
    await _pause(script.ttft_s)
    cid, created = request.app[STATE].next_id(), int(time.time())
    if script.garbage in DATA_MODES:
        body = bad_data(script.garbage, wire.sse(cid, created, plan.tokens[0] if plan.tokens else plan.role)[6:-2])
    else:
        whole = wire.whole(cid, created, wire.usage(prompt_words(seen.body["messages"]), len(plan.tokens)), plan.whole)
        body = whole[:len(whole) // 2]
    request.app[STATE].finish(seen, completed=True)
    await _send(request, resp, 200, body)


async def _complete(request: web.Request, resp: web.Response, seen: Seen, plan: wire.Plan, script: Script) -> None:
    n = len(plan.tokens)
    generation = (n - 1) / script.tokens_per_s if script.tokens_per_s and n > 1 else 0.0
    await _pause(script.ttft_s + generation)
    usage = wire.usage(prompt_words(seen.body["messages"]), n)
    body = wire.whole(request.app[STATE].next_id(), int(time.time()), usage, plan.whole)
    seen.tokens_sent = n
    request.app[STATE].finish(seen, completed=True)
    await _send(request, resp, 200, body)


async def _fail(request: web.Request, resp: web.Response, seen: Seen, script: Script) -> None:
    await _pause(script.ttft_s)
    request.app[STATE].finish(seen, completed=True)
    if script.retry_after_s is not None:
        resp.headers["Retry-After"] = f"{script.retry_after_s:g}"
    await _send(request, resp, script.status, wire.error_body(script.status, f"scripted failure {script.status}"))


async def _error_stream(request: web.Request, resp: web.StreamResponse, seen: Seen, plan: wire.Plan,
                        script: Script) -> None:
    """A 200 stream that carries an error object after `script.garbage_after` good tokens, and ends."""
    assert script.stream_error is not None
    cid, created = request.app[STATE].next_id(), int(time.time())
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    await _pause(script.ttft_s)
    after = min(script.garbage_after, len(plan.tokens))
    good = b"".join(wire.sse(cid, created, c) for c in [plan.role, *plan.tokens[:after]])
    error = wire.error_body(script.stream_error, f"scripted stream error {script.stream_error}")
    seen.tokens_sent = after
    request.app[STATE].finish(seen, completed=True)
    await _write(request, resp, good + b"data: " + error + b"\n\n", last=True)


async def _reject(request: web.Request, resp: web.Response, body: object, exc: BadRequest) -> None:
    """Answer a malformed request with the real API's 400, and record it so tests can see what was sent."""
    raw = body if isinstance(body, dict) else {}
    model = raw.get("model") if isinstance(raw.get("model"), str) else ""
    seen = request.app[STATE].record(model, raw, raw.get("stream") is True, status=400)
    request.app[STATE].finish(seen, completed=True)
    await _send(request, resp, 400, wire.error_body(400, str(exc), exc.param))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    resp = web.Response()
    body: object = None
    try:
        body = await request.json()
        shape = parse_shape(body)
    except ValueError:
        await _reject(request, resp, body, BadRequest(None, "We could not parse the JSON body of your request."))
        return resp
    except BadRequest as exc:
        await _reject(request, resp, body, exc)
        return resp
    assert isinstance(body, dict)
    script = state.pick(shape.model, body["messages"])
    seen = state.record(shape.model, body, body.get("stream") is True, status=script.status,
                        authorization=request.headers.get("Authorization"))
    plan = state.plan(script, shape)
    planned = 0 if script.status != 200 else len(plan.tokens)
    try:
        if script.garbage in PAGE_MODES:
            await _page(request, resp, seen, script)
        elif script.status != 200:
            await _fail(request, resp, seen, script)
        elif seen.stream:
            resp = web.StreamResponse()
            if script.stream_error is not None:
                await _error_stream(request, resp, seen, plan, script)
            else:
                await (_garbage_stream if script.garbage else _stream)(request, resp, seen, plan, script, shape)
        elif script.garbage:
            await _garbage_whole(request, resp, seen, plan, script)
        else:
            await _complete(request, resp, seen, plan, script)
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        state.finish(seen, completed=False, closed_early=seen.tokens_sent < planned)
        if isinstance(exc, asyncio.CancelledError):
            raise
    return resp


async def list_models(request: web.Request) -> web.Response:
    body = wire.models_body(request.app[STATE].models(), int(time.time()))
    return web.Response(body=body, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(state: State) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_routes(native.routes(lambda request: request.app[STATE]))
    return app


async def start_runner(state: State, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `state` on host:port (0 = a free port); returns the runner and the bound port."""
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]
