"""The gateway's pure parts: request validation, SSE framing, cache replay, headers, tenants."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk

from services.gateway.auth import authenticate
from services.gateway.cache_client import cache_directives, served_from_cache
from services.gateway.chat import resolve_tier, served_models
from services.gateway.headers import cache_hit_headers, routing_headers
from services.gateway.protocol import beyond_the_wire, parse_chat_request
from services.gateway.sse import DONE, completion_to_chunks, frame
from shared.config import load_config
from shared.errors import AuthenticationFailed, InvalidRequest, NotFound

COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "logprobs": None,
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def test_frame_is_one_sse_event() -> None:
    assert frame({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert DONE == b"data: [DONE]\n\n"


def test_cached_completion_replays_as_valid_chunks() -> None:
    chunks = completion_to_chunks(COMPLETION, include_usage=True)
    parsed = [ChatCompletionChunk.model_validate(json.loads(json.dumps(c))) for c in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in parsed if c.choices) == "Paris."
    assert parsed[-2].choices[0].finish_reason == "stop"
    assert parsed[-1].choices == [] and parsed[-1].usage is not None
    assert len(completion_to_chunks(COMPLETION, include_usage=False)) == 3  # role, content, finish


def test_served_from_cache_gets_a_fresh_id_and_zero_usage() -> None:
    served = served_from_cache({**COMPLETION, "usage": {"prompt_tokens": 9, "completion_tokens": 9,
                                                        "total_tokens": 18}})
    assert served["id"] != COMPLETION["id"] and served["id"].startswith("chatcmpl-")
    assert served["usage"]["total_tokens"] == 0
    assert served["choices"] == COMPLETION["choices"]


def test_routing_headers_format_entropy_to_three_decimals() -> None:
    headers = routing_headers("r", started=0.0, decision="accept", entropy=1.23456, speculation="cancelled")
    assert headers["X-Draft-Entropy"] == "1.235" and headers["X-Speculation"] == "cancelled"
    assert routing_headers("r", 0.0, "cache_hit")["X-Draft-Entropy"] == "0.000"


def test_cache_hits_carry_every_header_the_readme_promises() -> None:
    headers = cache_hit_headers("r", 0.0, "semantic", 0.97123)
    assert {key: headers[key] for key in ("X-Routing-Decision", "X-Routing-Tier", "X-Draft-Entropy", "X-Speculation",
                                          "X-Cache", "X-Cache-Similarity")} == {
        "X-Routing-Decision": "cache_hit", "X-Routing-Tier": "drafter", "X-Draft-Entropy": "0.000",
        "X-Speculation": "none", "X-Cache": "semantic", "X-Cache-Similarity": "0.9712"}
    assert headers["X-Request-ID"] == "r" and float(headers["X-Request-Duration-Ms"]) >= 0


def test_cache_control_directives() -> None:
    assert cache_directives("No-Cache, no-store") == {"no-cache", "no-store"}
    assert cache_directives(None) == frozenset()


def test_tenant_comes_from_the_key_so_it_cannot_be_borrowed() -> None:
    keys = frozenset({"k1", "k2"})
    tenant_one = authenticate({"Authorization": "Bearer k1"}, keys)
    assert tenant_one and tenant_one != authenticate({"Authorization": "Bearer k2"}, keys)
    assert authenticate({"Authorization": "Bearer k1", "X-Tenant-ID": "team-a"}, keys) == f"{tenant_one}:team-a"
    assert authenticate({}, frozenset()) == ""
    with pytest.raises(AuthenticationFailed):
        authenticate({"Authorization": "Bearer nope"}, keys)


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"text": "y"}]}]},
     "messages[0].content[1].type"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}, "top_p"),
])
def test_validation_names_the_offending_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(json.dumps(body).encode())
    assert caught.value.param == param


def test_unknown_fields_and_content_parts_are_accepted() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "model": "auto",
            "vendor_extension": {"a": 1}, "stream": True, "stream_options": {"include_usage": True}}
    request = parse_chat_request(json.dumps(body).encode())
    assert request.model_extra == {"vendor_extension": {"a": 1}}
    assert request.body() == body


def test_an_integer_the_wire_cannot_carry_is_named() -> None:
    error = beyond_the_wire({"messages": [], "vendor": {"a": [1, 2**64 - 1, -(2**63), 2**64]}})
    assert error is not None and error.param == "vendor.a[3]" and error.status == 400
    assert beyond_the_wire({"messages": [], "vendor": {"a": [2**64 - 1, -(2**63)]}}) is None
    assert beyond_the_wire({"messages": [], "": 2**64}).param == '[""]'
    assert beyond_the_wire({"messages": [], "a.b": [{"": 2**64}]}).param == '["a.b"][0][""]'


def test_every_model_the_openapi_document_names_is_served() -> None:
    config = load_config(env={})
    assert {resolve_tier(name, config) for name in served_models(config)} == {"auto", "drafter", "heavyweight"}
    with pytest.raises(NotFound):
        resolve_tier("gpt-9", config)
