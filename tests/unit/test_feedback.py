"""POST /v1/feedback's body: what is accepted, and the 400 naming the bad parameter otherwise."""

from __future__ import annotations

import json

import pytest

from services.gateway.audit_api import parse_limit
from services.gateway.feedback import FeedbackBody, parse_feedback
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
