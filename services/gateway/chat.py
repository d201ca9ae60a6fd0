"""POST /v1/chat/completions: validate, try the cache, hand the request to a router over
Redis, then answer from the replies — one JSON body or a live SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway import cache_client, conversation, limits, sessions
from services.gateway.auth import Principal, bearer_token
from services.gateway.headers import cache_hit_headers, headers_for_head
from services.gateway.limits_reply import rate_limit_headers
from services.gateway.outcome import Outcome, cache_hit_account, ledger_record
from services.gateway.protocol import beyond_the_wire, parse_chat_request
from services.gateway.replies import Waiter
from services.gateway.sessions import Session
from services.gateway.sse import DONE, completion_to_chunks, frame
from services.gateway.state import CONFIG, HTTP, LEDGER_OUT, METRICS, REDIS, REPLIES
from shared import bus
from shared.chat_request import ChatCompletionRequest
from shared.config import Config, tier_deployments
from shared.errors import ApiError, InvalidRequest, NotFound, PayloadTooLarge, TimedOut, Unavailable
from shared.http import error_response, json_response
from shared.keys import CANCEL_CHANNEL, REQUEST_STREAM, cancelled
from shared.messages import DECISION_FIELD, Cancel, ChatRequest, Reply, ReplyKind, Tier, encode
from shared.sessions import answer_message

log = structlog.get_logger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer; never sent

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


@dataclass
class Caller:
    """Who is asking, as authentication found out (filled before the body is read, so a refused
    request is still recorded under its key)."""

    key_id: str = ""  # the virtual key's id, or the static key's hash; "" anonymous
    tenant: str = ""
    principal: Principal | None = None  # as admitted (services/gateway/limits.py): its limits and usage


@dataclass
class Call:
    """One client request on its way through the gateway."""

    request: web.Request
    request_id: str  # what the client sees: its own X-Request-ID, or one made here
    routing_id: str  # unique per call: routers, replies and cancels are keyed by it
    started: float
    chat: ChatCompletionRequest  # the request, validated once; everything below reads it
    body: dict[str, Any]  # chat.upstream_body(), a template and a session prepended: what the cache and routers get
    tier: str
    tenant: str
    directives: frozenset[str]
    deployment: str = ""  # one deployment the client named: no entropy routing, no cache
    key_id: str = ""
    template_id: str = ""
    session_id: str = ""
    outcome: Outcome = field(default_factory=Outcome)
    principal: Principal | None = None  # the key's limits: x-ratelimit-* headers on the answer
    session: Session | None = None  # the conversation this request continues (sessions.py)
    # The admission, left to the round trip that publishes the request (its session's turns read into it
    # there, for the router to prepend): None once admitted.
    pending: limits.PendingAdmission | None = None

    @property
    def stream(self) -> bool:
        return self.chat.streaming


async def chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    arrived = time.time()
    client_id = request.headers.get("X-Request-ID")
    request_id = client_id or f"req_{uuid.uuid4().hex}"
    metrics = request.app[METRICS]
    metrics.in_flight.inc()
    caller = Caller()
    outcome = Outcome()
    call: Call | None = None
    try:
        try:
            # Clients may reuse their IDs; two calls in flight under one ID must not share replies.
            routing_id = f"{client_id}:{uuid.uuid4().hex}" if client_id else request_id
            call = await _accept_call(request, request_id, routing_id, started, caller, outcome)
            response = await _answer_from_cache(call) or await _answer_from_router(call)
        except ApiError as exc:
            metrics.requests.labels("error", str(exc.status)).inc()
            outcome.failed(exc.status, exc)
            return await _send(request, error_response(exc, headers={"X-Request-ID": request_id}))
        except ConnectionResetError:
            # The client left while its body was read: nobody to answer (aiohttp drops the write).
            metrics.client_disconnects.inc()
            outcome.failed(CLIENT_CLOSED_REQUEST, None)
            outcome.error = "client_closed_request"
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        except Exception:  # a bug: the error middleware answers 500; the ledger records it as one
            outcome.status, outcome.decision, outcome.error = 500, outcome.decision or "error", "server_error"
            raise
        finally:
            metrics.in_flight.dec()
        outcome.status = outcome.status or response.status
        decision = response.headers.get("X-Routing-Decision", "error")
        metrics.requests.labels(decision, str(response.status)).inc()
        metrics.latency.labels(decision).observe(time.monotonic() - started)
        return await _send(request, response)
    finally:
        await finish(request.app, call, caller, outcome, request_id=request_id, arrived=arrived, started=started)


async def _send(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send a whole answer now (a stream has been sent already), so the finish step that runs after it
    adds nothing to the client's wait; aiohttp leaves a response already sent as it is."""
    if not response.prepared:
        with contextlib.suppress(ConnectionResetError):
            await response.prepare(request)
            await response.write_eof()
    return response


async def finish(app: web.Application, call: Call | None, caller: Caller, outcome: Outcome, *, request_id: str,
                 arrived: float, started: float) -> None:
    """The end of every request, answered, refused or failed, after its answer has gone out."""
    outcome.status = outcome.status or CLIENT_CLOSED_REQUEST  # no answer was made: the client left
    # (a session's turn is saved before the answer's last byte: by the router, or by _save_turn for the cache)
    out = app.get(LEDGER_OUT)
    if out is not None:  # first: a buffer append that cannot fail, whatever settling does
        chat = call.chat if call is not None else None
        out.emit(ledger_record(outcome, request_id=request_id, arrived=arrived,
                               latency_ms=(time.monotonic() - started) * 1000, key_id=caller.key_id,
                               tenant=caller.tenant, template_id=call.template_id if call else "",
                               session_id=call.session_id if call else "",
                               model=(chat.model or "") if chat is not None else "",
                               stream=chat.streaming if chat is not None else False))
    await limits.settle(app, caller.principal, outcome)  # a virtual key's tpm and spend: sent in the background


async def _accept_call(request: web.Request, request_id: str, routing_id: str, started: float, caller: Caller,
                       outcome: Outcome) -> Call:
    config = request.app[CONFIG]
    found = limits.identify_request(request.app, request.headers)  # static keys, anonymous callers: no I/O
    token_given = bool(bearer_token(request.headers))
    try:
        chat = parse_chat_request(await _read_body(request, config.gateway.max_body_bytes))
        tier, deployment = resolve_route(chat, request.match_info.get("deployment"), config)
        session_id = sessions.session_id_of(chat.session_id, request.headers)
    except ApiError:  # a key that is none is a 401 before a bad request is a 400
        await limits.admit(request.app, found, None, token_given, caller)
        raise
    # One round trip: a virtual key looked up, its models, budget, rpm and tpm checked and the request
    # charged; the session's stored turns read; the charges of answers finished before sent first. When
    # nothing between admission and publication needs Redis's answer (no cache, no template), that round
    # trip publishes the request too: the admission waits for it (Call.pending).
    key = sessions.caller_session_key(found, session_id) if session_id is not None else None
    targets = limits.route_targets(tier, deployment, config)
    outcome.deployment = deployment
    pending = (limits.pending_admission(request.app, found, targets, token_given, caller, key)
               if _publishes_unchanged(config, chat, deployment) else None)
    stored_turns: list[bytes] | None = None
    if pending is None:
        stored_turns = (await limits.admit_call(request.app, found, targets, token_given, caller,
                                                session_key=key)).session_turns
    call = Call(request=request, request_id=request_id, routing_id=routing_id, started=started, chat=chat,
                body=chat.upstream_body(), tier=tier, tenant=caller.tenant if pending is None else pending.tenant,
                directives=cache_client.cache_directives(request.headers.get("Cache-Control")), deployment=deployment,
                key_id=caller.key_id if pending is None else found.key_id, template_id=chat.template_id or "",
                session_id=session_id or "", outcome=outcome, principal=caller.principal, pending=pending)
    if chat.template_id is not None or chat.variables is not None:
        call.body["messages"] = await conversation.with_template(request.app, chat, call.body["messages"])
    if session_id is not None and key is not None:
        _continue_session(call, session_id, key, stored_turns)
    return call


def _continue_session(call: Call, session_id: str, key: str, stored_turns: list[bytes] | None) -> None:
    """The session's stored turns (none yet when the admission will read them into the published request
    for the router to prepend) before the request's own messages."""
    call.session = sessions.opened(session_id, key, stored_turns,
                                   call.request.app[CONFIG].gateway.session_max_tokens)
    call.body["messages"] = call.session.compose(call.body["messages"])


def _publishes_unchanged(config: Config, chat: ChatCompletionRequest, deployment: str) -> bool:
    """Whether the request goes to the routers as it is when admitted: no cache to look in or to store
    into, no template to render; only then can the admission's round trip publish it."""
    return (not config.gateway.cache_url or bool(deployment)) and chat.template_id is None and chat.variables is None


async def _save_turn(call: Call, answer: dict[str, Any] | None) -> None:
    """An answer from the cache: the gateway stores its turn (a router stores the turns it answers)."""
    if call.session is not None:
        await conversation.save_turn(call.request.app, call.session, call.body["messages"], answer, call.request_id)


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"Request body is larger than the {max_bytes}-byte limit.", code="payload_too_large")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body is larger than the {max_bytes}-byte limit.",
                              code="payload_too_large") from None


def served_models(config: Config) -> list[str]:
    """Every name resolve_route() accepts as `model` (and "", which it takes for auto, as it takes
    null): the tiers, their models, and each deployment by name."""
    names = [Tier.AUTO.value, Tier.DRAFTER.value, Tier.HEAVYWEIGHT.value, config.drafter.model,
             config.heavyweight.model, *deployment_tiers(config)]
    return [*dict.fromkeys(name for name in names if name), ""]


def deployment_tiers(config: Config) -> dict[str, str]:
    """Every configured deployment's name, and the tier it belongs to."""
    return {deployment.name: tier.value for tier, upstream in ((Tier.DRAFTER, config.drafter),
                                                               (Tier.HEAVYWEIGHT, config.heavyweight))
            for deployment in tier_deployments(tier.value, upstream)}


def resolve_route(chat: ChatCompletionRequest, path_deployment: str | None, config: Config) -> tuple[str, str]:
    """The tier and the deployment ("" for none) a request goes to. A deployment named in the path
    (/v1/{deployment}/chat/completions), the body's `backend` or `metadata.deployment` is served by
    itself alone; so is `model` naming a deployment that is not a tier or a tier's model."""
    named = (path_deployment, None) if path_deployment else chat.deployment
    if named is None:
        try:
            return resolve_tier(chat.model, config), ""
        except NotFound:
            if chat.model not in deployment_tiers(config):
                raise
            named = (chat.model, "model")
    name, param = named
    tier = deployment_tiers(config).get(name)
    if tier is None:
        raise NotFound(f"The deployment `{name}` does not exist. Use one of: {', '.join(deployment_tiers(config))}.",
                       param=param, code="model_not_found")
    return tier, name


def resolve_tier(model: str | None, config: Config) -> str:
    """'auto' (or no model) routes by entropy; a tier name or a tier's model forces that tier."""
    if model in (None, "", Tier.AUTO):
        return Tier.AUTO
    if model in (Tier.DRAFTER, config.drafter.model):
        return Tier.DRAFTER
    if model in (Tier.HEAVYWEIGHT, config.heavyweight.model):
        return Tier.HEAVYWEIGHT
    raise NotFound(f"The model `{model}` does not exist. Use auto, drafter, heavyweight, "
                   f"{config.drafter.model}, {config.heavyweight.model} or a deployment's name.", param="model",
                   code="model_not_found")


async def _answer_from_cache(call: Call) -> web.StreamResponse | None:
    app = call.request.app
    config = app[CONFIG]
    if not config.gateway.cache_url or cache_client.CACHE_CONTROL_NO_CACHE in call.directives or call.deployment:
        return None
    try:
        hit = await cache_client.lookup(app[HTTP], config.gateway.cache_url, call.tenant, call.body,
                                        config.gateway.cache_timeout_s)
    except cache_client.CacheUnavailable as exc:
        app[METRICS].cache_lookups.labels("error").inc()
        log.warning("cache lookup failed, treating as a miss", error=str(exc))
        call.outcome.cache = "miss"
        return None
    app[METRICS].cache_lookups.labels(hit.tier if hit else "miss").inc()
    call.outcome.cache = hit.tier if hit else "miss"
    if hit is None:
        return None
    call.outcome.decision, call.outcome.tier = "cache_hit", Tier.DRAFTER.value
    completion = cache_client.served_from_cache(hit.completion)
    call.outcome.account = cache_hit_account(completion, config.heavyweight.price)
    headers = cache_hit_headers(call.request_id, call.started, hit.tier, hit.similarity, hit.verified)
    if call.principal is not None:
        headers.update(rate_limit_headers(call.principal))
    if call.session is not None:
        headers[sessions.HEADER] = call.session.id
        await _save_turn(call, answer_message(completion))
    if not call.stream:
        return json_response(_with_session(call, completion), headers=headers)
    response = web.StreamResponse(headers={**headers, **SSE_HEADERS})
    chunks = completion_to_chunks(completion, call.chat.include_usage)
    if call.session is not None:
        for chunk in chunks:
            chunk[sessions.FIELD] = call.session.id
    if config.routing.stream_mode == "progressive" and call.tier == Tier.AUTO:
        # As every auto-routed stream in progressive mode: the decision in the last chunk.
        chunks[-1][DECISION_FIELD] = {"decision": "cache_hit", "tier": Tier.DRAFTER.value, "seam_tokens": None,
                                      "draft_entropy": None, "reason": None, "speculation": "none",
                                      "cache": hit.tier}
    try:
        await response.prepare(call.request)
        await response.write(b"".join(frame(c) for c in chunks) + DONE)
        await response.write_eof()
    except ConnectionResetError:  # the client left; no router was working for it
        app[METRICS].client_disconnects.inc()
    return response


async def _answer_from_router(call: Call) -> web.StreamResponse:
    app = call.request.app
    config = app[CONFIG]
    replies = app[REPLIES]
    deadline = time.monotonic() + config.gateway.request_timeout_s
    try:
        payload = _encode_request(_message(call))
    except ApiError:
        if call.pending is not None:  # a token that is no key is a 401 before a bad request is a 400
            await call.pending.authenticate(app)
        raise
    waiter = replies.expect(call.routing_id)
    try:
        try:
            replies.published(waiter, await _publish(call, payload))
        except RedisError as exc:
            replies.trouble(exc)
            raise Unavailable("The gateway cannot reach its message bus; try again shortly.",
                              code="bus_unavailable") from exc
        if call.stream:
            return await _stream(call, waiter, config.gateway.request_timeout_s)
        return await _plain(call, waiter, deadline)
    except TimedOut:
        await _cancel(app, call.routing_id)
        raise
    except asyncio.CancelledError:
        app[METRICS].client_disconnects.inc()
        await asyncio.shield(_cancel(app, call.routing_id))
        raise
    finally:
        replies.forget(call.routing_id)


def _message(call: Call) -> ChatRequest:
    config = call.request.app[CONFIG]
    # A gateway that never looks answers up has no use for them being stored.
    cache_store = (bool(config.gateway.cache_url) and cache_client.CACHE_CONTROL_NO_STORE not in call.directives
                   and not call.deployment)
    return ChatRequest(request_id=call.routing_id, reply_to=call.request.app[REPLIES].stream, body=call.body,
                       tier=call.tier, deadline=time.time() + config.gateway.request_timeout_s, tenant=call.tenant,
                       cache_store=cache_store, deployment=call.deployment,
                       # Cache-Control: no-store: nothing of it is kept, so it is never audited either.
                       auditable=cache_client.CACHE_CONTROL_NO_STORE not in call.directives,
                       client_request_id=call.request_id if call.request_id != call.routing_id else "",
                       session=call.session.saving(config.gateway.session_max_tokens,
                                                   config.gateway.session_ttl_s).to_wire()
                       if call.session is not None else None)


async def _publish(call: Call, payload: bytes) -> bytes:
    """Put the request on the routers' stream: with its admission when that was left to this round trip
    (Call.pending), else on its own. The entry's id."""
    app = call.request.app
    config = app[CONFIG]
    publication = bus.Publication(REQUEST_STREAM, payload, config.bus.request_stream_maxlen)
    if call.pending is None:
        return await bus.publish(app[REDIS], publication.stream, publication.payload, publication.maxlen)
    admitted = await call.pending.publishing(app, publication)
    call.pending, call.principal = None, admitted.principal
    if admitted.entry_id is not None:
        return admitted.entry_id
    # Admitted, not published: the key's tenant is no longer the one this gateway remembered. The
    # request goes as it would have without the wait: the key's tenant, the session's turns composed here.
    call.tenant = admitted.principal.tenant
    if call.session is not None:
        _continue_session(call, call.session.id, call.session.key, admitted.session_turns)
    return await bus.publish(app[REDIS], publication.stream, _encode_request(_message(call)), publication.maxlen)


def _encode_request(message: ChatRequest) -> bytes:
    """Valid JSON the wire cannot carry (an integer beyond 64 bits in a pass-through field) is the
    client's error, not ours."""
    try:
        return encode(message)
    except OverflowError:
        raise beyond_the_wire(message.body) or InvalidRequest(
            "The request holds a value the gateway cannot forward.", code="invalid_value") from None


async def _next(waiter: Waiter, timeout_s: float) -> Reply:
    if not waiter.queue.empty():
        return waiter.queue.get_nowait()
    try:
        async with asyncio.timeout(max(timeout_s, 0.0)):  # unlike wait_for on 3.11, no task per wait
            return await waiter.queue.get()
    except TimeoutError:
        raise TimedOut("The request timed out before an answer was ready.", code="timeout") from None


async def _plain(call: Call, waiter: Waiter, deadline: float) -> web.Response:
    head = await _next(waiter, deadline - time.monotonic())
    if head.kind == ReplyKind.ERROR:
        return _router_error(call, head)
    call.outcome.head(head)
    reply = await _next(waiter, deadline - time.monotonic())
    if reply.kind != ReplyKind.COMPLETION:
        return _router_error(call, reply)
    call.outcome.last(reply)  # a session's turn: stored by the router with this reply
    return json_response(_with_session(call, reply.data), headers=_head_headers(call, head))


def _with_session(call: Call, completion: dict[str, Any] | None) -> dict[str, Any] | None:
    """A session's answer names its session (`session_id`, beside OpenAI's fields)."""
    if call.session is not None and completion is not None:
        completion[sessions.FIELD] = call.session.id
    return completion


def _head_headers(call: Call, head: Reply) -> dict[str, str]:
    headers = headers_for_head(call.request_id, call.started, head)
    if call.deployment:
        headers["X-Routing-Deployment"] = call.deployment
    if call.principal is not None:
        headers.update(rate_limit_headers(call.principal))
    if call.session is not None:
        headers[sessions.HEADER] = call.session.id
    return headers


async def _stream(call: Call, waiter: Waiter, idle_timeout_s: float) -> web.StreamResponse:
    """Headers go out with the routing decision; chunks follow as routers write them."""
    head = await _next(waiter, idle_timeout_s)
    if head.kind == ReplyKind.ERROR:
        return _router_error(call, head)
    call.outcome.head(head)
    response = web.StreamResponse(headers={**_head_headers(call, head), **SSE_HEADERS})
    try:
        await response.prepare(call.request)
        await _relay(call, response, waiter, idle_timeout_s)
    except TimedOut as exc:
        call.outcome.failed(exc.status, exc)
        await _cancel(call.request.app, call.routing_id)
        with contextlib.suppress(ConnectionResetError):
            await response.write(frame(exc.body()))
    except ConnectionResetError:
        call.outcome.failed(CLIENT_CLOSED_REQUEST, None)
        call.outcome.error = "client_closed_request"
        call.request.app[METRICS].client_disconnects.inc()
        await _cancel(call.request.app, call.routing_id)
    return response


async def _relay(call: Call, response: web.StreamResponse, waiter: Waiter, idle_timeout_s: float) -> None:
    """Write replies as they come, batching whatever already arrived into one write."""
    finished = False
    while not finished:
        replies = [await _next(waiter, idle_timeout_s)]
        while not waiter.queue.empty():
            replies.append(waiter.queue.get_nowait())
        payload, finished = _sse_payload(replies, call.outcome, call.session)
        await response.write(payload)  # a session's turn: stored by the router with its END
        if call.outcome.ttft_ms is None and _has_content(replies):
            call.outcome.ttft_ms = round((time.monotonic() - call.started) * 1000, 3)
    await response.write_eof()


def _has_content(replies: list[Reply]) -> bool:
    return any(reply.kind == ReplyKind.CHUNK and reply.data and any(
        (choice.get("delta") or {}).get("content") or (choice.get("delta") or {}).get("tool_calls")
        for choice in reply.data.get("choices") or ()) for reply in replies)


def _sse_payload(replies: list[Reply], outcome: Outcome, session: Session | None = None) -> tuple[bytes, bool]:
    """Frame a batch of replies; True once the stream is over (END or ERROR). A session's chunks are
    marked with its id."""
    parts = []
    for reply in replies:
        if reply.kind == ReplyKind.CHUNK and reply.data is not None:
            if session is not None:
                session.mark(reply.data)
            final = reply.data.get(DECISION_FIELD)
            if isinstance(final, dict):
                outcome.decided(final)
            parts.append(frame(reply.data))
        elif reply.kind == ReplyKind.ERROR and reply.data is not None:
            outcome.last(reply)
            outcome.failed(reply.status or 502, reply.data)
            parts.append(frame(reply.data))
            return b"".join(parts), True
        elif reply.kind == ReplyKind.END:
            outcome.last(reply)
            parts.append(DONE)
            return b"".join(parts), True
    return b"".join(parts), False


def _router_error(call: Call, reply: Reply) -> web.Response:
    call.outcome.last(reply)
    call.outcome.failed(reply.status or 502, reply.data)
    body = reply.data or {"error": {"message": "The router failed.", "type": "server_error", "param": None,
                                    "code": None}}
    headers = {"X-Request-ID": call.request_id}
    if reply.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after_s)))
    return web.json_response(body, status=reply.status or 502, headers=headers)


async def _cancel(app: web.Application, request_id: str) -> None:
    """Tell the routers, in one round trip: the message stops a router working on it; the key,
    kept as long as the request could still be waiting, stops one that picks it up later."""
    ttl_s = math.ceil(app[CONFIG].gateway.request_timeout_s)
    try:
        async with app[REDIS].pipeline(transaction=False) as pipe:
            pipe.set(cancelled(request_id), 1, ex=ttl_s)
            pipe.publish(CANCEL_CHANNEL, encode(Cancel(request_id=request_id)))
            await pipe.execute()
    except RedisError as exc:
        log.warning("could not cancel the router's work", request_id=request_id, error=str(exc))
