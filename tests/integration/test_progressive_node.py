"""The official `openai` Node client reads progressive streams (issue #16): the text arrives whole and
the same as the Python client reads it, and the extra top-level `draftgate` field on the last chunk
neither breaks the SDK nor gets lost (it stays on the chunk object an application is handed);
buffered streams carry no such field.

tests/node/stream.mjs does the reading; `make install` puts the npm package it pins into
tests/node/node_modules. Without `node` these tests are skipped; without node_modules they fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.scripts import Script
from tests.fakes.upstream import FakeUpstream, Seen
from tests.integration.stack import Stack, ask, running_stack
from tests.support import REPO

NODE_DIR = REPO / "tests" / "node"
SCRIPT = NODE_DIR / "stream.mjs"
PINNED = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["openai"]

DRAFT_TOKENS = [f" d{i}" for i in range(30)]
HEAVY_TOKENS = [f" h{i}" for i in range(12)]
HEAVY_TEXT = "".join(HEAVY_TOKENS)
# Calm well past the early-exit region (10 tokens), then sure of nothing: the window mean crosses
# 2.0 bits seven tokens later, after part of the draft was shown.
TURNING_BITS = [0.05] * 16 + [3.0] * 14


def node_stream(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    """What stream.mjs read from the gateway for `body`, as its JSON output."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node client test needs Node.js 20 or later")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        pytest.fail("tests/node/node_modules has no openai package: run `make install` (npm ci in tests/node)")
    done = subprocess.run([node, str(SCRIPT), f"{stack.url}/v1", json.dumps(body)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"the Node client failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["client_version"] == PINNED  # the pinned SDK, not some other install
    return result


@dataclass
class PythonRead:
    """What the official Python client read from the same kind of request."""

    headers: dict[str, str]
    text: str
    draftgate: dict[str, Any] | None


def python_stream(stack: Stack, body: dict[str, Any]) -> PythonRead:
    raw = stack.client().chat.completions.with_raw_response.create(**body, stream=True)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    extra = (chunks[-1].model_extra or {}).get("draftgate") if chunks else None
    return PythonRead({k.lower(): v for k, v in raw.headers.items()}, text, extra)


def request(content: str, usage: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "auto", "messages": ask(content)}
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def assert_progressive_headers(headers: dict[str, str]) -> None:
    assert headers["x-routing-decision"] == "progressive"
    assert headers["x-routing-tier"] == "drafter"
    assert "x-draft-entropy" not in headers and "x-speculation" not in headers


def assert_final_field_on_last_chunk_only(result: dict[str, Any]) -> None:
    """The field rides on the raw chunk object the SDK yields, and only on the last one."""
    assert result["draftgate_chunks"] == [len(result["chunks"]) - 1]
    assert result["chunks"][-1]["draftgate"] == result["draftgate"]


@pytest.mark.parametrize("usage", [False, True], ids=["finish-chunk", "usage-chunk"])
def test_node_client_reads_an_accepted_progressive_draft_whole(stack: Stack, fake: FakeUpstream,
                                                               usage: bool) -> None:
    fake.script_model("fake-drafter", Script(tokens=DRAFT_TOKENS, tokens_per_s=50))
    body = request("accepted progressive draft", usage=usage)
    node = node_stream(stack, body)
    python = python_stream(stack, body)

    assert node["status"] == 200
    assert_progressive_headers(node["headers"])
    assert node["text"] == python.text == "".join(DRAFT_TOKENS)
    assert len(node["ids"]) == 1 and node["roles"] == ["assistant"]
    assert node["finish_reasons"] == ["stop"]
    assert_final_field_on_last_chunk_only(node)
    if usage:
        assert node["chunks"][-1]["choices"] == [] and node["chunks"][-1]["usage"]
    field = node["draftgate"]
    assert (field["decision"], field["tier"], field["seam_tokens"]) == ("accept", "drafter", None)
    assert field["speculation"] == "none" and field["reason"] is None
    assert field == python.draftgate


def heavy_calls(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.model == "fake-heavy"]


def test_node_client_reads_a_continued_draft_as_one_answer(stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=DRAFT_TOKENS, entropies=TURNING_BITS, tokens_per_s=50))
    fake.script_model("fake-heavy", Script(tokens=HEAVY_TOKENS, tokens_per_s=100))
    body = request("continued draft")
    node = node_stream(stack, body)

    assert_progressive_headers(node["headers"])
    assert_final_field_on_last_chunk_only(node)
    field = node["draftgate"]
    assert (field["decision"], field["tier"]) == ("continued", "heavyweight")
    seam = field["seam_tokens"]
    assert 0 < seam <= 16  # only calm tokens were shown
    prefix = "".join(DRAFT_TOKENS[:seam])
    assert node["text"] == prefix + HEAVY_TEXT  # nothing held back leaked, nothing lost at the seam
    assert len(node["ids"]) == 1 and node["roles"] == ["assistant"]  # one completion, one role
    assert node["finish_reasons"] == ["stop"]

    served = fake.wait_for(lambda s: any(h.completed for h in heavy_calls(s)))
    continuation = next(h for h in heavy_calls(served) if h.completed)
    assert continuation.body["messages"][-2] == {"role": "assistant", "content": prefix}
    assert continuation.body["messages"][-1]["role"] == "user"  # the continuation instruction

    python = python_stream(stack, body)
    assert python.text == node["text"]
    assert python.draftgate == field


@pytest.fixture(scope="module")
def buffered_stack(redis_server: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("buffered"), fake,
                       DRAFTGATE_ROUTING_STREAM_MODE="buffered") as running:
        yield running


def test_node_client_reads_a_buffered_stream_without_the_field(buffered_stack: Stack, fake: FakeUpstream) -> None:
    fake.script_model("fake-drafter", Script(tokens=DRAFT_TOKENS, tokens_per_s=50))
    node = node_stream(buffered_stack, request("buffered draft"))
    assert node["headers"]["x-routing-decision"] == "accept"
    assert node["headers"]["x-speculation"] == "none" and "x-draft-entropy" in node["headers"]
    assert node["text"] == "".join(DRAFT_TOKENS)
    assert node["draftgate"] is None and node["draftgate_chunks"] == []
