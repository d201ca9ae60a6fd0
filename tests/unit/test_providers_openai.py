"""The openai provider: the body goes as it is, chunks come back as they are, errors keep what the server said."""

from __future__ import annotations

import pytest

from services.router import upstreams
from services.router.upstream import stream_params
from services.router.upstreams.base import Target
from services.router.upstreams.errors import UpstreamStatusError, UpstreamStreamError
from services.router.upstreams.openai import PROVIDER, OpenAIDecoder
from services.router.wellformed import MalformedChunk
from shared import fastjson
from shared.config import LOGPROB_PROVIDERS, PROVIDERS

TARGET = Target(name="drafter", provider="openai", base_url="https://llm.example/v1/", model="tiny",
                api_key="sk-1", tier="drafter")
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {
    "name": "f", "parameters": {"type": "object"}}}], "seed": 7, "vendor_field": {"x": 1}}


def test_the_request_is_the_clients_body_with_the_tiers_model_posted_with_its_key() -> None:
    params = stream_params(BODY, "tiny", 5)
    request = PROVIDER.request(TARGET, params)
    assert (request.method, request.url) == ("POST", "https://llm.example/v1/chat/completions")
    assert request.headers == {"Content-Type": "application/json", "Authorization": "Bearer sk-1"}
    assert fastjson.loads(request.body) == {**{k: v for k, v in BODY.items() if k != "model"}, "model": "tiny",
                                            "stream": True, "stream_options": {"include_usage": True},
                                            "logprobs": True, "top_logprobs": 5}


def test_basic_auth_from_the_url_and_no_key_send_only_the_basic_header() -> None:
    target = Target(name="drafter", provider="openai", base_url="http://proxy/v1", model="m",
                    headers={"Authorization": "Basic dTpw"})
    assert PROVIDER.request(target, {"messages": []}).headers["Authorization"] == "Basic dTpw"
    keyless = Target(name="drafter", provider="openai", base_url="http://local/v1", model="m")
    assert "Authorization" not in PROVIDER.request(keyless, {"messages": []}).headers


def test_the_decoder_passes_chunks_through_and_ends_at_done() -> None:
    decoder = OpenAIDecoder()
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}, "vendor": 1}], "extra": [1]}
    assert decoder.feed(None, fastjson.dumps(chunk)) == [chunk] and not decoder.done
    assert decoder.feed(None, b"[DONE]") == [] and decoder.done


def test_the_decoder_refuses_garbage_and_raises_a_servers_error_object() -> None:
    with pytest.raises(MalformedChunk):
        OpenAIDecoder().feed(None, b'{"choices": 5}')
    with pytest.raises(UpstreamStreamError) as caught:
        OpenAIDecoder().feed(None, b'{"error": "the model crashed"}')
    assert caught.value.message == "the model crashed" and not caught.value.retryable


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (401, False), (404, False), (408, True),
                                                   (409, True), (429, True), (500, True), (503, True)])
def test_a_status_error_keeps_the_servers_error_object_and_says_whether_to_retry(status: int,
                                                                                 retryable: bool) -> None:
    body = b'{"error": {"message": "nope", "type": "invalid_request_error", "param": "tools", "code": "bad"}}'
    error = PROVIDER.error(status, body, {"retry-after": "3"})
    assert isinstance(error, UpstreamStatusError)
    assert (error.status, error.message, error.retryable, error.retry_after_s) == (status, "nope", retryable, 3.0)
    assert error.body == {"message": "nope", "type": "invalid_request_error", "param": "tools", "code": "bad"}


def test_a_page_that_is_not_json_is_a_status_error_without_a_body() -> None:
    error = PROVIDER.error(502, b"<html>Bad Gateway</html>", {"retry-after-ms": "1500"})
    assert (error.status, error.body, error.message, error.retry_after_s) == (502, None, "HTTP 502", 1.5)


def test_the_providers_that_can_draft_are_the_ones_config_lets_draft() -> None:
    assert set(upstreams.PROVIDERS) == set(PROVIDERS)
    assert {name for name, provider in upstreams.PROVIDERS.items() if provider.logprobs} == set(LOGPROB_PROVIDERS)
    with pytest.raises(ValueError, match="unknown upstream provider 'bedrock'"):
        upstreams.provider_for("bedrock")
