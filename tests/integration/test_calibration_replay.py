"""The sweep's replay and the live router take the same decision on the same draft.

Each scripted draft is recorded as `calibrate collect` records it (stream.stream_answer through the
router's upstream code, written to a traces file and read back), replayed offline through
replay.replay, and sent as a plain request through a real gateway and router; the router's headers
(decision, escalation reason, draft entropy) must be what the replay says. Two router configs: the
default (k=5, 2.0 bits, window 10, early exit 10) and a sharper one at k=20.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.router.calibration.replay import Replayed, Setting, replay
from services.router.calibration.stream import stream_answer
from services.router.calibration.traces import Trace, load_traces
from services.router.upstream import create_tier
from shared.config import RoutingConfig, UpstreamConfig, load_config
from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack

CONFIGS = {
    "default": {},
    "sharp-k20": {"DRAFTGATE_ROUTING_TOP_LOGPROBS": "20", "DRAFTGATE_ROUTING_ENTROPY_THRESHOLD": "1.5",
                  "DRAFTGATE_ROUTING_WINDOW": "5", "DRAFTGATE_ROUTING_EARLY_EXIT_TOKENS": "3"},
}


def words(n: int) -> list[str]:
    return [f" w{i}" for i in range(n)]


def drafts() -> dict[str, Script]:
    """Calm, late doubt, early doubt, a lone spike past the early region, a draft sitting right on the
    threshold, and seeded random ones: every path of the rule, both ways."""
    rng = random.Random(11)
    scripted = {
        "calm": Script(tokens=words(30), entropies=[0.3] * 30),
        "late-doubt": Script(tokens=words(30), entropies=[0.2] * 15 + [2.8] * 15),
        "early-doubt": Script(tokens=words(20), entropies=[0.1, 0.1, 2.9] + [0.1] * 17),
        "lone-spike": Script(tokens=words(30), entropies=[0.1] * 14 + [3.2] + [0.1] * 15),
        "on-the-line-2.0": Script(tokens=words(25), entropies=[2.0] * 25),
        "on-the-line-1.5": Script(tokens=words(25), entropies=[1.5] * 25),
    }
    for n in range(8):
        scripted[f"random-{n}"] = Script(tokens=words(40), entropies=[round(rng.uniform(0, 3.2), 3) for _ in range(40)])
    return scripted


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def configured(request: pytest.FixtureRequest, redis_server: str, fake: FakeUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, RoutingConfig]]:
    env = CONFIGS[request.param]
    with running_stack(redis_server, tmp_path_factory.mktemp("stack"), fake, **env) as stack:
        # The routing config exactly as the router process read it: config.yaml and the same env.
        yield stack, load_config(None, stack.env).routing


async def record(fake: FakeUpstream, prompt: str, top_k: int, traces: Path) -> None:
    """Record the drafter's answer to `prompt` as collect does, appended to `traces`."""
    tier = create_tier("drafter", UpstreamConfig(base_url=fake.url, model="fake-drafter"), {})
    try:
        answer = await stream_answer(tier, {"messages": ask(prompt), "max_tokens": 64}, top_k)
    finally:
        await tier.client.close()
    trace = Trace(id=prompt, tier="drafter", model=tier.model, category="factual", split="test", text=answer.text,
                  tokens=answer.tokens, top_k=top_k, latency_s=answer.latency_s)
    with traces.open("a") as out:
        out.write(json.dumps(trace.to_json()) + "\n")


def test_replay_and_the_live_router_decide_alike(configured: tuple[Stack, RoutingConfig], fake: FakeUpstream,
                                                tmp_path: Path) -> None:
    stack, routing = configured
    fake.script_model("fake-heavy", confident("The heavyweight answers."))
    scripted = drafts()
    for name, script in scripted.items():
        fake.script(f"draft {name}", script)
    traces = tmp_path / "traces.jsonl"
    for name in scripted:
        asyncio.run(record(fake, f"draft {name}", routing.top_logprobs, traces))
    recorded = load_traces(traces)
    setting = Setting(routing.entropy_threshold, routing.window, routing.early_exit_tokens)
    client = stack.client()
    replayed: dict[str, Replayed] = {}
    live: dict[str, tuple[str, str | None, str]] = {}
    for name in scripted:
        trace = recorded[(f"draft {name}", "drafter")]
        assert len(trace.tokens) == len(scripted[name].tokens) and trace.top_k == routing.top_logprobs
        replayed[name] = replay(trace.tokens, setting, routing.top_logprobs)
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask(f"draft {name}"))
        live[name] = (raw.headers["X-Routing-Decision"], raw.headers.get("X-Escalation-Reason"),
                      raw.headers["X-Draft-Entropy"])
    expected = {name: ("escalate" if r.escalated else "accept", r.reason, f"{r.metric:.3f}")
                for name, r in replayed.items()}
    assert live == expected
    # Not vacuous: both decisions and both escalation paths were taken.
    assert {r.escalated for r in replayed.values()} == {True, False}
    assert {r.reason for r in replayed.values()} >= {"window_mean", "early_token"}
