"""The account of every flow on the wire (Reply.account): each upstream call with the deployment that
served it, its role and tokens, priced at that deployment's own price, through a real router and
Redis against the fake upstream; and X-Cost-USD through the gateway, from the same account."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from shared.messages import ReplyKind
from shared.pricing import Price
from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.router_replies import Answer, ask_router
from tests.integration.stack import Stack, ask, running_stack

NANO, BIG, HALF = Price(0.10, 0.40), Price(2.00, 8.00), Price(1.00, 4.00)
DRAFT_TEXT = "Paris is the capital of France."
# Calm past the early-exit region (shown), then critical for good: a progressive stream is continued.
TURNING = Script(tokens=[f" w{i}" for i in range(40)], entropies=[0.05] * 20 + [2.3] * 20, tokens_per_s=100)
ESCALATING = Script(tokens=[" d0", " d1", " d2"], entropies=[0.1, 3.0, 3.0])  # aborted at its second token
HEAVY_TEXT = "A careful, longer answer from the heavyweight."


def deployments(fake: FakeUpstream) -> str:
    """Two heavyweight deployments on the fake, priced differently: heavy-a at BIG, heavy-b at HALF."""
    return json.dumps([
        {"name": "heavy-a", "base_url": fake.url, "model": "heavy-a", "input_usd_per_mtok": 2.0,
         "output_usd_per_mtok": 8.0},
        {"name": "heavy-b", "base_url": fake.url, "model": "heavy-b", "input_usd_per_mtok": 1.0,
         "output_usd_per_mtok": 4.0}])


@pytest.fixture(scope="module")
def priced(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("account"), fake,
                       DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK="0.10", DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK="0.40",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake),
                       DRAFTGATE_HEAVYWEIGHT_BALANCING="round_robin",
                       DRAFTGATE_ROUTING_SPECULATION_THRESHOLD="null") as stack:
        yield stack


@pytest.fixture(autouse=True)
def scripted(fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", confident(DRAFT_TEXT))
    for model in ("heavy-a", "heavy-b"):
        fake.script_model(model, confident(HEAVY_TEXT))


def body(content: str, stream: bool = False, **extra: object) -> dict:
    out: dict = {"model": "auto", "messages": ask(content), **extra}
    if stream:
        out.update(stream=True, stream_options={"include_usage": True})
    return out


PRICES = {"fake-drafter": NANO, "heavy-a": BIG, "heavy-b": HALF}


def assert_priced(answer: Answer) -> None:
    """Every call at its own deployment's price; the total their sum."""
    account = answer.account
    for call in account.calls:
        assert call.cost_usd == pytest.approx(PRICES[call.model].cost(call.prompt_tokens, call.completion_tokens))
    assert account.cost_usd == pytest.approx(sum(call.cost_usd or 0 for call in account.calls))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_accepted_draft_is_one_draft_call(priced: Stack, stream: bool) -> None:
    answer = ask_router(priced.redis_url, body("capital?", stream))
    assert answer.last.kind == (ReplyKind.END if stream else ReplyKind.COMPLETION)
    (call,) = answer.account.calls
    usage = answer.usage
    assert (call.tier, call.deployment, call.model, call.role) == ("drafter", "drafter", "fake-drafter", "draft")
    assert (call.prompt_tokens, call.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert_priced(answer)
    # The baseline is the heavyweight tier's price (its first deployment's) for the same answer.
    assert answer.account.baseline_usd == pytest.approx(BIG.cost(usage["prompt_tokens"], usage["completion_tokens"]))
    assert answer.account.saved_usd == pytest.approx(answer.account.baseline_usd - answer.account.cost_usd)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_escalation_pays_the_aborted_draft_and_the_deployment_that_answered(priced: Stack, fake: FakeUpstream,
                                                                             stream: bool) -> None:
    fake.script_model("fake-drafter", ESCALATING)
    answer = ask_router(priced.redis_url, body("hard one", stream))
    aborted, heavy = answer.account.calls
    assert (aborted.tier, aborted.role, aborted.completion_tokens) == ("drafter", "aborted_draft", 2)
    assert heavy.tier == "heavyweight" and heavy.role == "answer" and heavy.deployment in ("heavy-a", "heavy-b")
    assert heavy.model == heavy.deployment  # each deployment calls its own model
    assert aborted.prompt_tokens == heavy.prompt_tokens  # the heavyweight's count of the same prompt
    assert heavy.completion_tokens == len(HEAVY_TEXT.split())
    assert_priced(answer)
    usage = answer.usage
    assert answer.account.baseline_usd == pytest.approx(BIG.cost(usage["prompt_tokens"], usage["completion_tokens"]))


def test_a_mixed_pool_prices_each_answer_at_its_own_deployment(priced: Stack) -> None:
    """Round robin over heavy-a and heavy-b: both answer, each at its own price."""
    seen: dict[str, float] = {}
    for i in range(4):
        answer = ask_router(priced.redis_url, body(f"forced {i}", model="heavyweight"), tier="heavyweight")
        (call,) = answer.account.calls
        assert call.role == "answer" and call.tier == "heavyweight"
        assert_priced(answer)
        seen[call.deployment] = call.cost_usd or 0.0
    assert set(seen) == {"heavy-a", "heavy-b"}
    assert seen["heavy-a"] == pytest.approx(2 * seen["heavy-b"])  # same tokens, twice the price
    metrics = httpx.get(f"{priced.routers[0].url}/metrics", timeout=10).text
    for name in ("heavy-a", "heavy-b"):
        spent = re.search(rf'^draftgate_deployment_cost_usd_total\{{deployment="{name}",tier="heavyweight"\}} (\S+)$',
                          metrics, re.MULTILINE)
        assert spent is not None and float(spent.group(1)) >= 2 * seen[name] * 0.999  # two answers each at least


@pytest.mark.parametrize("name", ["heavy-a", "heavy-b"])
def test_an_explicit_backend_is_accounted_at_its_price(priced: Stack, name: str) -> None:
    answer = ask_router(priced.redis_url, body("named", model=name), tier="heavyweight", deployment=name)
    (call,) = answer.account.calls
    assert (call.deployment, call.model, call.role) == (name, name, "answer")
    assert_priced(answer)


def test_an_error_after_a_draft_still_costs_the_draft(priced: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", ESCALATING)
    for model in ("heavy-a", "heavy-b"):
        fake.script_model(model, Script(tokens=["x"], status=400))
    answer = ask_router(priced.redis_url, body("fails"))
    assert answer.last.kind == ReplyKind.ERROR and answer.last.status == 400
    (aborted,) = answer.account.calls
    assert aborted.role == "aborted_draft" and aborted.completion_tokens == 2
    assert answer.account.cost_usd == pytest.approx(aborted.cost_usd) and answer.account.cost_usd > 0
    assert answer.account.baseline_usd is None  # nothing was answered: no saving to claim


def test_a_progressive_continuation_accounts_both_calls(priced: Stack, fake: FakeUpstream) -> None:
    """Calm tokens are shown, then the draft turns uncertain: the heavyweight continues the shown text."""
    fake.script_model("fake-drafter", TURNING)
    answer = ask_router(priced.redis_url, body("long one", stream=True))
    assert answer.head.decision == "progressive"
    draft, heavy = answer.account.calls
    assert draft.role == "aborted_draft" and draft.tier == "drafter" and draft.completion_tokens >= 20
    assert heavy.role == "continuation" and heavy.deployment in ("heavy-a", "heavy-b")
    assert heavy.prompt_tokens > draft.prompt_tokens  # its prompt holds the shown text too
    assert_priced(answer)


def test_the_gateway_states_the_accounts_total(priced: Stack) -> None:
    raw = priced.client().chat.completions.with_raw_response.create(model="heavy-b", messages=ask("via gateway"))
    usage = raw.parse().usage
    assert usage is not None
    assert float(raw.headers["X-Cost-USD"]) == pytest.approx(HALF.cost(usage.prompt_tokens, usage.completion_tokens),
                                                             abs=1e-8)


# Speculation on (the soft threshold at 0.7 x 2.0 = 1.4 bits): the heavyweight's early call is accounted too.

@pytest.fixture(scope="module")
def speculating(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("speculating"), fake,
                       DRAFTGATE_DRAFTER_INPUT_USD_PER_MTOK="0.10", DRAFTGATE_DRAFTER_OUTPUT_USD_PER_MTOK="0.40",
                       DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS=deployments(fake)) as stack:
        yield stack


def test_a_cancelled_speculation_is_paid_for_as_wasted(speculating: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" a{i}" for i in range(15)], entropies=[1.5] * 15,
                                             tokens_per_s=50))
    for model in ("heavy-a", "heavy-b"):
        fake.script_model(model, Script(tokens=HEAVY_TEXT.split(" "), tokens_per_s=20))
    answer = ask_router(speculating.redis_url, body("elevated"))
    assert answer.head.decision == "accept" and answer.head.speculation == "cancelled"
    draft, wasted = sorted(answer.account.calls, key=lambda call: call.role != "draft")
    assert draft.role == "draft" and draft.completion_tokens == 15
    assert wasted.role == "wasted_speculation" and wasted.tier == "heavyweight"
    assert wasted.deployment in ("heavy-a", "heavy-b")  # its stream had opened: the draft took 0.3 s
    assert wasted.completion_tokens >= 1
    assert_priced(answer)


def test_an_escalation_served_by_the_speculation_names_its_deployment(speculating: Stack,
                                                                     fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=[f" d{i}" for i in range(30)],
                                             entropies=[1.5] * 12 + [2.3] * 18, tokens_per_s=100))
    answer = ask_router(speculating.redis_url, body("drift"))
    assert answer.head.decision == "escalate" and answer.head.speculation == "used"
    aborted, used = answer.account.calls
    assert aborted.role == "aborted_draft" and aborted.completion_tokens < 30
    assert used.role == "speculation" and used.deployment in ("heavy-a", "heavy-b")
    assert used.completion_tokens == len(HEAVY_TEXT.split())
    assert_priced(answer)
