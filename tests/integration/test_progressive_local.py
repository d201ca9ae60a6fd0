"""Progressive streaming (issue #16) end to end on the real local model: llama.cpp serving SmolLM2.

- SmolLM2 drafts a long streamed answer that is accepted: the client reads it progressively, with
  the final decision on the last chunk, and the text is the draft the model writes when asked directly.
- A fake drafter turns uncertain after the early-exit region and the real SmolLM2 continues the
  shown prefix, once per continuation style that suits llama.cpp. A pass-through proxy in front of
  the model keeps the requests the router sent, so the test sees the prefix go out.

The model server is started once per module the way `make run` starts it (scripts.local_model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientSession, ClientTimeout, web

from tests.fakes.scripts import Script, split_tokens
from tests.fakes.upstream import FakeUpstream
from tests.integration.stack import Stack, ask, running_stack
from tests.support import Service, free_port

pytestmark = pytest.mark.real_model

TOP_K = 5
LONG_QUESTION = "Write three sentences about the sea."
# Calm for 14 tokens (past the early-exit region of 10), then 3 bits a token: the window mean
# crosses 2.0 bits at the 7th uncertain token, when 10 drafted tokens have been shown.
DRAFT = split_tokens("The sea covers most of the Earth and holds countless forms of life, from tiny plankton "
                     "to the great blue whale, which feeds")
DRAFT_BITS = [0.05] * 14 + [3.0] * (len(DRAFT) - 14)


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


@dataclass
class Exchange:
    """One request the router sent the model, and the raw answer the model streamed back to it."""

    path: str
    body: dict[str, Any]
    answer: bytearray = field(default_factory=bytearray)
    done: bool = False  # the model's answer ended (not cut off by the router closing the connection)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def text(self) -> str:
        """The content the model streamed, joined from its server-sent events."""
        parts = []
        for line in self.answer.decode().splitlines():
            if line.startswith("data: {"):
                choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
                parts.append((choices[0].get("delta") or {}).get("content") or "")
        return "".join(parts)


class RecordingProxy:
    """Passes every request on to the model server unchanged, streaming the answer back, and keeps
    both: the router's requests to the real model as sent, and what the model answered. Serves in
    its own thread, so the test's own thread reads `exchanges` while the stack runs."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._origin, self._path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        self.exchanges: list[Exchange] = []  # chat completions and any other call (a model list, say)
        self.url = ""
        self._session: ClientSession | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recording-proxy", daemon=True)

    def completions(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.endswith("/chat/completions")]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("recording proxy did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        if self._session is not None:
            self._loop.run_until_complete(self._session.close())
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _start(self) -> web.AppRunner:
        self._session = ClientSession(timeout=ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}{self._path}"
        return runner

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        data = await request.read()
        exchange = Exchange(request.path, json.loads(data) if data else {})
        self.exchanges.append(exchange)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        url = self._origin + request.path_qs
        async with self._session.request(request.method, url, data=data, headers=headers) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": upstream.content_type})
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the router hung up: a cancelled call
                async for piece in upstream.content.iter_any():
                    exchange.answer += piece
                    await response.write(piece)
                exchange.done = True  # before write_eof: the router may hang up once it has read [DONE]
                await response.write_eof()
            return response


def read_stream(stack: Stack, body: dict[str, Any]) -> tuple[dict[str, str], str, dict[str, Any] | None]:
    """The lower-cased headers, the text and the last chunk's `draftgate` field, as the Python client reads them."""
    with stack.client(timeout=180) as client:
        raw = client.chat.completions.with_raw_response.create(**body, stream=True)
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = (chunks[-1].model_extra or {}).get("draftgate") if chunks else None
    return {k.lower(): v for k, v in raw.headers.items()}, text, final


def test_a_long_answer_from_smollm2_streams_progressively_and_is_accepted(model_url: str, redis_server: str,
                                                                         fake: FakeUpstream, tmp_path: Path):
    """Both tiers on SmolLM2 behind the proxy (one server and model: speculation is off by default);
    2.3 bits with k=5 (2.32 at most) accepts what SmolLM2 writes. The text is compared with what the
    model streamed to the router, not with a second call: llama.cpp at temperature 0 writes another
    answer when the prompt is already in its cache (a different evaluation batch, other rounding)."""
    body = {"model": "auto", "messages": ask(LONG_QUESTION), "max_tokens": 80, "temperature": 0}
    with RecordingProxy(model_url) as proxy, running_stack(
            redis_server, tmp_path, fake, DRAFTGATE_DRAFTER_BASE_URL=proxy.url, DRAFTGATE_DRAFTER_MODEL="smollm2",
            DRAFTGATE_HEAVYWEIGHT_BASE_URL=proxy.url, DRAFTGATE_HEAVYWEIGHT_MODEL="smollm2",
            DRAFTGATE_ROUTING_ENTROPY_THRESHOLD="2.3", DRAFTGATE_ROUTING_TOP_LOGPROBS=str(TOP_K),
            DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="180") as stack:
        headers, text, final = read_stream(stack, body)

    assert text.strip()
    assert final is not None, "progressive mode puts the final decision on the last chunk"
    assert (final["decision"], final["tier"], final["seam_tokens"]) == ("accept", "drafter", None), final
    if headers["x-routing-decision"] == "progressive":
        assert headers["x-routing-tier"] == "drafter"
        assert "x-draft-entropy" not in headers and "x-speculation" not in headers
    else:  # decided before anything was shown: a draft within the early-exit region and hold-back
        assert headers["x-routing-decision"] == "accept"
    (draft,) = proxy.completions()  # the draft alone: no heavyweight call
    assert draft.done and draft.body["logprobs"] is True
    assert text == draft.text
    print(f"\n[accept] {headers['x-routing-decision']}, {final}: {text!r}")


@pytest.mark.parametrize("style", ["instruction", "prefill", "continue_final_message"])
def test_smollm2_continues_a_shown_prefix_from_a_fake_drafter(model_url: str, redis_server: str,
                                                              fake: FakeUpstream, tmp_path: Path, style: str):
    fake.script_model("fake-drafter", Script(tokens=DRAFT, entropies=DRAFT_BITS, tokens_per_s=50))
    body = {"model": "auto", "messages": ask(LONG_QUESTION), "max_tokens": 60, "temperature": 0}
    with RecordingProxy(model_url) as proxy, running_stack(
            redis_server, tmp_path, fake, DRAFTGATE_HEAVYWEIGHT_BASE_URL=proxy.url,
            DRAFTGATE_HEAVYWEIGHT_MODEL="smollm2", DRAFTGATE_HEAVYWEIGHT_CONTINUATION=style,
            DRAFTGATE_GATEWAY_REQUEST_TIMEOUT_S="180") as stack:
        headers, text, final = read_stream(stack, body)

    assert headers["x-routing-decision"] == "progressive"
    assert final is not None
    assert (final["decision"], final["tier"]) == ("continued", "heavyweight"), final
    seam = final["seam_tokens"]
    assert 0 < seam <= 14  # only calm tokens were shown
    prefix = "".join(DRAFT[:seam])
    assert text.startswith(prefix)
    continuation = text[len(prefix):]
    assert continuation.strip(), "the heavyweight wrote nothing after the shown prefix"

    shown = {"role": "assistant", "content": prefix}
    served = [e for e in proxy.completions() if shown in e.messages and e.done]
    assert len(served) == 1, [(e.messages[-2:], e.done) for e in proxy.completions()]
    heavy = served[0]
    if style == "instruction":
        assert heavy.messages[-2] == shown and heavy.messages[-1]["role"] == "user"
    else:
        assert heavy.messages[-1] == shown
        assert heavy.body.get("continue_final_message") is (style == "continue_final_message" or None)
    # The client's continuation is the model's text, less a restatement of the prefix or plus one space.
    assert heavy.text.strip().endswith(continuation.strip())
    for name, value in (("prefix", prefix), ("model wrote", heavy.text), ("client got", text), ("field", final)):
        print(f"\n[{style}] {name}: {value!r}", end="")  # what `pytest -s` shows of each style
