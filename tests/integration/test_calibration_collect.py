"""`calibrate collect` and `calibrate grade` against the fake upstream, through the CLI.

The fake stands in for the paid model APIs only: requests go through the router's own upstream code,
records land in real files, code answers run in real subprocesses, and an interrupted run is a real
process stopped with SIGINT and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.router import calibrate
from services.router.calibration.grade import read_grades
from services.router.calibration.jsonl import read_jsonl
from services.router.calibration.traces import load_traces, read_traces
from tests.fakes.scripts import Script, confident
from tests.fakes.upstream import FakeUpstream, Seen

REPO = Path(__file__).resolve().parents[2]
JUDGE_MARK = "You are an evaluation judge"


def item(item_id: str, grader: dict, question: str | None = None, category: str = "factual",
         split: str = "train", max_tokens: int = 32) -> dict:
    return {"id": item_id, "category": category, "family": item_id.rsplit("-", 1)[0], "split": split,
            "messages": [{"role": "user", "content": question or f"Question {item_id}?"}],
            "max_tokens": max_tokens, "grader": grader}


def write_prompts(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def write_config(path: Path, fake: FakeUpstream) -> Path:
    path.write_text(f"drafter:\n  base_url: {fake.url}\n  model: fake-drafter\n"
                    f"heavyweight:\n  base_url: {fake.url}\n  model: fake-heavy\n")
    return path


def of(model: str, seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == model]


@pytest.fixture
def files(tmp_path: Path, fake: FakeUpstream) -> dict[str, Path]:
    return {"config": write_config(tmp_path / "config.yaml", fake), "traces": tmp_path / "out" / "traces.jsonl",
            "grades": tmp_path / "out" / "grades.jsonl", "prompts": tmp_path / "prompts.jsonl"}


def collect(files: dict[str, Path], *extra: str) -> int:
    return calibrate.main(["collect", "--prompts", str(files["prompts"]), "--config", str(files["config"]),
                           "--out", str(files["traces"]), "--quiet", *extra])


def grade(files: dict[str, Path], *extra: str) -> int:
    return calibrate.main(["grade", "--prompts", str(files["prompts"]), "--config", str(files["config"]),
                           "--traces", str(files["traces"]), "--out", str(files["grades"]), "--quiet", *extra])


def test_collect_records_every_token_with_its_top_20_log_probs_and_the_heavyweight_answer(
        fake: FakeUpstream, files: dict[str, Path]) -> None:
    write_prompts(files["prompts"], [item("capital-1", {"kind": "aliases", "answers": ["Paris"]},
                                          "What is the capital of France?", max_tokens=24)])
    fake.script_model("fake-drafter", Script(tokens=["Paris", " is", " the", " capital", "."],
                                             entropies=[0.1, 0.5, 1.0, 2.0, 3.0], ttft_s=0.05))
    fake.script_model("fake-heavy", confident("The capital of France is Paris."))

    assert collect(files, "--tiers", "drafter,heavyweight", "--temperature", "0") == 0

    traces = load_traces(files["traces"])
    draft, heavy = traces[("capital-1", "drafter")], traces[("capital-1", "heavyweight")]
    assert draft.text == "Paris is the capital." and draft.ok and draft.attempts == 1
    assert [t.token for t in draft.tokens] == ["Paris", " is", " the", " capital", "."]
    assert all(len(t.top_logprobs) == 20 for t in draft.tokens) and draft.top_k == 20
    assert draft.tokens[0].logprob == draft.tokens[0].top_logprobs[0]
    assert (draft.category, draft.split, draft.model) == ("factual", "train", "fake-drafter")
    assert draft.usage is not None and draft.usage.completion_tokens == 5
    assert draft.finish_reason == "stop"
    assert draft.ttft_s is not None and 0.05 <= draft.ttft_s <= draft.latency_s
    assert heavy.text == "The capital of France is Paris." and heavy.tokens == () and heavy.top_k == 0
    (drafter_call,) = of("fake-drafter", fake.seen)
    body = drafter_call.body
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["stream"] is True
    assert body["max_tokens"] == 24 and body["temperature"] == 0
    assert body["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert body["stream_options"] == {"include_usage": True}
    (heavy_call,) = of("fake-heavy", fake.seen)
    assert "logprobs" not in heavy_call.body and heavy_call.body["max_tokens"] == 24


def test_split_limit_and_top_k_choose_what_is_collected(fake: FakeUpstream, files: dict[str, Path]) -> None:
    spec = {"kind": "number", "value": 1}
    write_prompts(files["prompts"], [item(f"n-{i}", spec, split="test" if i % 2 else "train") for i in range(6)])
    assert collect(files, "--split", "test", "--limit", "2", "--top-k", "5") == 0
    traces = read_traces(files["traces"])
    assert [t.id for t in traces] == ["n-1", "n-3"]
    assert all(len(t.top_logprobs) == 5 for trace in traces for t in trace.tokens)
    assert all(s.body["top_logprobs"] == 5 for s in fake.seen)


def test_a_rate_limited_call_is_retried_until_it_succeeds(fake: FakeUpstream, files: dict[str, Path]) -> None:
    write_prompts(files["prompts"], [item("limited-1", {"kind": "aliases", "answers": ["ok"]})])
    fake.script_model("fake-drafter", Script(tokens=["x"], status=429))
    status: list[int] = []
    runner = threading.Thread(target=lambda: status.append(collect(files, "--backoff-s", "0.5", "--retries", "6")))
    runner.start()
    fake.wait_for(lambda seen: len([s for s in seen if s.status == 429]) >= 2)  # retried at least once
    fake.script_model("fake-drafter", confident("ok then"))
    runner.join(60)

    assert status == [0]
    (trace,) = read_traces(files["traces"])
    assert trace.ok and trace.text == "ok then"
    calls = of("fake-drafter", fake.seen)
    assert trace.attempts == len(calls) >= 3
    assert [s.status for s in calls[:-1]] == [429] * (len(calls) - 1) and calls[-1].completed


def test_a_call_failing_after_every_retry_is_recorded_with_its_error_and_retried_next_run(
        fake: FakeUpstream, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_prompts(files["prompts"], [item("broken-1", {"kind": "aliases", "answers": ["ok"]}),
                                     item("fine-1", {"kind": "aliases", "answers": ["ok"]})])
    fake.script("broken-1", Script(tokens=["x"], status=503))
    fake.script_model("fake-drafter", confident("ok"))

    assert collect(files, "--retries", "2", "--backoff-s", "0.01") == 1

    traces = load_traces(files["traces"])
    assert traces[("broken-1", "drafter")].error == "503: scripted failure 503"
    assert traces[("broken-1", "drafter")].attempts == 3
    assert traces[("fine-1", "drafter")].ok
    assert "broken-1 (drafter): 503: scripted failure 503" in capsys.readouterr().err

    fake.script("broken-1", confident("ok now"))
    assert collect(files) == 0
    records = read_traces(files["traces"])
    assert sorted(t.id for t in records) == ["broken-1", "broken-1", "fine-1"] and records[-1].id == "broken-1"
    assert load_traces(files["traces"])[("broken-1", "drafter")].text == "ok now"
    assert len(of("fake-drafter", fake.seen)) == 3 + 1 + 1  # the fine one was not asked again


def test_an_upstream_refusing_every_request_stops_the_run_and_says_why(
        fake: FakeUpstream, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_prompts(files["prompts"], [item(f"q-{i}", {"kind": "number", "value": 1}) for i in range(5)])
    fake.script_model("fake-drafter", Script(tokens=["x"], status=401))
    assert collect(files, "--concurrency", "1") == 2
    assert "the upstream refused the request (401: scripted failure 401)" in capsys.readouterr().err
    assert len(fake.seen) == 1
    assert read_traces(files["traces"]) == []


def test_drafts_without_log_probs_are_recorded_and_called_out(fake: FakeUpstream, files: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_prompts(files["prompts"], [item("plain-1", {"kind": "aliases", "answers": ["ok"]})])
    fake.script_model("fake-drafter", confident("ok then", logprobs=False))
    assert collect(files) == 0
    (trace,) = read_traces(files["traces"])
    assert trace.text == "ok then" and trace.tokens == ()
    assert "1 drafts came without log-probs (e.g. plain-1)" in capsys.readouterr().err


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DRAFTGATE_")}


def lines_of(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_an_interrupted_run_resumes_with_no_duplicates_and_nothing_missing(fake: FakeUpstream,
                                                                           files: dict[str, Path]) -> None:
    n = 12
    write_prompts(files["prompts"], [item(f"slow-{i}", {"kind": "number", "value": i}) for i in range(n)])
    # The first three prompts are answered at once, the others not until the run has been interrupted:
    # with two at a time, the run is stopped with exactly three recorded, however loaded the machine.
    released = threading.Event()
    tokens = [f" t{i}" for i in range(8)]
    fake.script_model("fake-drafter", Script(tokens=tokens))
    for i in range(3, n):
        fake.script(f"slow-{i}?", Script(tokens=tokens, hold=released))
    command = [sys.executable, "-m", "services.router.calibrate", "collect", "--prompts", str(files["prompts"]),
               "--config", str(files["config"]), "--out", str(files["traces"]), "--quiet"]
    process = subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while lines_of(files["traces"]) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    released.set()

    assert process.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    first = read_traces(files["traces"])
    assert len(first) == 3
    with files["traces"].open("a") as out:  # and a record torn by a hard kill
        out.write('{"v": 1, "id": "slow-11", "tier": "drafter", "te')

    rerun = subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120)

    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(first)} already recorded, {n - len(first)} to go" in rerun.stdout
    records = list(read_jsonl(files["traces"]))
    assert sorted(r["id"] for r in records) == sorted(f"slow-{i}" for i in range(n))  # each once
    assert all(r["error"] is None and r["text"] == "".join(f" t{i}" for i in range(8)) for r in records)
    assert files["traces"].read_text().endswith("}\n")


CODE_RIGHT = "```python\ndef double(x):\n    return 2 * x\n```"
CODE_LOOPS = "```python\ndef double(x):\n    while True:\n        pass\n```"


def test_grade_marks_each_answer_by_its_grader_including_code_and_the_judge(
        fake: FakeUpstream, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = {"kind": "code", "entry_point": "double", "tests": ["assert double(2) == 4", "assert double(0) == 0"]}
    judged = {"kind": "judge", "rubric": "A short poem about the sea that mentions waves."}
    write_prompts(files["prompts"], [
        item("fact-1", {"kind": "aliases", "answers": ["Paris"]}, "Capital of France?"),
        item("sum-1", {"kind": "number", "value": 1234}, "Add 1000 and 234."),
        item("code-1", code, "Write double(x).", category="code"),
        item("code-2", code, "Write double(x), carefully.", category="code"),
        item("poem-1", judged, "Write a poem about the sea.", category="creative"),
    ])
    fake.script("Capital of France", confident("It is Lyon."))
    fake.script("Add 1000", confident("The answer is 1,234."))
    fake.script("Write double(x).", confident(CODE_RIGHT))
    fake.script("carefully", confident(CODE_LOOPS))
    fake.script("poem about the sea", confident("Waves roll in, waves roll out."))
    assert collect(files) == 0
    fake.script(JUDGE_MARK, confident('{"score": 4, "reasoning": "mentions waves"}'))

    assert grade(files, "--code-cpu-s", "1") == 0

    grades = read_grades(files["grades"])
    assert {key[0]: g.correct for key, g in grades.items()} == {
        "fact-1": False, "sum-1": True, "code-1": True, "code-2": False, "poem-1": True}
    assert grades[("code-2", "drafter")].detail.startswith("killed")
    assert grades[("poem-1", "drafter")].score == 4 and grades[("poem-1", "drafter")].method == "judge"
    record = next(r for r in read_jsonl(files["grades"]) if r["id"] == "sum-1")
    assert record == {"v": 1, "id": "sum-1", "tier": "drafter", "correct": True, "method": "number", "score": None,
                      "detail": "answer 1234, expected 1234"}
    (judge_call,) = of("fake-heavy", fake.seen)
    prompt = judge_call.body["messages"][0]["content"]
    assert "Write a poem about the sea." in prompt and "mentions waves" in prompt
    assert "Waves roll in, waves roll out." in prompt
    assert "drafter: 3/5 right (60.0%)" in capsys.readouterr().out

    calls = len(fake.seen)
    assert grade(files) == 0  # resumed: nothing left to grade, no judge call
    assert len(fake.seen) == calls and len(list(read_jsonl(files["grades"]))) == 5


def test_a_judge_that_states_no_score_is_asked_again_then_leaves_the_answer_ungraded(
        fake: FakeUpstream, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_prompts(files["prompts"], [item("poem-1", {"kind": "judge", "rubric": "Any poem."}, "Write a poem."),
                                     item("fact-1", {"kind": "aliases", "answers": ["Paris"]}, "Capital?")])
    fake.script_model("fake-drafter", confident("Roses are red. Paris."))
    assert collect(files) == 0
    fake.script(JUDGE_MARK, confident("What a lovely poem!"))
    fake.script("stated no score", confident("Truly lovely."))

    assert grade(files) == 1

    assert set(read_grades(files["grades"])) == {("fact-1", "drafter")}  # no guessed grade for the poem
    judge_calls = of("fake-heavy", fake.seen)
    assert len(judge_calls) == 2
    retry = judge_calls[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"] and retry[1]["content"] == "What a lovely poem!"
    assert "the judge stated no score 1-5 in 2 answers" in capsys.readouterr().err

    fake.script(JUDGE_MARK, confident('{"score": 2, "reasoning": "not a poem"}'))
    assert grade(files) == 0
    assert read_grades(files["grades"])[("poem-1", "drafter")].correct is False


def test_no_judge_leaves_judge_items_ungraded_without_calling_anyone(fake: FakeUpstream,
                                                                     files: dict[str, Path]) -> None:
    write_prompts(files["prompts"], [item("poem-1", {"kind": "judge", "rubric": "Any poem."}, "Write a poem.")])
    assert collect(files) == 0
    calls = len(fake.seen)
    assert grade(files, "--no-judge") == 0
    assert read_grades(files["grades"]) == {} and len(fake.seen) == calls
