"""The soak's traffic: a fixed mix of request kinds, sent closed-loop (to find the maximum
throughput) or open-loop at a fixed rate, every answer checked whole.

Kinds: `accept` (a new question, so a cache miss, drafted and accepted, then stored), `escalate`
(an unsure draft, answered by the heavyweight), `hit` (one of HOT questions again: a cache hit
while stored, an accepted draft when its entry has expired), `paraphrase` (a hot question
reworded: a semantic hit), `speculate` (a draft that wavers, so the heavyweight starts and is
cancelled), `disconnect` (an escalated stream the client leaves after its first token). Half of
all but `disconnect` are streamed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.soak_report import DISCONNECTED, OK, Record
from bench.soak_upstream import BLIP, DRAFT_TEXT, HEAVY_TEXT, UNSURE
from shared import fastjson

MIX = {"accept": 25, "escalate": 20, "hit": 30, "paraphrase": 5, "speculate": 10, "disconnect": 10}
HOT = 50
TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 1000  # the open loop's own limit: past it a request counts as an "overload" error
SYSTEM = "You answer questions about a soak test."
# Unsure questions are never stored; their own context keeps them off every stored draft.
UNSURE_SYSTEM = "You answer hard questions about a soak test."
# Questions are random words, so no two are alike to the embedder (MiniLM: a median cosine of
# 0.37 between two of them, against 0.98 for a hot question and its paraphrase).
_VOCABULARY = ("river mountain city bridge garden window table coffee music winter summer forest ocean castle market "
         "library engine planet candle silver doctor teacher farmer pilot island desert valley harbor tower lantern "
         "orchard meadow violin pencil jacket ladder basket mirror blanket kettle compass anchor feather marble "
         "pepper ginger tiger falcon dolphin cactus glacier volcano canyon prairie comet nebula pyramid cathedral "
         "village tunnel railway bicycle sailboat airship quarry furnace bakery theater museum stadium hospital "
         "diamond copper cobalt granite velvet linen walnut almond saffron lemon cherry plum thunder rainbow "
         "whisper echo shadow mosaic riddle puzzle")
WORDS = _VOCABULARY.split()


@dataclass(frozen=True)
class Call:
    kind: str
    prompt: str
    stream: bool
    expected: str  # the answer's whole text


class Traffic:
    """Draws the next request of the mix; questions are numbered so `accept` ones are all new."""

    def __init__(self, seed: int = 10) -> None:
        self._random = random.Random(seed)
        self._kinds, self._weights = list(MIX), list(MIX.values())
        self._numbers = itertools.count()
        self._hot = [f"Tell me about the {' '.join(self._random.sample(WORDS, 6))}." for _ in range(HOT)]

    def next(self) -> Call:
        kind = self._random.choices(self._kinds, self._weights)[0]
        stream = kind == "disconnect" or self._random.random() < 0.5
        hot = self._hot[self._random.randrange(HOT)]
        prompt = {"accept": self._question(), "escalate": f"{UNSURE} {self._question()}", "hit": hot,
                  "paraphrase": f"tell me about the {hot.removeprefix('Tell me about the ').rstrip('.')} please",
                  "speculate": f"{BLIP} {self._question()}", "disconnect": f"{UNSURE} {self._question()}"}[kind]
        expected = HEAVY_TEXT if UNSURE in prompt else DRAFT_TEXT
        return Call(kind, prompt, stream, expected)

    def _question(self) -> str:
        return f"Tell me about the {' '.join(self._random.sample(WORDS, 6))} number {next(self._numbers)}."


def body(call: Call) -> dict[str, Any]:
    system = UNSURE_SYSTEM if UNSURE in call.prompt else SYSTEM
    return {"model": "auto", "stream": call.stream, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": call.prompt}]}


def streamed_text(raw: bytes) -> str | None:
    """The content of a whole SSE answer, or None unless it ends in exactly one [DONE]."""
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    if not events or events[-1] != b"[DONE]" or events.count(b"[DONE]") != 1:
        return None
    text = []
    for event in events[:-1]:
        for choice in fastjson.loads(event).get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def send(session: aiohttp.ClientSession, url: str, call: Call, started_s: float) -> Record:
    began = time.perf_counter()
    decision = cache = None
    try:
        async with session.post(url, data=fastjson.dumps(body(call)),
                                headers={"Content-Type": "application/json"}) as response:
            decision, cache = response.headers.get("X-Routing-Decision"), response.headers.get("X-Cache")
            if response.status != 200:
                await response.read()
                outcome = f"http_{response.status}"
            elif call.kind == "disconnect":
                outcome = await _leave_mid_stream(response)
            elif call.stream:
                text = streamed_text(await response.read())
                outcome = "incomplete_stream" if text is None else OK if text == call.expected else "wrong_answer"
            else:
                answer = fastjson.loads(await response.read())
                outcome = OK if answer["choices"][0]["message"]["content"] == call.expected else "wrong_answer"
    except TimeoutError:
        outcome = "timeout"
    except aiohttp.ClientError as exc:
        outcome = f"connection_{type(exc).__name__}"
    return Record(call.kind, started_s, (time.perf_counter() - began) * 1000, outcome, decision, cache)


async def _leave_mid_stream(response: aiohttp.ClientResponse) -> str:
    """Read up to the first token, then drop the connection."""
    async for line in response.content:
        if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
            response.close()
            return DISCONNECTED
    return "disconnect_too_late"  # the whole answer came before the client could leave


def session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                 timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))


async def closed_loop(url: str, traffic: Traffic, clients: int, duration_s: float) -> list[Record]:
    """`clients` clients, each sending its next request as soon as the last is answered."""
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with session(clients) as http:

        async def client() -> None:
            while loop.time() - start < duration_s:
                records.append(await send(http, url, traffic.next(), loop.time() - start))

        await asyncio.gather(*(client() for _ in range(clients)))
    return records


async def open_loop(url: str, traffic: Traffic, rate: float, duration_s: float,
                    on_record: Callable[[Record], None]) -> None:
    """One request every 1/rate s for duration_s, however long earlier ones take."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    in_flight: set[asyncio.Task[None]] = set()
    async with session(MAX_IN_FLIGHT) as http:

        async def one(call: Call, started_s: float) -> None:
            on_record(await send(http, url, call, started_s))

        for n in itertools.count():
            due = n / rate
            if due >= duration_s:
                break
            await asyncio.sleep(max(0.0, start + due - loop.time()))
            if len(in_flight) >= MAX_IN_FLIGHT:
                on_record(Record("overload", due, 0.0, "overload"))
                continue
            task = asyncio.create_task(one(traffic.next(), loop.time() - start))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
