"""Fuzzing the running gateway from its own OpenAPI document: schemathesis generates requests that
the document allows (they must be answered) and requests it refuses (they must be a 4xx), sent to a
real gateway, router, Redis and the fake upstream. Nothing may be a 5xx, every error is OpenAI's
error object, and the services are still healthy afterwards. Derandomized: the same requests on
every run."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, start_stack

REQUESTS = 1_000
ERROR_KEYS = {"message", "type", "param", "code"}


def beyond_64_bits(value: Any) -> bool:
    if type(value) is int:
        return not -(2**63) <= value < 2**64
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(beyond_64_bits(child) for child in children)


def valid_data_accepted(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                        case: schemathesis.Case) -> bool | None:
    """positive_data_acceptance, but for the one refusal JSON Schema cannot state: an integer beyond
    64 bits anywhere in the body (the wire carries 64-bit integers) is a 400 naming where it is."""
    if case.meta and case.meta.generation.mode == GenerationMode.POSITIVE and beyond_64_bits(case.body):
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "invalid_value" and error["param"], error
        return True
    return positive_data_acceptance(ctx, response, case)


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, response_headers_conformance,
          valid_data_accepted, negative_data_rejection]


@pytest.fixture(scope="module")
def fuzzed(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(redis_server, tmp_path_factory.mktemp("fuzz"), fake)
    yield running
    running.stop()


def assert_answer(case: schemathesis.Case, response: schemathesis.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text, case.body)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ERROR_KEYS and isinstance(error["message"], str) and error["message"], response.text
        return
    assert response.headers["x-routing-decision"] in (["accept"], ["escalate"])  # lower-case names, value lists
    if response.headers["content-type"][0].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n"), response.text
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert all(json.loads(event)["object"] == "chat.completion.chunk" for event in events[:-1])
    else:
        assert response.json()["object"] == "chat.completion"


def test_generated_requests_never_get_a_5xx_and_leave_the_services_healthy(fuzzed: Stack) -> None:
    document = httpx.get(f"{fuzzed.url}/openapi.json", timeout=10).raise_for_status().json()
    operation = schemathesis.openapi.from_dict(document)["/v1/chat/completions"]["POST"]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    session = requests.Session()
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()

    @settings(max_examples=REQUESTS, derandomize=True, database=None, deadline=None, print_blob=True,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def answered(case: schemathesis.Case) -> None:
        response = case.call(base_url=fuzzed.url, session=session, timeout=30)
        statuses[(case.meta.generation.mode.value if case.meta else "?", response.status_code)] += 1
        assert_answer(case, response)
        case.validate_response(response, checks=CHECKS)

    answered()

    sent = sum(statuses.values())
    by_mode = collections.Counter(mode for mode, _ in statuses.elements())
    print(f"{sent} requests; by (mode, status): {dict(sorted(statuses.items()))}")
    assert sent >= REQUESTS
    assert by_mode["positive"] >= REQUESTS // 4 and by_mode["negative"] >= REQUESTS // 4, by_mode
    assert statuses[("positive", 200)] >= REQUESTS // 4  # valid requests went all the way to the upstream
    assert_still_healthy(fuzzed)


def assert_still_healthy(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/health", timeout=10).status_code == 200
    ready = httpx.get(f"{stack.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    answer = stack.client().chat.completions.create(model="auto", messages=ask("Still there?"), max_tokens=8)
    assert answer.choices[0].message.content
    for log in [stack.logs / "gateway.log", *(router.log_path for router in stack.routers)]:
        text = log.read_text()
        assert "Traceback" not in text and "unhandled error" not in text, log


def test_the_openapi_document_describes_the_request_as_validated(fuzzed: Stack) -> None:
    document: dict[str, Any] = httpx.get(f"{fuzzed.url}/openapi.json", timeout=10).json()
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    assert document["openapi"].startswith("3.1")
    assert request["required"] == ["messages"] and request["additionalProperties"] is True
    assert request["properties"]["stream"]["anyOf"][0] == {"type": "boolean"}
    assert {"auto", "drafter", "heavyweight", "fake-drafter", "fake-heavy", ""} == set(
        request["properties"]["model"]["anyOf"][0]["enum"])
    assert "ToolMessage" in document["components"]["schemas"]
