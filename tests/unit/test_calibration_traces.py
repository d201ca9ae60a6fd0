"""Trace records and their append-only file: a record survives the round trip, a torn last line (a
killed run) is skipped and cut before the next append, damage elsewhere names its line, and the
record that counts for a prompt is its last success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.router.calibration.jsonl import Appender, RecordFileError, read_jsonl, repair_tail
from services.router.calibration.traces import Trace, Usage, done_keys, latest_traces, load_traces, read_traces
from services.router.signals import TokenTrace


def trace(item: str = "a", tier: str = "drafter", error: str | None = None, text: str = "Paris") -> Trace:
    tokens = (TokenTrace("Par", -0.1, (-0.1, -2.5, -4.0)), TokenTrace("is", None, ()))
    return Trace(id=item, tier=tier, model="m", category="factual", split="train", text=text,
                 tokens=() if error else tokens, top_k=20, usage=None if error else Usage(12, 2),
                 finish_reason=None if error else "stop", ttft_s=None if error else 0.25, latency_s=0.5,
                 error=error, attempts=3 if error else 1)


def test_a_trace_survives_the_round_trip_through_json_in_the_documented_shape(tmp_path: Path) -> None:
    original = trace()
    record = original.to_json()
    assert record["v"] == 1
    assert record["tokens"][0] == {"token": "Par", "logprob": -0.1, "top_logprobs": [-0.1, -2.5, -4.0]}
    assert record["usage"] == {"prompt_tokens": 12, "completion_tokens": 2}
    assert set(record) == {"v", "id", "tier", "model", "category", "split", "text", "tokens", "top_k", "usage",
                           "finish_reason", "ttft_s", "latency_s", "error", "attempts"}
    path = tmp_path / "traces.jsonl"
    with Appender(path) as out:
        out.append(record)
    assert read_traces(path) == [original]
    assert Trace.from_json(json.loads(json.dumps(record))) == original


def test_a_newer_version_of_the_record_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version 2"):
        Trace.from_json({**trace().to_json(), "v": 2})


def test_a_torn_last_line_is_skipped_when_read_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    whole = json.dumps(trace("a").to_json())
    path.write_text(whole + "\n" + whole[: len(whole) // 2])  # killed halfway through the second line
    assert [t.id for t in read_traces(path)] == ["a"]

    with Appender(path) as out:
        out.append(trace("b").to_json())

    assert [t.id for t in read_traces(path)] == ["a", "b"]
    assert path.read_text().count("\n") == 2


def test_a_last_record_missing_only_its_newline_is_kept_and_given_one(tmp_path: Path) -> None:
    path = tmp_path / "grades.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    assert repair_tail(path) == 0
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_damage_before_the_last_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(RecordFileError, match=r"traces.jsonl:2: not a JSON record"):
        list(read_jsonl(path))


def test_a_missing_file_has_no_records_and_nothing_done(tmp_path: Path) -> None:
    assert read_traces(tmp_path / "none.jsonl") == []
    assert done_keys(tmp_path / "none.jsonl") == set()


def test_the_record_that_counts_is_the_last_success_else_the_last_error(tmp_path: Path) -> None:
    records = [trace("a", error="429: slow down"), trace("a", text="first"), trace("a", error="500: boom"),
               trace("b", error="500: boom"), trace("b", error="502: still"), trace("a", tier="heavyweight")]
    latest = latest_traces(records)
    assert latest[("a", "drafter")].text == "first"  # a later failure does not undo a success
    assert latest[("b", "drafter")].error == "502: still"
    path = tmp_path / "traces.jsonl"
    with Appender(path) as out:
        for record in records:
            out.append(record.to_json())
    assert load_traces(path) == latest
    assert done_keys(path) == {("a", "drafter"), ("a", "heavyweight")}


def test_the_appender_flushes_each_record_at_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "traces.jsonl"
    with Appender(path) as out:
        out.append(trace("a").to_json())
        assert [t.id for t in read_traces(path)] == ["a"]  # readable while the file is still open
        assert out.written == 1
