"""The fake upstream's aiohttp app: scripted OpenAI chat completions, streamed or whole, recorded as Seen.

A request is marked finished just before its last write, so a client that has read the whole reply
always finds it `completed` in `seen`; a failing last write marks it back.
Client disconnects are noticed three ways, whichever comes first: handler cancellation (the runner is
built with `handler_cancellation=True`), a closing transport before a write, or a failing write.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tests.fakes import wire
from tests.fakes.scripts import Script
from tests.fakes.state import BadRequest, Seen, State, parse_shape, prompt_words

STATE = web.AppKey("state", State)


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client closed the connection")
    await resp.write(data)


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _send(request: web.Request, resp: web.Response, status: int, body: bytes) -> None:
    resp.set_status(status)
    resp.content_type = "application/json"
    resp.body = body
    await resp.prepare(request)
    await resp.write_eof()


async def _stream(request: web.Request, resp: web.StreamResponse, seen: Seen, script: Script,
                  shape: wire.Shape) -> None:
    state = request.app[STATE]
    plan = state.plan(script, shape)
    cid, created = state.next_id(), int(time.time())
    resp.content_type = "text/event-stream"
    resp.headers["Cache-Control"] = "no-cache"
    await resp.prepare(request)
    await _pause(script.ttft_s)
    await _write(request, resp, wire.sse(cid, created, plan.role))
    gap = 1 / script.tokens_per_s if script.tokens_per_s else 0.0
    for i, chunk in enumerate(plan.tokens):
        if i:
            await _pause(gap)
        await _write(request, resp, wire.sse(cid, created, chunk))
        seen.tokens_sent = i + 1
    await _write(request, resp, wire.sse(cid, created, plan.final))
    if shape.include_usage:
        usage = wire.usage(prompt_words(seen.body["messages"]), len(plan.tokens))
        await _write(request, resp, wire.sse(cid, created, wire.usage_chunk(shape.model, usage)))
    state.finish(seen, completed=True)
    await _write(request, resp, wire.DONE)
    await resp.write_eof()


async def _complete(request: web.Request, resp: web.Response, seen: Seen, script: Script,
                    shape: wire.Shape) -> None:
    n = len(wire.planned_tokens(script, shape)[0])
    generation = (n - 1) / script.tokens_per_s if script.tokens_per_s and n > 1 else 0.0
    await _pause(script.ttft_s + generation)
    body = wire.completion_body(script, shape, request.app[STATE].next_id(), int(time.time()),
                                prompt_words(seen.body["messages"]))
    seen.tokens_sent = n
    request.app[STATE].finish(seen, completed=True)
    await _send(request, resp, 200, body)


async def _fail(request: web.Request, resp: web.Response, seen: Seen, script: Script) -> None:
    await _pause(script.ttft_s)
    request.app[STATE].finish(seen, completed=True)
    await _send(request, resp, script.status, wire.error_body(script.status, f"scripted failure {script.status}"))


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
    seen = state.record(shape.model, body, body.get("stream") is True, status=script.status)
    planned = 0 if script.status != 200 else len(wire.planned_tokens(script, shape)[0])
    try:
        if script.status != 200:
            await _fail(request, resp, seen, script)
        elif seen.stream:
            resp = web.StreamResponse()
            await _stream(request, resp, seen, script, shape)
        else:
            await _complete(request, resp, seen, script, shape)
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
    return app


async def start_runner(state: State, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `state` on host:port (0 = a free port); returns the runner and the bound port."""
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]
