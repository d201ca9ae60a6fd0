"""Cost you can see: each tier priced per million tokens, X-Cost-USD on plain answers, and the
cost and saving counters, through a real gateway and router."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.pricing import Price
from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack

NANO, BIG = Price(0.10, 0.40), Price(2.00, 8.00)
PRICED = {"DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK": "0.10", "DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK": "0.40",
          "DRAFTGATE_HEAVYWEIGHT_INPUT_USD_PER_MTOK": "2.00", "DRAFTGATE_HEAVYWEIGHT_OUTPUT_USD_PER_MTOK": "8.00",
          "DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "null"}


@pytest.fixture(scope="module")
def priced(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("priced"), fake, **PRICED) as stack:
        yield stack


def metric(stack: Stack, name: str, labels: str = "") -> float:
    text = httpx.get(f"{stack.routers[0].url}/metrics").text
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_accepted_plain_answer_states_its_cost_and_the_saving_is_counted(priced: Stack,
                                                                            fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident("Paris is the capital of France."))
    saved_before = metric(priced, "draftgate_cost_saved_usd_total")
    raw = priced.client().chat.completions.with_raw_response.create(model="auto", messages=ask("capital?"))
    completion = raw.parse()
    assert raw.headers["X-Routing-Decision"] == "accept"
    usage = completion.usage
    assert usage is not None
    expected = NANO.cost(usage.prompt_tokens, usage.completion_tokens)
    assert float(raw.headers["X-Cost-USD"]) == pytest.approx(expected, abs=1e-8)
    saving = BIG.cost(usage.prompt_tokens, usage.completion_tokens) - expected
    assert metric(priced, "draftgate_cost_saved_usd_total") - saved_before == pytest.approx(saving, rel=1e-6)
    assert metric(priced, "draftgate_cost_usd_total", '{tier="drafter"}') > 0


def test_an_escalation_costs_the_aborted_draft_and_the_heavyweight(priced: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[" d0", " d1", " d2"], entropies=[0.1, 3.0, 3.0]))
    fake.script_model("fake-heavy", confident("A careful, longer answer from the heavyweight."))
    heavy_before = metric(priced, "draftgate_cost_usd_total", '{tier="heavyweight"}')
    raw = priced.client().chat.completions.with_raw_response.create(model="auto", messages=ask("hard one"))
    usage = raw.parse().usage
    assert raw.headers["X-Routing-Decision"] == "escalate" and usage is not None
    heavy = BIG.cost(usage.prompt_tokens, usage.completion_tokens)
    assert metric(priced, "draftgate_cost_usd_total", '{tier="heavyweight"}') - heavy_before == pytest.approx(heavy)
    # The aborted draft is paid for too: two tokens received, the prompt as the heavyweight counted it.
    assert float(raw.headers["X-Cost-USD"]) == pytest.approx(heavy + NANO.cost(usage.prompt_tokens, 2), abs=1e-8)


def test_a_stream_shown_before_its_cost_is_known_has_no_header_but_is_counted(priced: Stack,
                                                                           fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" w{i}" for i in range(30)]))
    before = metric(priced, "draftgate_cost_usd_total", '{tier="drafter"}')
    with priced.client().chat.completions.with_streaming_response.create(
            model="auto", messages=ask("stream it"), stream=True) as response:
        assert response.headers["X-Routing-Decision"] == "progressive"
        assert "X-Cost-USD" not in response.headers
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    assert text == "".join(f" w{i}" for i in range(30))
    assert metric(priced, "draftgate_cost_usd_total", '{tier="drafter"}') > before


def test_a_short_stream_decided_before_its_headers_states_its_cost(priced: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident("Short."))
    with priced.client().chat.completions.with_streaming_response.create(
            model="auto", messages=ask("short stream"), stream=True) as response:
        assert response.headers["X-Routing-Decision"] == "accept"
        assert float(response.headers["X-Cost-USD"]) > 0
        list(response.parse())


def test_unpriced_tiers_count_nothing_and_send_no_header(stack: Stack, fake: FakeUpstream,
                                                         tmp_path: Path) -> None:
    fake.script_model("fake-drafter", confident("Paris."))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("unpriced"))
    assert raw.headers["X-Routing-Decision"] == "accept"
    assert "X-Cost-USD" not in raw.headers
    assert metric(stack, "draftgate_cost_usd_total", '{tier="drafter"}') == 0.0
