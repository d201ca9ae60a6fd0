"""POST /v1/feedback's body: what is accepted, and the 400 naming the bad parameter otherwise."""

from __future__ import annotations

import json

import pytest

from services.gateway.audit_api import parse_limit
from services.gateway.feedback import BODY_SCHEMA, FeedbackBody, parse_feedback
from shared.errors import InvalidRequest


def raw(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_body():
    assert parse_feedback(raw(request_id=" req_1 ", verdict="bad", comment="wrong city")) == FeedbackBody(
        "req_1", "bad", "wrong city")
    assert parse_feedback(raw(request_id="req_1", verdict="good")) == FeedbackBody("req_1", "good", "")
    assert parse_feedback(raw(request_id="req_1", verdict="good", comment=None, extra=1)).comment == ""


@pytest.mark.parametrize(("body", "param", "code"), [
    (b"{", None, "invalid_json"),
    (b"[]", None, "invalid_type"),
    (raw(verdict="good"), "request_id", "missing_required_parameter"),
    (raw(request_id="", verdict="good"), "request_id", "invalid_value"),
    (raw(request_id=7, verdict="good"), "request_id", "invalid_value"),
    (raw(request_id="r" * 257, verdict="good"), "request_id", "invalid_value"),
    (raw(request_id="req_1"), "verdict", "missing_required_parameter"),
    (raw(request_id="req_1", verdict="meh"), "verdict", "invalid_value"),
    (raw(request_id="req_1", verdict=True), "verdict", "invalid_value"),
    (raw(request_id="req_1", verdict="bad", comment=3), "comment", "invalid_type"),
    (raw(request_id="req_1", verdict="bad", comment="c" * 4001), "comment", "invalid_value"),
])
def test_a_bad_body_is_a_400_naming_the_parameter(body: bytes, param: str | None, code: str):
    with pytest.raises(InvalidRequest) as caught:
        parse_feedback(body)
    assert caught.value.status == 400 and caught.value.param == param and caught.value.code == code


def test_the_audit_api_limit():
    assert parse_limit(None, 200) == 20 and parse_limit(None, 5) == 5 and parse_limit("0", 200) == 0
    assert parse_limit("200", 200) == 200
    for bad in ("201", "-1", "x"):
        with pytest.raises(InvalidRequest) as caught:
            parse_limit(bad, 200)
        assert caught.value.param == "limit"


BAD_BODIES = [  # every JSON object the parser refuses (the non-JSON and non-object bodies aside)
    {"verdict": "good"}, {"request_id": "", "verdict": "good"}, {"request_id": "   ", "verdict": "good"},
    {"request_id": 7, "verdict": "good"}, {"request_id": "r" * 257, "verdict": "good"}, {"request_id": "req_1"},
    {"request_id": "req_1", "verdict": "meh"}, {"request_id": "req_1", "verdict": True},
    {"request_id": "req_1", "verdict": "bad", "comment": 3},
    {"request_id": "req_1", "verdict": "bad", "comment": "c" * 4001},
]
GOOD_BODIES = [{"request_id": "req_1", "verdict": "good"}, {"request_id": "r" * 256, "verdict": "bad", "comment": ""},
               {"request_id": " x ", "verdict": "bad", "comment": None, "extra": [1]},
               {"request_id": "req_1", "verdict": "bad", "comment": "c" * 4000}]


def test_the_openapi_schema_accepts_what_the_parser_accepts_and_refuses_what_it_refuses():
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(BODY_SCHEMA)
    for body in GOOD_BODIES:
        parse_feedback(json.dumps(body).encode())
        assert validator.is_valid(body), body
    for body in BAD_BODIES:
        with pytest.raises(InvalidRequest):
            parse_feedback(json.dumps(body).encode())
        assert not validator.is_valid(body), body


def test_openapi_describes_feedback_and_the_audit():
    from services.gateway.openapi import openapi_document
    from shared.config import load_config

    paths = openapi_document(load_config(env={}))["paths"]
    assert paths["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"] is BODY_SCHEMA
    assert set(paths["/v1/feedback"]["post"]["responses"]) == {"202", "400", "401", "503"}
    assert paths["/v1/system/audit"]["get"]["parameters"][0]["name"] == "limit"
