"""An upstream that answers garbage, through the real stack and the official client: a drafter's
escalates to the heavyweight like any drafter failure; a heavyweight's is a 502 naming the tier
and its model, or, once the answer is streaming, an error event in the stream. Never a 500."""

from __future__ import annotations

from dataclasses import replace

import httpx
import openai
import pytest

from tests.fakes.garbage import DATA_MODES, MODES, STREAM_MODES
from tests.fakes.scripts import Script, confident, uncertain
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask

HEAVY = "The heavyweight answered."
DRAFT = "one two three four five six"
# Modes that fail inside a 200 stream (the rest are whole-body pages).
IN_STREAM = sorted({*DATA_MODES, *STREAM_MODES})


def garbage(mode: str, after: int = 2, text: str = DRAFT) -> Script:
    return replace(confident(text), garbage=mode, garbage_after=after)


def answer(stack: Stack, model: str, stream: bool, prompt: str = "garbage in") -> tuple[dict[str, str], str]:
    """Headers and text of a successful answer."""
    raw = stack.client().chat.completions.with_raw_response.create(model=model, messages=ask(prompt), stream=stream)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    return dict(raw.headers), text


def assert_names_the_heavyweight(message: str, mode: str) -> None:
    assert "heavyweight" in message and "fake-heavy" in message, message
    if mode not in ("html_500", "html_502", "cut_mid_json"):
        assert "malformed response" in message, message


def assert_no_server_error(stack: Stack) -> None:
    assert "request failed" not in stack.routers[0].logs()  # the router's 500 path


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_drafter_garbage_escalates_to_the_heavyweight(stack: Stack, fake: FakeUpstream, mode: str,
                                                      stream: bool) -> None:
    fake.script_model("fake-drafter", garbage(mode))
    fake.script_model("fake-heavy", confident(HEAVY))
    headers, text = answer(stack, "auto", stream)
    assert (headers["x-routing-decision"], headers["x-routing-tier"]) == ("escalate", "heavyweight")
    assert headers["x-escalation-reason"] == "drafter_error"
    assert text == HEAVY
    assert_no_server_error(stack)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_heavyweight_garbage_is_a_502_naming_it(stack: Stack, fake: FakeUpstream, mode: str, stream: bool) -> None:
    """Garbage before anything was streamed: a 502 whatever the client asked for."""
    fake.script_model("fake-heavy", garbage(mode, after=0))
    with pytest.raises(openai.APIStatusError) as caught:
        answer(stack, "heavyweight", stream)
    assert caught.value.status_code == 502, caught.value
    assert_names_the_heavyweight(caught.value.message, mode)
    assert_no_server_error(stack)


@pytest.mark.parametrize("mode", IN_STREAM)
def test_heavyweight_garbage_mid_stream_is_an_error_event(stack: Stack, fake: FakeUpstream, mode: str) -> None:
    """Chunks already went out: the client gets them, then an error event, never a silent cut."""
    fake.script_model("fake-heavy", garbage(mode, after=2))
    stream = stack.client().chat.completions.create(model="heavyweight", messages=ask("garbage later"), stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received) == "one two"
    assert not isinstance(caught.value, openai.APIStatusError)  # in the stream, not an HTTP status
    assert_names_the_heavyweight(caught.value.message, mode)
    assert_no_server_error(stack)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_escalation_to_a_garbage_heavyweight_is_a_502(stack: Stack, fake: FakeUpstream, stream: bool) -> None:
    fake.script_model("fake-drafter", uncertain(DRAFT, bits=2.3))
    fake.script_model("fake-heavy", garbage("logprob_not_number", after=0))
    with pytest.raises(openai.APIStatusError) as caught:
        answer(stack, "auto", stream)
    assert caught.value.status_code == 502
    assert_names_the_heavyweight(caught.value.message, "logprob_not_number")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_both_tiers_sending_garbage_is_a_502_naming_the_heavyweight(stack: Stack, fake: FakeUpstream,
                                                                    stream: bool) -> None:
    fake.script_model("fake-drafter", garbage("number"))
    fake.script_model("fake-heavy", garbage("html_502"))
    with pytest.raises(openai.APIStatusError) as caught:
        answer(stack, "auto", stream)
    assert caught.value.status_code == 502
    assert caught.value.message.endswith(" - The heavyweight model (fake-heavy) failed (status 502).")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_speculation_that_turns_to_garbage_is_a_502(stack: Stack, fake: FakeUpstream, stream: bool) -> None:
    """The heavyweight started speculatively (elevated entropy), then the draft escalated."""
    fake.script_model("fake-drafter", Script(tokens=[f" d{i}" for i in range(30)], entropies=[1.5] * 12 + [2.3] * 18,
                                             tokens_per_s=100))
    fake.script_model("fake-heavy", replace(garbage("array", after=0), ttft_s=0.05))
    with pytest.raises(openai.APIStatusError) as caught:
        answer(stack, "auto", stream)
    assert caught.value.status_code == 502
    assert_names_the_heavyweight(caught.value.message, "array")
    assert any(s.model == "fake-heavy" and s.started < max(d.ended or 0 for d in fake.seen if d.model == "fake-drafter")
               for s in fake.seen)


def test_a_forced_drafter_sending_garbage_is_a_502_naming_the_drafter(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", garbage("delta_not_object", after=0))
    with pytest.raises(openai.APIStatusError) as caught:
        answer(stack, "drafter", False)
    assert caught.value.status_code == 502
    assert "The drafter model (fake-drafter) sent a malformed response" in caught.value.message


def test_garbage_is_counted_per_tier(stack: Stack, fake: FakeUpstream) -> None:
    def errors(tier: str) -> float:
        text = httpx.get(f"{stack.routers[0].url}/metrics").text
        line = next((x for x in text.splitlines() if x.startswith(f'draftgate_upstream_errors_total{{tier="{tier}"}}')),
                    None)
        return float(line.split()[-1]) if line else 0.0

    before = errors("drafter")
    fake.script_model("fake-drafter", garbage("truncated"))
    fake.script_model("fake-heavy", confident(HEAVY))
    assert answer(stack, "auto", False)[1] == HEAVY
    assert errors("drafter") == before + 1
