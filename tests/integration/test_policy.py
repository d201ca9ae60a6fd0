"""The learned routing policy (routing.policy: learned) end to end: a router given a hand-written policy
file accepts and escalates as the file says, with X-Draft-Risk on plain and streamed answers and the
risk in a progressive stream's final field; a progressive stream stops showing once the draft so far
looks wrong and is continued from what was shown; the prompt's embedding from the real embedder
service is used when it arrives before the draft ends, and the trace-only variant otherwise (embedder
down, or answering nothing), without waiting for it; a bad or missing policy file stops the router."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.scripts import Script
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, running_stack
from tests.support import REPO, Service, free_port

# risk = sigmoid(4 * (max_entropy - 1)): a draft whose most uncertain token is above 1 bit is escalated.
SLOPE = 4.0
THRESHOLD = 0.5
EMBEDDING_SHIFT = 1.0  # the with_embedding variant adds this to the logit: its risk tells which variant spoke
DIMENSIONS = 384  # all-MiniLM-L6-v2
CALM_BITS, DOUBT_BITS = 0.05, 1.2  # both under the window's 2.0 bits and the 1.4-bit speculation threshold
HEAVY_TOKENS = [f" h{i}" for i in range(12)]


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def risk_of(max_bits: float, embedded: bool = False) -> float:
    return sigmoid(SLOPE * (max_bits - 1.0) + (EMBEDDING_SHIFT if embedded else 0.0))


def policy_file(path: Path, embedding: bool = False, top_k: int = 5) -> Path:
    variants: dict[str, Any] = {"trace_only": {"features": ["max_entropy"], "mean": [1.0], "scale": [1.0],
                                               "coef": [SLOPE], "intercept": 0.0}}
    if embedding:
        component = [1.0] + [0.0] * (DIMENSIONS - 1)
        variants["with_embedding"] = {
            "features": ["max_entropy", "emb_0"], "mean": [1.0, 0.0], "scale": [1.0, 1.0], "coef": [SLOPE, 0.0],
            "intercept": EMBEDDING_SHIFT,
            "embedding": {"components": [component], "center": [0.0] * DIMENSIONS, "model": "all-MiniLM-L6-v2"}}
    path.write_text(json.dumps({"kind": "draftgate-risk-policy", "version": 1, "top_k": top_k,
                                "threshold": THRESHOLD, "trained_on": {"by": "hand"}, "variants": variants}))
    return path


def draft(bits: list[float], tokens_per_s: float | None = 200) -> Script:
    return Script(tokens=[f" d{i}" for i in range(len(bits))], entropies=bits, tokens_per_s=tokens_per_s)


def learned(policy: Path, **env: str) -> dict[str, str]:
    return {"DRAFTGATE_ROUTING_POLICY": "learned", "DRAFTGATE_ROUTING_RISK_MODEL": str(policy), **env}


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


@pytest.fixture(scope="module")
def trace_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_file(tmp_path_factory.mktemp("policy") / "policy.json")


@pytest.fixture(scope="module")
def progressive(redis_server: str, fake: FakeUpstream, trace_policy: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("progressive"), fake, **learned(trace_policy)) as stack:
        yield stack


@pytest.fixture(scope="module")
def buffered(redis_server: str, fake: FakeUpstream, trace_policy: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = learned(trace_policy, DRAFTGATE_ROUTING_STREAM_MODE="buffered")
    with running_stack(redis_server, tmp_path_factory.mktemp("buffered"), fake, **env) as stack:
        yield stack


def stream(stack: Stack, content: str) -> tuple[httpx.Headers, str, list[Any]]:
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask(content), stream=True)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return raw.headers, text, chunks


def final_field(chunks: list[Any]) -> dict[str, Any]:
    carriers = [i for i, c in enumerate(chunks) if "draftgate" in (c.model_extra or {})]
    assert carriers == [len(chunks) - 1], carriers
    return chunks[-1].model_extra["draftgate"]


def escalations(stack: Stack, reason: str) -> float:
    text = httpx.get(f"{stack.routers[0].url}/metrics").text
    found = re.search(rf'^draftgate_escalations_total{{reason="{reason}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_plain_answer_is_accepted_or_escalated_as_the_policy_says(progressive: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", draft([CALM_BITS] * 8))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS))
    raw = progressive.client().chat.completions.with_raw_response.create(model="auto", messages=ask("calm"))
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert raw.headers["X-Draft-Risk"] == f"{risk_of(CALM_BITS):.3f}"
    assert raw.parse().choices[0].message.content == "".join(f" d{i}" for i in range(8))

    before = escalations(progressive, "risk")
    fake.script_model("fake-drafter", draft([CALM_BITS] * 4 + [DOUBT_BITS] + [CALM_BITS] * 3))
    raw = progressive.client().chat.completions.with_raw_response.create(model="auto", messages=ask("doubt"))
    assert raw.headers["X-Routing-Decision"] == "escalate"
    assert raw.headers["X-Escalation-Reason"] == "risk"
    assert raw.headers["X-Draft-Risk"] == f"{risk_of(DOUBT_BITS):.3f}"
    assert raw.parse().choices[0].message.content == "".join(HEAVY_TOKENS)
    assert escalations(progressive, "risk") == before + 1
    # The window alone would have accepted it: the drafter wrote every token before the policy decided.
    seen = fake.wait_for(lambda s: len(of("fake-heavy", s)) == 1 and all(x.ended is not None for x in s))
    drafted = of("fake-drafter", seen)[-1]
    assert drafted.completed and drafted.tokens_sent == 8


def test_an_early_abort_carries_the_risk_at_that_moment(progressive: Stack, fake: FakeUpstream) -> None:
    """The window escalates on a 2.2-bit token in the early-exit region; the risk of the two tokens drafted by
    then (top-5 alternatives hold at most log2(5) = 2.32 bits)."""
    fake.script_model("fake-drafter", draft([CALM_BITS, 2.2] + [CALM_BITS] * 20, tokens_per_s=50))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS))
    raw = progressive.client().chat.completions.with_raw_response.create(model="auto", messages=ask("abort"))
    assert raw.headers["X-Escalation-Reason"] == "early_token"
    assert raw.headers["X-Draft-Risk"] == f"{risk_of(2.2):.3f}"


@pytest.mark.parametrize("mode", ["buffered", "progressive"])
def test_a_streamed_answer_decided_before_anything_was_shown_carries_x_draft_risk(
        mode: str, request: pytest.FixtureRequest, fake: FakeUpstream) -> None:
    stack: Stack = request.getfixturevalue(mode)
    fake.script_model("fake-drafter", draft([DOUBT_BITS] * 6))  # short, and doubtful from the first token
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS))
    headers, text, chunks = stream(stack, "doubt, streamed")
    assert headers["X-Routing-Decision"] == "escalate" and headers["X-Escalation-Reason"] == "risk"
    assert headers["X-Draft-Risk"] == f"{risk_of(DOUBT_BITS):.3f}"
    assert text == "".join(HEAVY_TOKENS)
    if mode == "progressive":
        field = final_field(chunks)
        assert (field["decision"], field["reason"], field["seam_tokens"]) == ("escalate", "risk", 0)
        assert field["risk"] == pytest.approx(risk_of(DOUBT_BITS), abs=1e-4)

    fake.script_model("fake-drafter", draft([CALM_BITS] * 6))
    headers, text, chunks = stream(stack, "calm, streamed")
    assert headers["X-Routing-Decision"] == "accept"
    assert headers["X-Draft-Risk"] == f"{risk_of(CALM_BITS):.3f}"


def test_a_progressive_stream_shows_a_calm_draft_and_puts_the_risk_in_its_final_field(
        progressive: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", draft([CALM_BITS] * 30, tokens_per_s=100))
    headers, text, chunks = stream(progressive, "a long calm answer")
    assert headers["X-Routing-Decision"] == "progressive"
    assert "X-Draft-Risk" not in headers  # sent before the decision: the final field carries it
    assert text == "".join(f" d{i}" for i in range(30))
    field = final_field(chunks)
    assert field["decision"] == "accept" and field["risk"] == pytest.approx(risk_of(CALM_BITS), abs=1e-4)


def test_showing_stops_when_the_draft_turns_doubtful_and_the_heavyweight_continues_what_was_shown(
        progressive: Stack, fake: FakeUpstream) -> None:
    """Past the early-exit region the calm tokens go out; the first 1.2-bit token (under every entropy
    threshold) makes the partial draft's risk 0.69, so nothing after it is shown, and when the draft ends
    above the threshold the heavyweight continues exactly the shown text."""
    calm = 20
    fake.script_model("fake-drafter", draft([CALM_BITS] * calm + [DOUBT_BITS] * 10, tokens_per_s=100))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS))
    headers, text, chunks = stream(progressive, "calm, then doubtful")
    assert headers["X-Routing-Decision"] == "progressive"
    field = final_field(chunks)
    assert (field["decision"], field["tier"], field["reason"]) == ("continued", "heavyweight", "risk")
    assert field["risk"] == pytest.approx(risk_of(DOUBT_BITS), abs=1e-4)
    seam = field["seam_tokens"]
    assert 10 <= seam <= calm - 4  # shown: past the early-exit region, never the held-back or doubtful tokens
    shown = "".join(f" d{i}" for i in range(seam))
    assert text == shown + "".join(HEAVY_TOKENS)
    (heavy,) = of("fake-heavy", fake.wait_for(lambda s: len(of("fake-heavy", s)) == 1))
    assert {"role": "assistant", "content": shown} in heavy.body["messages"]


def test_a_missing_or_malformed_policy_file_stops_the_router_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps({"kind": "draftgate-risk-policy", "version": 1, "top_k": 5, "threshold": 2}))
    wide = policy_file(tmp_path / "wide.json", top_k=20)
    for path, says in [(missing, "cannot read the risk policy"), (malformed, "threshold must be between 0 and 1"),
                       (wide, "was fitted on 20 alternatives per token")]:
        env = {**os.environ, **learned(path), "DRAFTGATE_ROUTER_PORT": str(free_port())}
        result = subprocess.run([sys.executable, "-m", "services.router"], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("draftgate router: invalid configuration: routing.risk_model: ")
        assert str(path) in line and says in line


# The prompt's embedding: the with_embedding variant when it arrives in time, trace-only otherwise.

@pytest.fixture(scope="module")
def embedding_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_file(tmp_path_factory.mktemp("embedding") / "policy.json", embedding=True)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    service = Service("services.embedder", {"DRAFTGATE_EMBEDDER_PORT": str(port)}, port,
                      tmp_path_factory.mktemp("embedder") / "embedder.log").start(timeout_s=180)
    # Warm: the first inference loads the graph; the router's fetch must meet a ready service.
    httpx.post(f"{service.url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["warm up"]},
               timeout=60).raise_for_status()
    yield service
    service.stop()


def calm_risk_header(stack: Stack, fake: FakeUpstream, tokens: int, tokens_per_s: float) -> tuple[str, float]:
    fake.script_model("fake-drafter", draft([CALM_BITS] * tokens, tokens_per_s=tokens_per_s))
    started = time.monotonic()
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("Name a primary colour."))
    assert raw.headers["X-Routing-Decision"] == "accept"
    return raw.headers["X-Draft-Risk"], time.monotonic() - started


def test_the_prompts_embedding_is_used_when_it_arrives_before_the_draft_ends(
        redis_server: str, fake: FakeUpstream, embedding_policy: Path, embedder: Service, tmp_path: Path) -> None:
    env = learned(embedding_policy, DRAFTGATE_CACHE_EMBEDDER_URL=embedder.url, DRAFTGATE_CACHE_EMBEDDER_TIMEOUT_S="30")
    with running_stack(redis_server, tmp_path, fake, **env) as stack:
        header, _ = calm_risk_header(stack, fake, tokens=40, tokens_per_s=20)  # a 2-second draft
    assert header == f"{risk_of(CALM_BITS, embedded=True):.3f}"


def test_with_the_embedder_down_the_trace_only_variant_answers(
        redis_server: str, fake: FakeUpstream, embedding_policy: Path, tmp_path: Path) -> None:
    env = learned(embedding_policy, DRAFTGATE_CACHE_EMBEDDER_URL=f"http://127.0.0.1:{free_port()}")
    with running_stack(redis_server, tmp_path, fake, **env) as stack:
        header, _ = calm_risk_header(stack, fake, tokens=20, tokens_per_s=50)
        assert header == f"{risk_of(CALM_BITS):.3f}"
        assert "embedder unavailable; the risk policy uses its trace-only variant" in stack.routers[0].logs()


def test_an_embedder_that_never_answers_costs_no_wait(
        redis_server: str, fake: FakeUpstream, embedding_policy: Path, tmp_path: Path) -> None:
    """It accepts the connection and says nothing; the router's embedder timeout is 60 s, yet the answer
    comes with the trace-only risk as soon as the draft is done."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts: the kernel's backlog holds the call
        env = learned(embedding_policy, DRAFTGATE_CACHE_EMBEDDER_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
                      DRAFTGATE_CACHE_EMBEDDER_TIMEOUT_S="60")
        with running_stack(redis_server, tmp_path, fake, **env) as stack:
            header, elapsed = calm_risk_header(stack, fake, tokens=10, tokens_per_s=50)
    assert header == f"{risk_of(CALM_BITS):.3f}"
    assert elapsed < 60  # it did not wait out the embedder's timeout
