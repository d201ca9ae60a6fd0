"""POST /v1/feedback: a client's verdict on an answer it got, `{request_id, verdict: good|bad, comment}`.

Validated here (400 naming the bad parameter), then published as a `Feedback` message on FEEDBACK_STREAM,
where the ledger service stores it with the request's record, and counted in the audit's metric
(`draftgate_audit_total{verdict="client_good"|"client_bad"}`) and cluster totals (AUDIT_COUNTS, shown
by GET /v1/system/audit), in the same round trip. Answered 202: the label is queued, not yet stored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from services.gateway import limits
from services.gateway.auth import bearer_token
from services.gateway.state import CONFIG, REDIS
from shared.errors import InvalidRequest, Unavailable
from shared.http import json_response
from shared.keys import AUDIT_COUNTS, FEEDBACK_STREAM, MESSAGE_FIELD
from shared.messages import Feedback, encode

VERDICTS = ("good", "bad")
MAX_REQUEST_ID_CHARS = 256
MAX_COMMENT_CHARS = 4000
# What parse_feedback accepts, for /openapi.json (tests/unit/test_feedback.py holds the two equal).
BODY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["request_id", "verdict"],
    "properties": {
        "request_id": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_ID_CHARS, "pattern": r"\S",
                       "description": "The X-Request-ID of the answer"},
        "verdict": {"enum": list(VERDICTS)},
        "comment": {"type": ["string", "null"], "maxLength": MAX_COMMENT_CHARS},
    },
}
ACCEPTED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["id", "object", "request_id", "verdict", "created", "status"],
    "properties": {"id": {"type": "string"}, "object": {"const": "feedback"}, "request_id": {"type": "string"},
                   "verdict": {"enum": list(VERDICTS)}, "created": {"type": "integer"},
                   "status": {"const": "accepted"}},
}


@dataclass(frozen=True)
class FeedbackMetrics:
    audits: Counter  # the audit's draftgate_audit_total, the gateway's share of it


FEEDBACK_METRICS = web.AppKey("feedback_metrics", FeedbackMetrics)


def create_feedback_metrics(registry: CollectorRegistry) -> FeedbackMetrics:
    return FeedbackMetrics(Counter("draftgate_audit_total", "Client feedback counted with the audits' verdicts: "
                                   "client_good, client_bad (the routers count the audits' own)", ["verdict"],
                                   registry=registry))


@dataclass(frozen=True)
class FeedbackBody:
    request_id: str
    verdict: str
    comment: str


def parse_feedback(raw: bytes) -> FeedbackBody:
    """The body, or InvalidRequest naming what is wrong with it. Unknown fields are ignored."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    request_id = data.get("request_id")
    if request_id is None:
        raise InvalidRequest("Missing required parameter: 'request_id'.", param="request_id",
                             code="missing_required_parameter")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"Invalid value for 'request_id': expected the X-Request-ID of an answer (a non-empty "
                             f"string of at most {MAX_REQUEST_ID_CHARS} characters).", param="request_id",
                             code="invalid_value")
    verdict = data.get("verdict")
    if verdict is None:
        raise InvalidRequest("Missing required parameter: 'verdict'.", param="verdict",
                             code="missing_required_parameter")
    if verdict not in VERDICTS:
        raise InvalidRequest(f"Invalid value for 'verdict': expected 'good' or 'bad', got {json.dumps(verdict)}.",
                             param="verdict", code="invalid_value")
    comment = data.get("comment")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidRequest("Invalid type for 'comment': expected a string.", param="comment", code="invalid_type")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidRequest(f"Invalid value for 'comment': at most {MAX_COMMENT_CHARS} characters.",
                             param="comment", code="invalid_value")
    return FeedbackBody(request_id.strip(), verdict, comment)


async def post_feedback(request: web.Request) -> web.Response:
    app = request.app
    # Who is calling: a static or virtual key (or nobody, in open mode), checked but not charged.
    found = limits.identify_request(app, request.headers)
    principal = await limits.admit(app, found, None, bool(bearer_token(request.headers)))
    body = parse_feedback(await request.read())
    now = time.time()
    message = Feedback(request_id=body.request_id, verdict=body.verdict, comment=body.comment,
                       key_id=principal.key_id, tenant=principal.tenant, time=now)
    counted = f"client_{body.verdict}"
    try:
        async with app[REDIS].pipeline(transaction=False) as pipe:
            pipe.xadd(FEEDBACK_STREAM, {MESSAGE_FIELD: encode(message)}, maxlen=app[CONFIG].ledger.stream_maxlen,
                      approximate=True)
            pipe.hincrby(AUDIT_COUNTS, counted, 1)
            await pipe.execute()
    except RedisError as exc:
        raise Unavailable("The gateway cannot reach its message bus; try again shortly.",
                          code="bus_unavailable") from exc
    app[FEEDBACK_METRICS].audits.labels(counted).inc()
    return json_response({"id": f"fb_{uuid.uuid4().hex}", "object": "feedback", "request_id": body.request_id,
                          "verdict": body.verdict, "created": int(now), "status": "accepted"}, status=202)
