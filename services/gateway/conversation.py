"""The request path's side of templates and sessions: render a request's template, save the turn of an
answer from the cache — the HTTP errors and the Redis calls around the pure parts (templates.py, sessions.py)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway import sessions, template_store
from services.gateway.sessions import Session
from services.gateway.state import CONFIG, METRICS, REDIS, TEMPLATES_CONFIGURED
from services.gateway.templates import MissingVariable
from shared.chat_request import ChatCompletionRequest
from shared.errors import InvalidRequest, NotFound, Unavailable

log = structlog.get_logger(__name__)


async def with_template(app: web.Application, chat: ChatCompletionRequest,
                        messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with the request's template rendered first, as a system message of its own (a system
    message the client sent stays, right after it)."""
    if chat.template_id is None:
        raise InvalidRequest("`variables` fill a prompt template's fields: name the template in "
                             "metadata.template_id.", param="variables", code="template_id_required")
    try:
        template = await template_store.find(app[REDIS], app[TEMPLATES_CONFIGURED], chat.template_id)
    except RedisError as exc:
        raise Unavailable("Prompt templates cannot be read right now (Redis is unavailable); try again shortly.",
                          code="templates_unavailable") from exc
    if template is None:
        raise NotFound(f"The prompt template `{chat.template_id}` does not exist.", param="metadata.template_id",
                       code="template_not_found")
    try:
        system = template.render(chat.variables or {})
    except MissingVariable as exc:
        raise InvalidRequest(f"The prompt template `{template.id}` needs the variable `{exc.name}`: set it in "
                             f"`variables`.", param=f"variables.{exc.name}", code="missing_template_variable") from None
    return [{"role": "system", "content": system}, *messages]


async def save_turn(app: web.Application, session: Session, messages: list[dict[str, Any]],
                    answer: dict[str, Any] | None, request_id: str) -> None:
    """An answer the gateway made itself (from the cache): its turn saved before the answer's last byte,
    so that the client's next turn sees it (a router's answer is saved by the router). A failure loses
    the turn (logged, counted), never the answer."""
    if answer is None:
        return
    config = app[CONFIG].gateway
    try:
        await sessions.save(app[REDIS], session, messages, answer, config.session_ttl_s, config.session_max_tokens)
        app[METRICS].session_turns.labels("saved").inc()
    except RedisError as exc:
        app[METRICS].session_turns.labels("failed").inc()
        log.warning("session turn not saved", request_id=request_id, session_id=session.id, error=str(exc))
