"""`calibrate collect`, `grade` and `sweep` end to end on ten shipped prompts through the real local
SmolLM2 (llama.cpp), both tiers: the recorded traces carry the 20 alternatives llama.cpp returns, the
grades come from the real graders (code run in the sandbox), and the sweep replays them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.router import calibrate
from services.router.calibration.dataset import load_items
from services.router.calibration.grade import read_grades
from services.router.calibration.traces import load_traces
from tests.support import Service, free_port

pytestmark = pytest.mark.real_model

PER_CATEGORY = {"factual": 3, "reasoning": 3, "code": 2, "creative": 2}
TOP_K = 20


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The llama.cpp server, found and started by scripts.local_model from the tier config."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    env = {"DRAFTGATE_DRAFTER_BASE_URL": url, "DRAFTGATE_DRAFTER_MODEL": "smollm2",
           "DRAFTGATE_HEAVYWEIGHT_BASE_URL": url, "DRAFTGATE_HEAVYWEIGHT_MODEL": "smollm2"}
    log = tmp_path_factory.mktemp("model") / "model.log"
    server = Service("scripts.local_model", env, port, log).start(wait_path="/v1/models", timeout_s=180)
    yield url
    server.stop()


def ten_prompts(path: Path) -> list[str]:
    """The first shipped items of each category in file order (the file is shuffled), judge items
    aside: a 135M judge states no usable score."""
    wanted = dict(PER_CATEGORY)
    chosen = []
    for item in load_items():
        if wanted.get(item.category, 0) and item.kind != "judge":
            wanted[item.category] -= 1
            chosen.append(item)
    path.write_text("".join(item.dumps() + "\n" for item in chosen))
    return [item.id for item in chosen]


def config_for(path: Path, url: str) -> Path:
    """Both tiers on the local server, priced as the nano / 4.1 pair the README prices them as."""
    path.write_text(f"drafter:\n  base_url: {url}\n  model: smollm2\n  input_usd_per_mtok: 0.10\n"
                    f"  output_usd_per_mtok: 0.40\nheavyweight:\n  base_url: {url}\n  model: smollm2\n"
                    "  input_usd_per_mtok: 2.00\n  output_usd_per_mtok: 8.00\n")
    return path


def test_collect_grade_and_sweep_on_ten_prompts_through_the_local_model(model_url: str, tmp_path: Path) -> None:
    prompts, config = tmp_path / "prompts.jsonl", config_for(tmp_path / "config.yaml", model_url)
    traces_path, grades_path, sweep_path = tmp_path / "traces.jsonl", tmp_path / "grades.jsonl", tmp_path / "sweep.json"
    ids = ten_prompts(prompts)
    assert len(ids) == 10
    common = ["--prompts", str(prompts), "--config", str(config), "--quiet"]

    assert calibrate.main(["collect", *common, "--out", str(traces_path), "--tiers", "drafter,heavyweight",
                           "--top-k", str(TOP_K), "--concurrency", "1"]) == 0

    traces = load_traces(traces_path)
    assert set(traces) == {(i, tier) for i in ids for tier in ("drafter", "heavyweight")}
    assert all(t.ok and t.attempts == 1 and t.model == "smollm2" for t in traces.values())
    drafts = [t for t in traces.values() if t.tier == "drafter"]
    for draft in drafts:
        assert draft.tokens and draft.top_k == TOP_K
        assert "".join(token.token for token in draft.tokens) == draft.text
        assert draft.finish_reason in ("stop", "length")
        assert draft.ttft_s is not None and 0 < draft.ttft_s <= draft.latency_s
        assert all(token.logprob is not None and token.logprob <= 0 for token in draft.tokens)
    widths = Counter(len(token.top_logprobs) for draft in drafts for token in draft.tokens)
    # llama.cpp honours top_logprobs=20; alternatives that decode to the same text (digits, spaces)
    # come back merged, so a few tokens carry fewer.
    assert max(widths) == TOP_K and widths[TOP_K] >= 0.8 * sum(widths.values())

    assert calibrate.main(["grade", *common, "--traces", str(traces_path), "--out", str(grades_path)]) == 0

    grades = read_grades(grades_path)
    kinds = {item.id: item.kind for item in load_items(prompts)}
    assert set(grades) == set(traces)
    assert all(grade.method == kinds[grade.id] for grade in grades.values())
    code_grades = [g for g in grades.values() if g.method == "code"]
    assert all("tests passed" in g.detail or g.detail.startswith(("solution:", "killed", "exited", "empty"))
               for g in code_grades)

    assert calibrate.main(["sweep", "--traces", str(traces_path), "--grades", str(grades_path), "--prompts",
                           str(prompts), "--config", str(config), "--out", str(sweep_path), "--min-accuracy", "0",
                           "--resamples", "200", "--quiet"]) == 0

    sweep = json.loads(sweep_path.read_text())
    assert sweep["inputs"]["items"] == 10
    assert sweep["chosen"] is not None and sweep["rows"]
