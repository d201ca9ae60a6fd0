"""GET /openapi.json: the chat completions API as this gateway validates it, generated from the
request model (never a second, hand-written copy), for clients, docs and the fuzz test."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from services.gateway import feedback as feedback_api
from services.gateway.chat import served_models
from services.gateway.protocol import request_schema
from services.gateway.state import CONFIG
from shared import __version__, fastjson
from shared.chat_request import ChatCompletionRequest
from shared.config import Config
from shared.errors import error_body
from shared.messages import Tier

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {"400": "Invalid request: malformed JSON, a bad field (`param` names it)",
                  "401": "Missing, unknown, revoked or expired API key (invalid_api_key)",
                  "403": "The key may not do this, or use this model (model_not_allowed)",
                  "404": "Unknown model", "413": "Body too large",
                  "429": "The key's rpm or tpm (rate_limit_exceeded, with Retry-After), its budget "
                         "(insufficient_quota), or the upstream's rate limit",
                  "502": "The upstream failed",
                  "503": "Redis unreachable, or the heavyweight full with routing.degraded_mode: reject "
                         "(heavyweight_unavailable, with Retry-After)",
                  "504": "No answer in time"}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"],
                             "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                            "param": {"type": ["string", "null"]},
                                            "code": {"type": ["string", "null"]}}}},
    "example": error_body("Invalid type for 'stream': expected a boolean, but got a string instead.",
                          "invalid_request_error", "stream", "invalid_type"),
}
ROUTING_HEADERS = {
    "X-Routing-Decision": {"enum": ["accept", "escalate", "cache_hit", "progressive", "forced", "degraded"]},
    "X-Routing-Tier": {"enum": [Tier.DRAFTER.value, Tier.HEAVYWEIGHT.value]},
    "X-Draft-Entropy": {"type": "string", "pattern": r"^\d+\.\d{3}$"},
    "X-Speculation": {"enum": ["none", "cancelled", "used"]},
    "X-Request-ID": {"type": "string"},
}
# Absent on progressive streams, whose headers leave before the draft is judged whole: the last
# chunk's `draftgate` field carries the entropy and speculation instead.
DECIDED_HEADERS = frozenset({"X-Draft-Entropy", "X-Speculation"})
# Optional: on cache hits, the tier, the cosine and (semantic hits) the checks that passed the hit;
# the cost when it is known as the headers go (plain answers); the learned policy's risk.
OPTIONAL_HEADERS = {
    "X-Cost-USD": {"type": "string", "pattern": r"^\d+\.\d{8}$"},
    "X-Draft-Risk": {"type": "string", "pattern": r"^[01]\.\d{3}$"},
    "X-Cache": {"enum": ["exact", "semantic"]},
    "X-Cache-Similarity": {"type": "string", "pattern": r"^\d+\.\d{4}$"},
    "X-Cache-Verified": {"type": "string", "examples": ["learned", "rules", "learned+drafter"]},
    "X-Routing-Deployment": {"type": "string"},  # with X-Routing-Decision: forced (a deployment the client named)
    "X-Degraded": {"enum": ["true"]},  # the heavyweight was full: the drafter answered (routing.degraded_mode)
    # A virtual key with rpm / tpm (services/gateway/limits.py), as OpenAI names them.
    **{f"x-ratelimit-{field}-{kind}": {"type": "string"} for field in ("limit", "remaining", "reset")
       for kind in ("requests", "tokens")},
}


def openapi_document(config: Config) -> dict[str, Any]:
    schema = request_schema(served_models(config), REF)
    components: dict[str, Any] = schema.pop("$defs")
    components[ChatCompletionRequest.__name__] = schema
    components["Error"] = ERROR_SCHEMA
    error = {"content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    answer = {
        "description": "A chat.completion object, or with `stream: true` chat.completion.chunk events ending "
                       "in `data: [DONE]`",
        "headers": {**{name: {"required": name not in DECIDED_HEADERS, "schema": value}
                       for name, value in ROUTING_HEADERS.items()},
                    **{name: {"required": False, "schema": value} for name, value in OPTIONAL_HEADERS.items()}},
        "content": {"application/json": {"schema": {"type": "object"}},
                    # Per event: a chunk's JSON, or [DONE] last.
                    "text/event-stream": {"schema": {"type": "object", "required": ["data"],
                                                     "properties": {"data": {"type": "string"}}}}},
    }
    body = {"$ref": REF.format(model=ChatCompletionRequest.__name__)}
    operation = {
        "operationId": "createChatCompletion",
        "summary": "Answer a chat, by the drafter when it is confident, else by the heavyweight",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": answer, **{code: {**error, "description": text} for code, text in ERROR_STATUSES.items()}},
    }
    feedback = {
        "operationId": "createFeedback",
        "summary": "A client's verdict on an answer it got: stored with the request's ledger record, counted by the "
                   "audit",
        "requestBody": {"required": True, "content": {"application/json": {"schema": feedback_api.BODY_SCHEMA}}},
        "responses": {"202": {"description": "Queued for the ledger",
                              "content": {"application/json": {"schema": feedback_api.ACCEPTED_SCHEMA}}},
                      **{code: {**error, "description": ERROR_STATUSES[code]} for code in ("400", "401", "503")}},
    }
    audit = {
        "operationId": "getAudit",
        "summary": "The closed-loop audit's recent verdicts and disagreement rates (a client key: its own tenant's)",
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": {"description": "Rates over the last audit.window audits and the latest verdicts",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **{code: {**error, "description": ERROR_STATUSES[code]} for code in ("400", "401", "503")}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "draftgate", "version": __version__,
                 "description": "An OpenAI-compatible gateway: OpenAI's chat completions request, validated as "
                                "OpenAI does; unknown fields pass through to the upstream."},
        "paths": {"/v1/chat/completions": {"post": operation}, "/v1/feedback": {"post": feedback},
                  "/v1/system/audit": {"get": audit}},
        "components": {"schemas": components},
    }


@functools.cache
def _rendered(config: Config) -> bytes:
    return fastjson.dumps(openapi_document(config))


async def openapi(request: web.Request) -> web.Response:
    """Built once per configuration: generating the schema takes milliseconds."""
    return web.Response(body=_rendered(request.app[CONFIG]), content_type="application/json")
