"""Progressive streaming (issue #16): a streamed, auto-routed draft reaches the client once it has
passed the early-exit region, and a draft that turns uncertain after tokens were shown is continued
by the heavyweight from exactly the text the client has. Real gateway and router processes, Redis,
the official `openai` client; only the model APIs are fakes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from openai import AsyncStream, Stream
from openai.types.chat import ChatCompletionChunk
from redis.asyncio import Redis

from shared.config import RoutingConfig
from tests.fakes.scripts import Script, split_tokens
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.cache_helpers import written
from tests.integration.stack import Stack, ask, running_cached_stack, start_stack
from tests.support import Service

ROUTING = RoutingConfig()
EARLY_EXIT = ROUTING.early_exit_tokens  # 10
HOLDBACK = ROUTING.stream_holdback_tokens  # 4
CALM_BITS = 0.05
# Above the 2.0-bit threshold; the fake's five alternatives cap a token's entropy at log2(5) = 2.32.
CRITICAL_BITS = 2.3

DRAFT = [f" d{i}" for i in range(40)]
DRAFT_TEXT = "".join(DRAFT)
# turning(): calm up to here, then critical. A single critical token past the early-exit region does
# not escalate; the window mean crosses 2.0 bits at the 9th one (9 x 2.3 + 0.05 = 20.75 > 20).
CALM_TOKENS = 20
# Showing pauses once the draft rises: the window's mean or the held-back tokens' mean above the
# 1.4-bit speculation threshold. One or two critical tokens among calm held-back ones do not (0.61,
# 1.18 bits), the third does (1.74), before any of them is shown: showing goes on until the second
# critical token is judged, less the hold-back. No critical token ever reaches the client.
SHOWN_BEFORE_THE_RISE = CALM_TOKENS + 2 - HOLDBACK
HEAVY_TOKENS = [f" h{i}" for i in range(20)]
HEAVY_TEXT = "".join(HEAVY_TOKENS)

# Stacks beside the default one (conftest's `stack`): their environment by name.
VARIANTS: dict[str, dict[str, str]] = {
    "speculation": {},
    "serial": {"DRAFTGATE_ROUTING_SPECULATION_THRESHOLD": "null"},
    "continue_final_message": {"DRAFTGATE_HEAVYWEIGHT_CONTINUATION": "continue_final_message"},
    "prefill": {"DRAFTGATE_HEAVYWEIGHT_CONTINUATION": "prefill"},
    "buffered": {"DRAFTGATE_ROUTING_STREAM_MODE": "buffered"},
}


def calm(n: int, tokens_per_s: float | None = 20) -> Script:
    """A confident draft of n tokens (" d0", " d1", ...)."""
    return Script(tokens=DRAFT[:n], entropies=[CALM_BITS] * n, tokens_per_s=tokens_per_s)


def turning(tokens_per_s: float = 20) -> Script:
    """Confident for CALM_TOKENS tokens (past the early-exit region), then critical for good."""
    return Script(tokens=DRAFT, entropies=[CALM_BITS] * CALM_TOKENS + [CRITICAL_BITS] * (len(DRAFT) - CALM_TOKENS),
                  tokens_per_s=tokens_per_s)


def early_doubt() -> Script:
    """Critical at the third token, inside the early-exit region: escalation before anything is shown."""
    return Script(tokens=DRAFT, entropies=[CALM_BITS] * 2 + [CRITICAL_BITS] * (len(DRAFT) - 2), tokens_per_s=20)


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


def all_ended(count: int) -> Callable[[list[Seen]], bool]:
    """The fake saw `count` requests and every one of them has ended."""
    return lambda seen: len(seen) == count and all(s.ended is not None for s in seen)


@dataclass
class Streamed:
    """A stream as the client got it: the headers and every parsed chunk, in order."""

    headers: httpx.Headers
    chunks: list[ChatCompletionChunk] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def final(self) -> dict[str, Any]:
        """The routing decision the last chunk carries; it must be the only chunk carrying one."""
        carriers = [i for i, c in enumerate(self.chunks) if "draftgate" in (c.model_extra or {})]
        assert carriers == [len(self.chunks) - 1], f"draftgate field on chunks {carriers} of {len(self.chunks)}"
        extra = self.chunks[-1].model_extra
        assert extra is not None
        return extra["draftgate"]


def has_content(chunk: ChatCompletionChunk) -> bool:
    return bool(chunk.choices and chunk.choices[0].delta.content)


def open_stream(stack: Stack, messages: list[dict[str, str]], model: str = "auto",
                **params: Any) -> tuple[httpx.Headers, Stream[ChatCompletionChunk]]:
    raw = stack.client().chat.completions.with_raw_response.create(model=model, messages=messages, stream=True,
                                                                   **params)
    return raw.headers, raw.parse()


def stream(stack: Stack, messages: list[dict[str, str]], model: str = "auto", **params: Any) -> Streamed:
    headers, chunks = open_stream(stack, messages, model, **params)
    return Streamed(headers, list(chunks))


def read_until(chunks: Iterable[ChatCompletionChunk], streamed: Streamed,
               done: Callable[[ChatCompletionChunk], bool]) -> ChatCompletionChunk:
    """Read (and keep) chunks until one satisfies `done`; the rest stays unread."""
    for chunk in chunks:
        streamed.chunks.append(chunk)
        if done(chunk):
            return chunk
    raise AssertionError(f"the stream ended first: {streamed.chunks!r}")


def assert_progressive_head(headers: httpx.Headers) -> None:
    """Sent before the decision was final: no entropy or speculation state to report yet."""
    assert headers["X-Routing-Decision"] == "progressive"
    assert headers["X-Routing-Tier"] == "drafter"
    assert "X-Draft-Entropy" not in headers and "X-Speculation" not in headers
    assert "X-Escalation-Reason" not in headers


def assert_one_answer(streamed: Streamed, usage: bool = False) -> None:
    """One completion id, one role, one finish_reason, at the end (before the usage chunk, if asked)."""
    chunks = streamed.chunks
    assert len({c.id for c in chunks}) == 1, {c.id for c in chunks}
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    finishes = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason]
    assert finishes == [len(chunks) - (2 if usage else 1)], finishes
    usages = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert usages == ([len(chunks) - 1] if usage else []), usages


def no_draftgate_field(chunks: Iterable[ChatCompletionChunk]) -> bool:
    return not any("draftgate" in (c.model_extra or {}) for c in chunks)


def shown_prefix(heavy: Seen, messages: list[dict[str, str]], style: str) -> str:
    """The assistant prefix the heavyweight was asked to continue, checked against `style`'s shape."""
    sent = heavy.body["messages"]
    if style == "instruction":
        assert sent[:-2] == messages, sent
        assistant, instruction = sent[-2], sent[-1]
        assert instruction["role"] == "user" and isinstance(instruction["content"], str), instruction
        assert instruction["content"].strip() and instruction["content"] != messages[-1]["content"]
    else:
        assert sent[:-1] == messages, sent
        assistant = sent[-1]
    if style == "continue_final_message":
        assert heavy.body.get("continue_final_message") is True
        assert heavy.body.get("add_generation_prompt") is False
    else:
        assert "continue_final_message" not in heavy.body and "add_generation_prompt" not in heavy.body
    assert set(assistant) == {"role", "content"} and assistant["role"] == "assistant", assistant
    return assistant["content"]


def seam_of(prefix: str) -> int:
    """How many drafted tokens make `prefix`: it must end at a token boundary of the draft."""
    for count in range(len(DRAFT) + 1):
        if "".join(DRAFT[:count]) == prefix:
            return count
    raise AssertionError(f"{prefix!r} is not a run of whole drafted tokens")


def metric(url: str, sample: str) -> float:
    """One sample of a Prometheus text page, e.g. 'name{label="x"}'; 0 when absent."""
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for_metric(url: str, sample: str, value: float, timeout_s: float = 10) -> None:
    """Poll until the sample reads `value`: a router updates some metrics after the answer is out."""
    deadline = time.monotonic() + timeout_s
    while (seen := metric(url, sample)) != value:
        assert time.monotonic() < deadline, f"{sample} is {seen}, not {value}, after {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stacks(redis_server: str, fake: FakeUpstream,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Stack]]:
    """A stack per VARIANTS name, started when first asked for, shared by the module's tests."""
    started: dict[str, Stack] = {}

    def get(name: str) -> Stack:
        if name not in started:
            started[name] = start_stack(redis_server, tmp_path_factory.mktemp(name), fake, **VARIANTS[name])
        return started[name]

    yield get
    for running in started.values():
        running.stop()


# 1. The first token of an accepted draft arrives after the early-exit region, not at the end.

def test_an_accepted_draft_reaches_the_client_while_the_drafter_is_still_writing(stack: Stack,
                                                                                  fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=20))
    headers, chunks = open_stream(stack, ask("a long confident answer"))
    streamed = Streamed(headers)
    read_until(chunks, streamed, has_content)
    (draft,) = of("fake-drafter", fake.seen)
    assert draft.ended is None and draft.tokens_sent < len(DRAFT), draft  # not at the end
    assert draft.tokens_sent >= EARLY_EXIT, draft  # nor before the early-exit region was judged
    streamed.chunks.extend(chunks)
    assert_progressive_head(streamed.headers)
    assert streamed.text == DRAFT_TEXT
    assert_one_answer(streamed)
    assert streamed.final == {"decision": "accept", "tier": "drafter", "seam_tokens": None,
                              "draft_entropy": pytest.approx(CALM_BITS, abs=0.01), "reason": None,
                              "speculation": "none"}
    assert of("fake-heavy", fake.seen) == []


async def test_the_async_client_gets_an_accepted_draft_early_too(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=20))
    raw = await stack.async_client().chat.completions.with_raw_response.create(
        model="auto", messages=ask("a long confident answer, asynchronously"), stream=True)
    chunks: AsyncStream[ChatCompletionChunk] = raw.parse()
    streamed = Streamed(raw.headers)
    iterator: AsyncIterator[ChatCompletionChunk] = chunks.__aiter__()
    while not streamed.chunks or not has_content(streamed.chunks[-1]):
        streamed.chunks.append(await iterator.__anext__())
    (draft,) = of("fake-drafter", fake.seen)
    assert draft.ended is None and EARLY_EXIT <= draft.tokens_sent < len(DRAFT), draft
    streamed.chunks.extend([chunk async for chunk in iterator])
    assert_progressive_head(streamed.headers)
    assert streamed.text == DRAFT_TEXT
    assert streamed.final["decision"] == "accept"


@pytest.mark.parametrize("length", [1, EARLY_EXIT - 1])
def test_a_draft_within_the_early_exit_region_is_accepted_before_anything_is_shown(stack: Stack, fake: FakeUpstream,
                                                                                   length: int) -> None:
    """Nothing can be released before the early-exit region is judged whole, so a draft that ends
    inside it is accepted with today's headers; the final field is there all the same."""
    fake.script_model("fake-drafter", calm(length))
    streamed = stream(stack, ask(f"a short answer of {length}"))
    assert streamed.headers["X-Routing-Decision"] == "accept"
    assert streamed.headers["X-Routing-Tier"] == "drafter"
    assert streamed.headers["X-Speculation"] == "none"
    assert float(streamed.headers["X-Draft-Entropy"]) == pytest.approx(CALM_BITS, abs=0.01)
    assert streamed.text == "".join(DRAFT[:length])
    assert_one_answer(streamed)
    final = streamed.final
    assert (final["decision"], final["tier"], final["seam_tokens"]) == ("accept", "drafter", None)
    assert float(streamed.headers["X-Draft-Entropy"]) == pytest.approx(final["draft_entropy"], abs=0.001)


def test_a_draft_without_word_boundaries_is_shown_only_when_accepted(stack: Stack, fake: FakeUpstream) -> None:
    """Shown text ends at a word boundary: 40 letters with no space between them are one word,
    so nothing goes out before the draft is accepted, and the headers say so."""
    letters = [chr(ord("a") + i % 26) for i in range(40)]
    fake.script_model("fake-drafter", Script(tokens=letters, entropies=[CALM_BITS] * 40, tokens_per_s=50))
    streamed = stream(stack, ask("one very long word"))
    assert (streamed.headers["X-Routing-Decision"], streamed.headers["X-Speculation"]) == ("accept", "none")
    assert streamed.text == "".join(letters)
    assert streamed.final["decision"] == "accept"


def test_a_draft_in_a_script_without_spaces_is_shown_early(stack: Stack, fake: FakeUpstream) -> None:
    """Between two CJK characters is a boundary: such a draft goes out while it is written."""
    characters = list("東京は日本の首都であり世界で最も人口の多い都市圏の中心として知られている大きな都市です")[:40]
    fake.script_model("fake-drafter", Script(tokens=characters, entropies=[CALM_BITS] * 40, tokens_per_s=20))
    headers, chunks = open_stream(stack, ask("東京について"))
    streamed = Streamed(headers)
    read_until(chunks, streamed, has_content)
    (draft,) = of("fake-drafter", fake.seen)
    assert draft.ended is None, draft
    streamed.chunks.extend(chunks)
    assert_progressive_head(headers)
    assert streamed.text == "".join(characters)


# 2. A draft that turns uncertain after the early-exit region is continued by the heavyweight.

@pytest.mark.parametrize(("variant", "style"), [("speculation", "instruction"), ("serial", "instruction"),
                                                 ("continue_final_message", "continue_final_message"),
                                                 ("prefill", "prefill")])
def test_a_draft_turning_uncertain_after_the_seam_is_continued(stacks: Callable[[str], Stack], fake: FakeUpstream,
                                                               variant: str, style: str) -> None:
    running = stacks(variant)
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask(f"an answer that loses its way ({variant})")
    router, gateway = running.routers[0].url, running.url
    continued = 'draftgate_router_decisions_total{decision="continued",tier="heavyweight"}'
    counts = (metric(router, continued), metric(router, "draftgate_router_seam_tokens_count"),
              metric(gateway, 'draftgate_requests_total{decision="progressive",status="200"}'))

    streamed = stream(running, messages)

    assert_progressive_head(streamed.headers)
    seen = fake.wait_for(all_ended(2))
    (draft,), (heavy,) = of("fake-drafter", seen), of("fake-heavy", seen)
    prefix = shown_prefix(heavy, messages, style)
    seam = seam_of(prefix)
    assert 0 < seam <= CALM_TOKENS  # something was shown, and nothing uncertain
    assert streamed.text == prefix + HEAVY_TEXT  # the seam neither repeats nor loses text
    assert_one_answer(streamed)
    speculated = variant != "serial"
    final = streamed.final
    assert final == {"decision": "continued", "tier": "heavyweight", "seam_tokens": seam,
                     "draft_entropy": final["draft_entropy"], "reason": "window_mean",
                     "speculation": "used" if speculated else "none"}
    assert final["draft_entropy"] > ROUTING.entropy_threshold
    assert draft.closed_early and heavy.completed
    assert draft.ended is not None
    if speculated:
        assert heavy.started < draft.ended  # started at the first elevated token, aimed at the same prefix
    else:
        assert heavy.started >= draft.ended - 0.05  # only after the drafter was aborted
    assert (metric(router, continued), metric(router, "draftgate_router_seam_tokens_count"),
            metric(gateway, 'draftgate_requests_total{decision="progressive",status="200"}')) == tuple(
        c + 1 for c in counts)


def test_the_continuation_gets_what_is_left_of_the_clients_token_limit(stack: Stack, fake: FakeUpstream) -> None:
    """Shown tokens count against max_tokens: drafter and heavyweight together stay within it."""
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    streamed = stream(stack, ask("a limited answer that loses its way"), max_tokens=30)
    seen = fake.wait_for(all_ended(2))
    (heavy,) = of("fake-heavy", seen)
    seam = streamed.final["seam_tokens"]
    assert streamed.final["decision"] == "continued" and 0 < seam < 30
    assert heavy.body["max_tokens"] == 30 - seam


def test_a_continuation_starting_with_a_letter_gets_a_space_at_the_seam(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", turning())
    heavy_tokens = ["h0", *HEAVY_TOKENS[1:]]
    fake.script_model("fake-heavy", Script(tokens=heavy_tokens, tokens_per_s=100))
    messages = ask("a continuation that forgets the space")
    streamed = stream(stack, messages)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    prefix = shown_prefix(heavy, messages, "instruction")
    assert streamed.text == prefix + " " + "".join(heavy_tokens)
    assert streamed.final["seam_tokens"] == seam_of(prefix)


def test_a_continuation_restating_the_prefix_is_not_shown_twice(stack: Stack, fake: FakeUpstream) -> None:
    """The heavyweight's script must be written before the request, so the prefix is the one the
    router shows when it releases as each token is judged: SHOWN_BEFORE_THE_RISE tokens. The draft is slow
    (10 tokens/s) so that no two tokens arrive in one read."""
    expected_prefix = "".join(DRAFT[:SHOWN_BEFORE_THE_RISE])
    fake.script_model("fake-drafter", turning(tokens_per_s=10))
    fake.script_model("fake-heavy", Script(tokens=[*split_tokens(expected_prefix), *HEAVY_TOKENS], tokens_per_s=100))
    messages = ask("a continuation that starts over")
    streamed = stream(stack, messages)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    prefix = shown_prefix(heavy, messages, "instruction")
    assert prefix == expected_prefix, "precondition: the router released up to the hold-back before the doubt"
    assert streamed.text == prefix + HEAVY_TEXT
    assert streamed.final["seam_tokens"] == SHOWN_BEFORE_THE_RISE


def test_a_speculation_is_re_aimed_when_showing_resumes(stack: Stack, fake: FakeUpstream) -> None:
    """A run of three uncertain tokens (2.3 bits, too few to lift the window's mean) pauses showing and
    starts a speculation aimed at what is shown; the calm that follows resumes showing, which makes
    that aim stale: it is cancelled. The critical run later starts another, aimed at the longer
    prefix, and that one continues the answer."""
    rise_at, calm_again, critical_at = CALM_TOKENS, CALM_TOKENS + 3, CALM_TOKENS + 10
    bits = ([CALM_BITS] * rise_at + [CRITICAL_BITS] * (calm_again - rise_at) + [CALM_BITS] * (critical_at - calm_again)
            + [CRITICAL_BITS] * (len(DRAFT) - critical_at))
    fake.script_model("fake-drafter", Script(tokens=DRAFT, entropies=bits, tokens_per_s=20))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, ttft_s=0.5, tokens_per_s=50))
    messages = ask("an answer that wobbles, then loses its way")
    streamed = stream(stack, messages)
    assert_progressive_head(streamed.headers)
    seen = fake.wait_for(all_ended(3))
    stale, used = of("fake-heavy", seen)
    assert stale.closed_early and used.completed
    first, second = shown_prefix(stale, messages, "instruction"), shown_prefix(used, messages, "instruction")
    assert 0 < seam_of(first) <= rise_at, first  # nothing of the rise was shown before it was aimed
    assert seam_of(first) < seam_of(second) <= critical_at, second
    assert streamed.text == second + HEAVY_TEXT
    final = streamed.final
    assert (final["decision"], final["seam_tokens"], final["speculation"]) == ("continued", seam_of(second), "used")
    wait_for_metric(stack.routers[0].url, "draftgate_speculations_active", 0)  # both gave their budget back


def test_a_continued_prefix_ends_at_a_word_boundary(stack: Stack, fake: FakeUpstream) -> None:
    """Words drafted in two pieces (" wo", "rd7"): the hold-back would stop after a first piece
    (19 tokens: 21 calm and two critical judged, less four), so the shown text backs off to the end
    of the last whole word, and the heavyweight continues from there."""
    pieces = [piece for i in range(20) for piece in (" wo", f"rd{i}")]
    calm_pieces = 21
    fake.script_model("fake-drafter", Script(tokens=pieces, tokens_per_s=20, entropies=[CALM_BITS] * calm_pieces
                                             + [CRITICAL_BITS] * (len(pieces) - calm_pieces)))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("an answer in word pieces")
    streamed = stream(stack, messages)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    prefix = shown_prefix(heavy, messages, "instruction")
    seam = streamed.final["seam_tokens"]
    assert 0 < seam <= calm_pieces and "".join(pieces[:seam]) == prefix
    assert pieces[seam].startswith(" "), (prefix, pieces[seam])  # the next drafted piece starts a word
    assert streamed.text == prefix + HEAVY_TEXT


def test_a_drafter_failing_after_the_seam_is_continued_too(stack: Stack, fake: FakeUpstream) -> None:
    """The drafter's connection drops mid-chunk after 30 confident tokens: the heavyweight is
    tried before any error, and what the client already has stays the start of the answer."""
    fake.script_model("fake-drafter", Script(tokens=DRAFT, entropies=[CALM_BITS] * len(DRAFT),
                                             garbage="cut_mid_json", garbage_after=30))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("a drafter that falls over")
    streamed = stream(stack, messages)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    prefix = shown_prefix(heavy, messages, "instruction")
    assert streamed.text == prefix + HEAVY_TEXT
    final = streamed.final
    assert (final["decision"], final["reason"]) == ("continued", "drafter_error")
    assert 0 < final["seam_tokens"] == seam_of(prefix) <= 30 - HOLDBACK


# 3. A draft that turns uncertain inside the early-exit region escalates as today.

def test_doubt_inside_the_early_exit_region_escalates_with_nothing_shown(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", early_doubt())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("an answer unsure from the start")
    streamed = stream(stack, messages)
    assert streamed.headers["X-Routing-Decision"] == "escalate"
    assert streamed.headers["X-Routing-Tier"] == "heavyweight"
    assert streamed.headers["X-Escalation-Reason"] == "early_token"
    assert streamed.headers["X-Speculation"] == "none"
    assert streamed.text == HEAVY_TEXT  # nothing from the drafter
    assert_one_answer(streamed)
    assert streamed.final == {"decision": "escalate", "tier": "heavyweight", "seam_tokens": 0,
                              "draft_entropy": streamed.final["draft_entropy"], "reason": "early_token",
                              "speculation": "none"}
    assert float(streamed.headers["X-Draft-Entropy"]) == pytest.approx(streamed.final["draft_entropy"], abs=0.001)
    seen = fake.wait_for(all_ended(2))
    (draft,), (heavy,) = of("fake-drafter", seen), of("fake-heavy", seen)
    assert heavy.body["messages"] == messages  # the client's request, not a continuation
    assert draft.closed_early


def test_a_draft_elevated_throughout_is_never_shown_and_escalates_from_its_speculation(
        stack: Stack, fake: FakeUpstream) -> None:
    """Releasing waits for a token that is not elevated: 1.5 bits from the start (above the 1.4
    soft threshold) never gets one, and the window mean crosses 2.0 bits at token 19."""
    fake.script_model("fake-drafter", Script(tokens=DRAFT[:30], entropies=[1.5] * 12 + [2.3] * 18,
                                             tokens_per_s=50))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("an answer elevated throughout")
    streamed = stream(stack, messages)
    assert (streamed.headers["X-Routing-Decision"], streamed.headers["X-Speculation"]) == ("escalate", "used")
    assert streamed.headers["X-Escalation-Reason"] == "window_mean"
    assert streamed.text == HEAVY_TEXT
    final = streamed.final
    assert (final["decision"], final["seam_tokens"], final["speculation"]) == ("escalate", 0, "used")
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    assert heavy.body["messages"] == messages


# 4. A client that leaves mid-stream cancels whichever upstream is running.

def test_leaving_during_the_progressive_draft_closes_the_drafter(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=10))
    headers, chunks = open_stream(stack, ask("a draft nobody waits for"))
    read_until(chunks, Streamed(headers), has_content)
    chunks.close()
    (draft,) = of("fake-drafter", fake.wait_for(all_ended(1)))
    assert draft.closed_early and draft.tokens_sent < len(DRAFT)
    assert of("fake-heavy", fake.seen) == []


def test_leaving_during_the_continuation_closes_the_heavyweight(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", turning())
    slow_heavy = [f" h{i}" for i in range(60)]
    fake.script_model("fake-heavy", Script(tokens=slow_heavy, tokens_per_s=5))
    headers, chunks = open_stream(stack, ask("a continuation nobody waits for"))
    streamed = Streamed(headers)
    read_until(chunks, streamed, lambda c: has_content(c) and (c.choices[0].delta.content or "").startswith(" h"))
    chunks.close()
    seen = fake.wait_for(all_ended(2))
    (draft,), (heavy,) = of("fake-drafter", seen), of("fake-heavy", seen)
    assert draft.closed_early
    assert heavy.closed_early and heavy.tokens_sent < len(slow_heavy), heavy


def test_leaving_while_a_speculation_waits_closes_both_upstreams(stack: Stack, fake: FakeUpstream) -> None:
    """A draft that rises after the seam (1.5 bits: above the speculation threshold, below the
    threshold) pauses showing and starts the heavyweight; the client leaves before any decision."""
    bits = [CALM_BITS] * CALM_TOKENS + [1.5] * (len(DRAFT) - CALM_TOKENS)
    fake.script_model("fake-drafter", Script(tokens=DRAFT, entropies=bits, tokens_per_s=10))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, ttft_s=10))
    headers, chunks = open_stream(stack, ask("a wavering draft nobody waits for"))
    read_until(chunks, Streamed(headers), has_content)
    fake.wait_for(lambda seen: len(of("fake-heavy", seen)) == 1)
    chunks.close()
    seen = fake.wait_for(all_ended(2))
    assert all(s.closed_early for s in seen), seen
    wait_for_metric(stack.routers[0].url, "draftgate_speculations_active", 0)


# 5. The official client reads the stream and ignores the extra field; usage comes last.

def test_usage_is_the_last_chunk_and_carries_the_decision(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=50))
    streamed = stream(stack, ask("an accepted answer, with usage"), stream_options={"include_usage": True})
    assert_progressive_head(streamed.headers)
    assert_one_answer(streamed, usage=True)
    last = streamed.chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(DRAFT)
    assert streamed.final["decision"] == "accept"
    assert streamed.text == DRAFT_TEXT


async def test_usage_of_a_continued_answer_counts_the_shown_drafter_tokens(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("a continued answer, with usage")
    raw = await stack.async_client().chat.completions.with_raw_response.create(
        model="auto", messages=messages, stream=True, stream_options={"include_usage": True})
    chunks: AsyncStream[ChatCompletionChunk] = raw.parse()
    streamed = Streamed(raw.headers, [chunk async for chunk in chunks])
    assert_progressive_head(streamed.headers)
    assert_one_answer(streamed, usage=True)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    prefix = shown_prefix(heavy, messages, "instruction")
    assert streamed.text == prefix + HEAVY_TEXT
    final = streamed.final
    assert final["decision"] == "continued" and final["seam_tokens"] == seam_of(prefix)
    usage = streamed.chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == len(HEAVY_TOKENS) + final["seam_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_concurrent_progressive_streams_keep_to_their_own_answers(stack: Stack, fake: FakeUpstream) -> None:
    """Three accepted and three continued streams at once, through one router: each client gets
    its own draft, or its own shown prefix and the continuation, and its own decision."""
    fake.script("steady", calm(40, tokens_per_s=25))
    fake.script("wavering", turning(tokens_per_s=25))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    client = stack.async_client()

    async def one(question: str) -> Streamed:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=ask(question),
                                                                     stream=True)
        chunks: AsyncStream[ChatCompletionChunk] = raw.parse()
        return Streamed(raw.headers, [chunk async for chunk in chunks])

    questions = [f"{kind} {i}" for i in range(3) for kind in ("steady", "wavering")]
    answers = dict(zip(questions, await asyncio.gather(*(one(q) for q in questions)), strict=True))
    heavies = {h.body["messages"][0]["content"]: h for h in of("fake-heavy", fake.wait_for(all_ended(9)))}
    assert sorted(heavies) == sorted(q for q in questions if q.startswith("wavering"))
    for question, streamed in answers.items():
        assert_progressive_head(streamed.headers)
        assert_one_answer(streamed)
        if question.startswith("steady"):
            assert streamed.text == DRAFT_TEXT and streamed.final["decision"] == "accept", question
        else:
            prefix = shown_prefix(heavies[question], ask(question), "instruction")
            assert streamed.text == prefix + HEAVY_TEXT, question
            assert (streamed.final["decision"], streamed.final["seam_tokens"]) == ("continued", seam_of(prefix))


# 6. stream_mode buffered keeps today's behaviour.

def test_buffered_mode_serves_an_accepted_draft_only_at_the_end(stacks: Callable[[str], Stack],
                                                                fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=25))
    headers, chunks = open_stream(stacks("buffered"), ask("a buffered answer"))
    streamed = Streamed(headers)
    read_until(chunks, streamed, has_content)
    (draft,) = of("fake-drafter", fake.seen)
    assert draft.completed and draft.tokens_sent == len(DRAFT)  # the first token came after the last
    streamed.chunks.extend(chunks)
    assert (headers["X-Routing-Decision"], headers["X-Routing-Tier"], headers["X-Speculation"]) == (
        "accept", "drafter", "none")
    assert float(headers["X-Draft-Entropy"]) == pytest.approx(CALM_BITS, abs=0.01)
    assert streamed.text == DRAFT_TEXT
    assert_one_answer(streamed)
    assert no_draftgate_field(streamed.chunks)


def test_buffered_mode_escalates_a_late_doubt_from_the_start(stacks: Callable[[str], Stack],
                                                             fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("a buffered answer that loses its way")
    streamed = stream(stacks("buffered"), messages)
    assert (streamed.headers["X-Routing-Decision"], streamed.headers["X-Routing-Tier"]) == ("escalate", "heavyweight")
    assert streamed.headers["X-Escalation-Reason"] == "window_mean"
    assert streamed.text == HEAVY_TEXT
    assert no_draftgate_field(streamed.chunks)
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    assert heavy.body["messages"] == messages


# 7. The cache keeps drafts accepted whole, never continued answers.

@pytest.fixture(scope="module")
def cached_stack(redis_server: str, fake: FakeUpstream,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Service]]:
    with running_cached_stack(redis_server, tmp_path_factory.mktemp("cached"), fake) as running:
        yield running


def drained_entries(stack: Stack) -> int:
    """Exact entries once the cache writer has stored everything the routers queued."""
    asyncio.run(_written(stack.redis_url))
    stats = httpx.get(f"{stack.url}/cache/stats", timeout=10).raise_for_status().json()
    return int(stats["exact"]["entries"])


async def _written(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await written(redis)
    finally:
        await redis.aclose()


def flush(stack: Stack) -> None:
    drained_entries(stack)  # a write still on the stream would land after the flush
    httpx.post(f"{stack.url}/cache/flush", timeout=10).raise_for_status()


def test_an_accepted_progressive_draft_is_cached(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    flush(stack)
    fake.script_model("fake-drafter", calm(40, tokens_per_s=50))
    messages = ask("which rivers cross Lyon")
    first = stream(stack, messages)
    assert first.headers["X-Routing-Decision"] == "progressive" and first.final["decision"] == "accept"
    assert drained_entries(stack) == 1
    again = stream(stack, messages)
    assert (again.headers["X-Routing-Decision"], again.headers["X-Cache"]) == ("cache_hit", "exact")
    assert again.text == DRAFT_TEXT
    assert len(of("fake-drafter", fake.seen)) == 1


def test_a_continued_answer_is_never_cached(cached_stack: tuple[Stack, Service], fake: FakeUpstream) -> None:
    stack, _ = cached_stack
    flush(stack)
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("which bridges cross the Rhone in Lyon")
    first = stream(stack, messages)
    assert first.final["decision"] == "continued"
    assert drained_entries(stack) == 0
    again = stream(stack, messages)
    assert again.headers["X-Routing-Decision"] != "cache_hit"
    assert len(of("fake-drafter", fake.seen)) == 2


# 8. Plain requests and forced tiers are unchanged.

def test_a_plain_request_is_unchanged(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", calm(40, tokens_per_s=None))
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=ask("a plain question"))
    assert (raw.headers["X-Routing-Decision"], raw.headers["X-Routing-Tier"]) == ("accept", "drafter")
    assert float(raw.headers["X-Draft-Entropy"]) == pytest.approx(CALM_BITS, abs=0.01)
    completion = raw.parse()
    assert completion.choices[0].message.content == DRAFT_TEXT
    assert "draftgate" not in (completion.model_extra or {})


def test_a_plain_request_turning_uncertain_late_escalates_from_the_start(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", turning())
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    messages = ask("a plain question that loses its way")
    raw = stack.client().chat.completions.with_raw_response.create(model="auto", messages=messages)
    assert (raw.headers["X-Routing-Decision"], raw.headers["X-Speculation"]) == ("escalate", "used")
    completion = raw.parse()
    assert completion.choices[0].message.content == HEAVY_TEXT
    assert "draftgate" not in (completion.model_extra or {})
    (heavy,) = of("fake-heavy", fake.wait_for(all_ended(2)))
    assert heavy.body["messages"] == messages


@pytest.mark.parametrize(("model", "decision", "tier", "text"), [
    ("drafter", "accept", "drafter", DRAFT_TEXT), ("heavyweight", "escalate", "heavyweight", HEAVY_TEXT)])
def test_a_forced_tier_streams_as_today(stack: Stack, fake: FakeUpstream, model: str, decision: str, tier: str,
                                        text: str) -> None:
    """A forced drafter is never judged, so even a draft turning uncertain is neither held nor continued."""
    fake.script_model("fake-drafter", turning(tokens_per_s=100))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    streamed = stream(stack, ask(f"forced to the {model}"), model=model)
    assert (streamed.headers["X-Routing-Decision"], streamed.headers["X-Routing-Tier"]) == (decision, tier)
    assert streamed.headers["X-Draft-Entropy"] == "0.000" and streamed.headers["X-Speculation"] == "none"
    assert streamed.text == text
    assert_one_answer(streamed)
    assert no_draftgate_field(streamed.chunks)
    assert [s.model for s in fake.wait_for(all_ended(1))] == [f"fake-{'heavy' if tier == 'heavyweight' else 'drafter'}"]
