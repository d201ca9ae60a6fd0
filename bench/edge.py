"""What the operator's edge costs (issue #13): the gateway with virtual keys, per-key rate limits and
budgets, the request ledger and sessions all ON, against all OFF, in the same run, against the same
fake upstream.

Two draftgates run side by side from one tree (`--commit`, default HEAD), each a gateway and two
routers on a Redis server of its own, both tiers on one fake upstream (bench/peers_upstream.py: 16
sure tokens, no delay, so every request is one drafter call, accepted; no cache):
  - on: gateway.virtual_keys on and a key created through POST /admin/keys with rpm, tpm and a daily
    and monthly budget far above the load (so the limiter runs on every request and never refuses);
    ledger.enabled on and the ledger service (`python -m services.ledger`, SQLite in the run's
    directory) consuming the records; every request sent with that key and an X-Session-Id, each
    session `--session-turns` turns long (its history is prepended to the next turn, as it is for a
    client that uses sessions);
  - off: gateway.virtual_keys and ledger.enabled off, no key, no session id: the gateway before #13. With
    sessions on, off's clients hold the same conversations themselves (every request carries the earlier
    turns and the answers they got), as clients without sessions must: both upstreams see the same
    messages, so what is measured is keeping the conversation, not answering a longer one. (Runs before
    2026-12-03 17:00 UTC sent off one message a request: their figures include the longer prompts.)
Latency: one client, requests one after another, in many short rounds that alternate the two (so a
busy moment of the shared machine falls on both); the added p50/p99 is on's minus off's, pooled (the
target's figure) and round by round (their median beside it).
Throughput and CPU: `--clients` closed-loop clients send `--cpu-requests` requests per draftgate and
round, both in each round one right after the other; requests/s over the round, and each process's CPU
(psutil, user + system) divided by the requests, the ledger's included: after an on round the benchmark
waits until every record of it is in the ledger's database before it reads the CPU (the time waited is
not in the throughput), and after every on round of either phase before off's turn comes. The
throughput drop and the CPU added are taken round by round (on against off of the same round); their
medians count. Each side's Redis commands per request (INFO commandstats over the round, by command,
those a Lua script runs included: an EVALSHA is one round trip) show what each feature asks of Redis:
a count the machine's load does not move; beside them, the µs Redis spent running each command per
request (the commands' own work, not the connections' reads and writes).
Checked, else the run is INVALID: on's answers carry the key's x-ratelimit-* headers and the session
id; an unknown key gets 401; every request sent to on is a row in the ledger's database and off's Redis
has no ledger stream; each draftgate made exactly one upstream call per request.
Targets (PASS/FAIL): at most +0.3 ms p50 added; throughput drop at most 10 %.
`--features keys|ledger|sessions` (comma-separated) turns only those on, to see what each costs.
The production audit (#14) is off on both sides: its heavyweight calls are no part of the edge.

`python -m bench.edge [--commit HEAD|<rev>|worktree] [--quick]`; results in bench/results/edge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
import uvloop

from bench import peers_report as report
from bench.harness import RESULTS_DIR, fake_upstream, percentile, redis_server, write_result
from bench.peers_stack import Proxy, _service, describe, draftgate, export_tree, resolve_commit
from bench.peers_upstream import ANSWER_TOKENS, answer_words
from shared.keys import LEDGER_STREAM
from tests.support import free_port

NAME = "edge"
ON, OFF = "on", "off"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
EXPECTED_TEXT = "".join(answer_words(ANSWER_TOKENS))
ROUTERS = 2  # one per core, as bench/overhead.py runs them
ADDED_P50_MAX_MS = 0.3
THROUGHPUT_DROP_MAX = 0.10
# Far above the load: the limiter and the budget check run on every request and never refuse.
KEY_LIMITS = {"rpm": 100_000_000, "tpm": 10_000_000_000, "budget_usd_day": 1_000_000.0,
              "budget_usd_month": 10_000_000.0}
LEDGER_WAIT_S = 120.0
CLIENT_KEEPALIVE_S = 2.0
ADMIN_KEYS_ENV = "EDGE_BENCH_ADMIN_KEYS"
FEATURES = ("keys", "ledger", "sessions")
# Both: the production audit (#14) re-asks a share of accepted drafts of the heavyweight; a second
# upstream call that is no part of the edge, so it is off on both sides.
COMMON = {"DRAFTGATE_AUDIT_SAMPLE_RATE": "0"}


# Pure parts: settings, sessions, figures and verdicts.

def settings(side: str, admin_key: str = "", features: Sequence[str] = FEATURES) -> dict[str, str]:
    """The environment of one draftgate's services: the edge `features` on (on), or every one off (off).
    Sessions need no setting: a request without a session id has none."""
    keys, ledger = side == ON and "keys" in features, side == ON and "ledger" in features
    found = {**COMMON, "DRAFTGATE_GATEWAY_VIRTUAL_KEYS": str(keys).lower(),
             "DRAFTGATE_LEDGER_ENABLED": str(ledger).lower()}
    if keys and not admin_key:
        raise ValueError("virtual keys need an admin key (they are made through POST /admin/keys)")
    if keys:
        found |= {"DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": ADMIN_KEYS_ENV, ADMIN_KEYS_ENV: admin_key}
    return found


def parse_features(text: str) -> tuple[str, ...]:
    """--features keys,ledger,sessions (any of them; default all): what the on side turns on."""
    chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = sorted(set(chosen) - set(FEATURES))
    if unknown or not chosen:
        raise ValueError(f"--features takes some of {', '.join(FEATURES)}, not {text!r}")
    return chosen


def ledger_settings(database: Path, port: int) -> dict[str, str]:
    return {"DRAFTGATE_LEDGER_DATABASE_URL": f"sqlite+aiosqlite:///{database.resolve()}",
            "DRAFTGATE_LEDGER_PORT": str(port)}


@dataclass
class Sessions:
    """One client's conversations: `turns` requests in a row, then a new one. On, the gateway keeps each
    (the same session id for the turns); off (`client_side`), the client does, as a client without
    sessions must: it sends the earlier turns and the answers it got with every request, so both
    draftgates' upstreams see the same conversation and only keeping it is measured."""

    prefix: str
    turns: int
    client_side: bool = False
    sent: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def next_id(self) -> str:
        if self.sent % self.turns == 0:
            self.history = []
        session = f"{self.prefix}-{self.sent // self.turns}"
        self.sent += 1
        return session

    def messages(self) -> list[dict[str, Any]]:
        return [*self.history, *MESSAGES]

    def answered(self, text: str) -> None:
        if self.client_side:
            self.history = [*self.history, *MESSAGES, {"role": "assistant", "content": text}]


@dataclass(frozen=True)
class Target:
    """One draftgate: where requests go, what they carry, and the processes they cost."""

    name: str
    url: str
    proxy: Proxy
    key: str | None = None  # Bearer: the virtual key (on), none (off)
    session_turns: int = 0  # 0: no session ids
    client_history_turns: int = 0  # (off, when on has sessions) conversations this long, kept by the client
    ledger_db: Path | None = None
    redis_url: str = ""  # its own Redis server: the commands it ran are this draftgate's alone
    ledger_unconsumed: bool = False  # --no-ledger-service: records emitted, nobody consuming them

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/chat/completions"

    def headers(self, session: str | None) -> dict[str, str]:
        found = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**found, **({"X-Session-Id": session} if session else {})}

    def sessions(self, client: str) -> Sessions | None:
        prefix = f"{self.name}-{client}-{secrets.token_hex(4)}"
        if self.session_turns:
            return Sessions(prefix, self.session_turns)
        return Sessions(prefix, self.client_history_turns, client_side=True) if self.client_history_turns else None

    def cpu_s(self) -> dict[str, float]:
        return self.proxy.cpu_s()


def added(rounds: Sequence[Mapping[str, Sequence[float]]], target: str, baseline: str) -> dict[str, Any]:
    """What `target` adds to `baseline` at p50 and p99 of all rounds pooled, and at p50 round by round."""
    pooled = {name: [ms for r in rounds for ms in r[name]] for name in (target, baseline)}
    by_round = [percentile(list(r[target]), 50) - percentile(list(r[baseline]), 50) for r in rounds]
    return {"p50_ms": round(percentile(pooled[target], 50) - percentile(pooled[baseline], 50), 3),
            "p99_ms": round(percentile(pooled[target], 99) - percentile(pooled[baseline], 99), 3),
            "p50_ms_median_of_rounds": round(statistics.median(by_round), 3),
            "p50_ms_by_round": [round(ms, 3) for ms in by_round]}


def median_by(rounds: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any]:
    """The round whose `key` is the median (the lower middle one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def throughput_drop(on_rps: float, off_rps: float) -> float:
    """The share of off's requests/s that on loses (negative: on was faster)."""
    return round(1 - on_rps / off_rps, 4)


def side_summary(cpu_rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One draftgate's throughput (median round by requests/s) and CPU per request (median round by
    total CPU, whole, so its per-process figures add up)."""
    return {"requests_per_s": median_by(cpu_rounds, "requests_per_s")["requests_per_s"],
            "requests_per_s_by_round": [r["requests_per_s"] for r in cpu_rounds],
            "cpu_ms": report.median_round(cpu_rounds)["cpu_ms"],
            "cpu_ms_total_by_round": [r["cpu_ms"]["total"] for r in cpu_rounds],
            "redis_commands_per_request": median_by_total(cpu_rounds, "redis_commands_per_request"),
            "redis_usec_per_request": median_by_total(cpu_rounds, "redis_usec_per_request")}


def median_by_total(rounds: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, float]:
    """The median round's `key` figures, by their `total` (rounds without it: none)."""
    having = [r for r in rounds if key in r]
    if not having:
        return {}
    return sorted(having, key=lambda r: r[key]["total"])[(len(having) - 1) // 2][key]


def paired(on_rounds: Sequence[Mapping[str, Any]], off_rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """On against off round by round (each round ran both, one right after the other, so both met the
    same moment of the shared machine): the throughput drop and the CPU added, and their medians."""
    drops = [throughput_drop(on["requests_per_s"], off["requests_per_s"])
             for on, off in zip(on_rounds, off_rounds, strict=True)]
    added_cpu = [round(on["cpu_ms"]["total"] - off["cpu_ms"]["total"], 3)
                 for on, off in zip(on_rounds, off_rounds, strict=True)]
    return {"throughput_drop": round(statistics.median(drops), 4), "throughput_drop_by_round": drops,
            "cpu_ms_added": round(statistics.median(added_cpu), 3), "cpu_ms_added_by_round": added_cpu}


def checks(added_latency: Mapping[str, Any], pairs: Mapping[str, Any],
           validity: Mapping[str, tuple[bool, str]]) -> list[report.Check]:
    drop = pairs["throughput_drop"]
    return [
        report.Check("added_p50", added_latency["p50_ms"] <= ADDED_P50_MAX_MS,
                     f"{added_latency['p50_ms']} ms added at p50 (target <= {ADDED_P50_MAX_MS} ms)"),
        report.Check("throughput_drop", drop <= THROUGHPUT_DROP_MAX,
                     f"{drop:.1%} fewer requests/s, the median of the rounds' paired drops "
                     f"(target <= {THROUGHPUT_DROP_MAX:.0%})"),
        *(report.Check(f"valid_{name}", passed, detail) for name, (passed, detail) in validity.items()),
    ]


def verdict(found: Sequence[report.Check]) -> str:
    """INVALID when a feature was not at work or the two did unlike work; else PASS or FAIL on the targets."""
    if not all(c.passed for c in found if c.name.startswith("valid_")):
        return "INVALID"
    return "PASS" if all(c.passed for c in found) else "FAIL"


def commands_per_request(before: Mapping[str, int], after: Mapping[str, int], requests: int) -> dict[str, float]:
    """Per request by command (from two INFO commandstats readings of one figure, its calls or its µs),
    and their `total`. Calls are a figure the machine's load does not move, where each command is a
    round trip somebody waits for."""
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    found = {name: round(count / requests, 3) for name, count in sorted(grown.items()) if count > 0}
    return {**found, "total": round(sum(grown.values()) / requests, 3)}


def redis_commands(redis_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Calls so far per command, and the µs Redis spent running them (INFO commandstats: the command's
    own work, a script's commands included in its EVALSHA, not the reading and writing of the
    connection), the INFO itself left out."""
    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    found = {name.removeprefix("cmdstat_"): value for name, value in stats.items() if name != "cmdstat_info"}
    return ({name: int(value["calls"]) for name, value in found.items()},
            {name: int(value["usec"]) for name, value in found.items()})


def one_call(counts_before: Mapping[str, int], counts_after: Mapping[str, int], requests: int) -> tuple[bool, str]:
    calls = report.calls_per_request(counts_before, counts_after, requests)
    check = report.one_call_check("", calls)
    return check.passed, check.detail


# The load.

async def post(session: aiohttp.ClientSession, target: Target,
               sessions: Sessions | None) -> tuple[float, bytes, Mapping[str, str]]:
    session_id = sessions.next_id() if sessions else None
    body = {"model": "auto", "messages": sessions.messages() if sessions else MESSAGES}
    headers = target.headers(None if sessions is None or sessions.client_side else session_id)
    started = time.perf_counter()
    try:
        async with session.post(target.endpoint, json=body, headers=headers) as response:
            raw = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{target.name} answered {response.status}: {raw[:500]!r}")
            took = (time.perf_counter() - started) * 1000
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"{target.name}: {exc!r}") from exc
    if sessions is not None and sessions.client_side:
        sessions.answered(report.answer_text(raw, False))
    return took, raw, response.headers


async def sequential(session: aiohttp.ClientSession, target: Target, count: int) -> list[float]:
    sessions = target.sessions("one")
    return [(await post(session, target, sessions))[0] for _ in range(count)]


async def closed_loop(session: aiohttp.ClientSession, target: Target, clients: int, total: int) -> float:
    """`clients` clients, each sending its next request when its last is answered, until `total` were
    sent; returns the seconds it took."""
    remaining = total

    async def client(index: int) -> None:
        nonlocal remaining
        sessions = target.sessions(str(index))
        while remaining > 0:
            remaining -= 1
            await post(session, target, sessions)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return time.perf_counter() - started


@dataclass
class Tally:
    """Requests each draftgate answered (every one sent to on must become a ledger row)."""

    sent: dict[str, int] = field(default_factory=lambda: {ON: 0, OFF: 0})
    refused: int = 0  # on's answers that were not 200 (the made-up key's 401): ledger rows too

    def ledger_rows_expected(self) -> int:
        return self.sent[ON] + self.refused


# Checks against the running systems.

async def validate(session: aiohttp.ClientSession, target: Target) -> dict[str, tuple[bool, str]]:
    """One request: the fake's answer whole; on: the key's rate-limit headers and the session id back."""
    sessions = target.sessions("validate")
    _, raw, headers = await post(session, target, sessions)
    text = report.answer_text(raw, False)
    if text != EXPECTED_TEXT:
        raise RuntimeError(f"{target.name} answered {text!r}, not the fake's {EXPECTED_TEXT!r}")
    found = {}
    if target.key:
        limit = headers.get("x-ratelimit-limit-requests")
        found["rate_limit_headers"] = (limit == str(KEY_LIMITS["rpm"]),
                                       f"x-ratelimit-limit-requests: {limit} (the key's rpm {KEY_LIMITS['rpm']})")
    if sessions and not sessions.client_side:
        back, sent = headers.get("X-Session-Id"), f"{sessions.prefix}-0"
        found["session_id_back"] = (back == sent, f"X-Session-Id sent {sent}, back {back}")
    return found


async def unknown_key_refused(session: aiohttp.ClientSession, target: Target) -> tuple[bool, str]:
    async with session.post(target.endpoint, json={"model": "auto", "messages": MESSAGES},
                            headers={"Authorization": "Bearer sk-dg-not-a-key"}) as response:
        await response.read()
        return response.status == 401, f"a made-up key: {response.status}"


def ledger_rows(database: Path) -> int:
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM ledger_records").fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


async def ledger_caught_up(database: Path, expected: int, timeout_s: float = LEDGER_WAIT_S) -> int:
    """Wait until the ledger's database holds `expected` rows (or the deadline); returns the count."""
    return await caught_up(lambda: ledger_rows(database), expected, timeout_s)


async def stream_caught_up(redis_url: str, expected: int, timeout_s: float = LEDGER_WAIT_S) -> int:
    """Wait until the ledger stream holds `expected` records (or the deadline); returns its length."""
    return await caught_up(lambda: ledger_stream_length(redis_url), expected, timeout_s)


async def caught_up(count: Callable[[], int], expected: int, timeout_s: float) -> int:
    """Poll `count` until it reaches `expected` or timeout_s has passed; returns the last count."""
    deadline = time.monotonic() + timeout_s
    found = count()
    while found < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        found = count()
    return found


async def upstream_counts(session: aiohttp.ClientSession, origin: str) -> dict[str, int]:
    async with session.get(f"{origin}/counts") as response:
        return await response.json()


def ledger_stream_length(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(LEDGER_STREAM))
    finally:
        client.close()


# The phases.

async def latency_phase(session: aiohttp.ClientSession, targets: Sequence[Target], tally: Tally, rounds: int,
                        per_round: int) -> list[dict[str, list[float]]]:
    result = []
    for index in range(rounds):
        this_round = {}
        for target in (targets if index % 2 == 0 else list(reversed(targets))):
            this_round[target.name] = await sequential(session, target, per_round)
            tally.sent[target.name] += per_round
            if target.ledger_db is not None:  # its ledger's catching up must not fall on off's turn
                await ledger_caught_up(target.ledger_db, tally.ledger_rows_expected())
        result.append(this_round)
    return result


async def cpu_round(session: aiohttp.ClientSession, target: Target, tally: Tally, clients: int,
                    requests: int) -> dict[str, Any]:
    commands_before, usec_before = redis_commands(target.redis_url)
    before = target.cpu_s()
    elapsed = await closed_loop(session, target, clients, requests)
    tally.sent[target.name] += requests
    waited = 0.0
    if target.ledger_db is not None:  # the ledger's work for this round belongs to it
        started = time.monotonic()
        await ledger_caught_up(target.ledger_db, tally.ledger_rows_expected())
        waited = time.monotonic() - started
    after = target.cpu_s()
    commands_after, usec_after = redis_commands(target.redis_url)
    return {"requests": requests, "requests_per_s": round(requests / elapsed, 1),
            "cpu_ms": report.cpu_ms_per_request(before, after, requests), "ledger_wait_s": round(waited, 3),
            "redis_commands_per_request": commands_per_request(commands_before, commands_after, requests),
            "redis_usec_per_request": commands_per_request(usec_before, usec_after, requests)}


async def cpu_phase(session: aiohttp.ClientSession, targets: Sequence[Target], tally: Tally, rounds: int,
                    clients: int, requests: int) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for index in range(rounds):
        for target in (targets if index % 2 == 0 else list(reversed(targets))):
            result[target.name].append(await cpu_round(session, target, tally, clients, requests))
    return result


@dataclass
class Systems:
    targets: list[Target]
    origin: str  # the fake's, for /counts
    redis_urls: dict[str, str]


async def measure(running: Systems, args: argparse.Namespace) -> dict[str, Any]:
    targets = running.targets
    on = next(t for t in targets if t.name == ON)
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=args.clients * 2, keepalive_timeout=CLIENT_KEEPALIVE_S)
    async with aiohttp.ClientSession(connector=connector) as session:
        validity: dict[str, tuple[bool, str]] = {}
        counts_before = await upstream_counts(session, running.origin)
        for target in targets:
            validity.update(await validate(session, target))
            tally.sent[target.name] += 1
        if on.key:
            validity["unknown_key_401"] = await unknown_key_refused(session, on)
            tally.refused += 1
        for target in targets:
            await sequential(session, target, args.warmup)
            await closed_loop(session, target, args.clients, args.clients * 10)
            tally.sent[target.name] += args.warmup + args.clients * 10
        latencies = await latency_phase(session, targets, tally, args.rounds, args.requests)
        cpu = await cpu_phase(session, targets, tally, args.cpu_rounds, args.clients, args.cpu_requests)
        counts_after = await upstream_counts(session, running.origin)
    if on.ledger_db is not None:
        expected = tally.ledger_rows_expected()
        rows = await ledger_caught_up(on.ledger_db, expected)
        validity["ledger_rows"] = (rows == expected, f"{rows} rows in the ledger for {expected} requests "
                                                     f"({tally.refused} of them refused)")
    if on.ledger_unconsumed:  # every record on the stream, waiting
        expected = tally.ledger_rows_expected()
        emitted = await stream_caught_up(running.redis_urls[ON], expected)
        validity["ledger_emitted"] = (emitted == expected, f"{emitted} records on the stream for {expected} requests")
    off_stream = ledger_stream_length(running.redis_urls[OFF])
    validity["ledger_off"] = (off_stream == 0, f"off's Redis holds {off_stream} ledger records")
    validity["one_upstream_call"] = one_call(counts_before, counts_after, sum(tally.sent.values()))
    return {"latencies": latencies, "cpu": cpu, "validity": validity, "sent": tally.sent}


# Running it.

async def create_key(url: str, admin_key: str) -> str:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/admin/keys", json={"tenant": "bench", "name": "edge-bench", **KEY_LIMITS},
            headers={"Authorization": f"Bearer {admin_key}"}) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"POST /admin/keys answered {response.status}: {body}")
        return str(body["key"])


@contextlib.contextmanager
def systems(args: argparse.Namespace, workdir: Path, commit: str) -> Iterator[Systems]:
    tree = export_tree(commit, workdir / "tree")
    admin_key = secrets.token_hex(16)
    features = args.features
    database = workdir / "ledger.db" if "ledger" in features and not args.no_ledger_service else None
    with redis_server(workdir) as on_redis, redis_server(workdir) as off_redis, \
            fake_upstream(module="bench.peers_upstream") as upstream_url, contextlib.ExitStack() as stack:
        (workdir / ON).mkdir()
        ledger = None
        if database is not None:
            port = free_port()
            ledger_env = {"DRAFTGATE_REDIS_URL": on_redis, "DRAFTGATE_LOGGING_LEVEL": "warning",
                          **ledger_settings(database, port)}
            ledger = stack.enter_context(_service(tree, "services.ledger", ledger_env, workdir / ON / "ledger.log",
                                                  f"http://127.0.0.1:{port}/ready"))
        on = stack.enter_context(draftgate(tree, on_redis, upstream_url, workdir / ON, ON, ROUTERS,
                                           settings(ON, admin_key, features)))
        if ledger is not None:
            on.processes["ledger"] = ledger
        off = stack.enter_context(draftgate(tree, off_redis, upstream_url, workdir / OFF, OFF, ROUTERS,
                                            settings(OFF)))
        key = uvloop.run(create_key(on.url, admin_key)) if "keys" in features else None
        turns = args.session_turns if "sessions" in features else 0
        targets = [Target(OFF, off.url, off, client_history_turns=turns, redis_url=off_redis),
                   Target(ON, on.url, on, key=key, session_turns=turns, ledger_db=database, redis_url=on_redis,
                          ledger_unconsumed="ledger" in features and args.no_ledger_service)]
        yield Systems(targets, upstream_url.removesuffix("/v1"), {ON: on_redis, OFF: off_redis})


def document(args: argparse.Namespace, commit: str, measured: Mapping[str, Any],
             load_before: list[float]) -> dict[str, Any]:
    latency = {name: report.latency_summary([ms for r in measured["latencies"] for ms in r[name]])
               for name in (ON, OFF)}
    added_latency = added(measured["latencies"], ON, OFF)
    sides = {name: side_summary(measured["cpu"][name]) for name in (ON, OFF)}
    pairs = paired(measured["cpu"][ON], measured["cpu"][OFF])
    found = checks(added_latency, pairs, measured["validity"])
    return {
        "draftgate": {"commit": describe(commit), "routers": ROUTERS, "cache": "off (gateway.cache_url null)",
                      "on": {"features": list(args.features), **settings(ON, "<admin key>", args.features),
                             **({"key": KEY_LIMITS} if "keys" in args.features else {}),
                             **({"session_turns": args.session_turns} if "sessions" in args.features else {}),
                             **({"ledger": "records emitted, no ledger service" if args.no_ledger_service
                                 else "python -m services.ledger, SQLite in the run's directory"}
                                if "ledger" in args.features else {})},
                      "off": {**settings(OFF), **({"client_history_turns": args.session_turns}
                                                  if "sessions" in args.features else {})}},
        "load": {"answer_tokens": ANSWER_TOKENS, "messages": MESSAGES, "latency_rounds": args.rounds,
                 "latency_requests_per_round": args.requests, "clients": args.clients,
                 "cpu_requests_per_round": args.cpu_requests, "cpu_rounds": args.cpu_rounds,
                 "load_generator": "python (aiohttp on uvloop)", "quick": args.quick,
                 "requests_sent": measured["sent"]},
        "cpus": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "latency": latency, "added": added_latency,
        "throughput_and_cpu": sides,
        **pairs,
        "cpu_rounds": measured["cpu"],
        "checks": {c.name: c.as_dict() for c in found}, "verdict": verdict(found),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="HEAD", help="draftgate's commit to measure, or `worktree`")
    parser.add_argument("--rounds", type=int, default=60,
                        help="latency rounds: short ones, so both sides meet the same moments of the machine")
    parser.add_argument("--requests", type=int, default=25, help="one-client requests per draftgate and round")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients for throughput and CPU")
    # 2000: a round of several seconds, so the CPU's 10 ms ticks are 0.005 ms a request (400 made them 0.025)
    parser.add_argument("--cpu-requests", type=int, default=2000, help="requests per draftgate and CPU round")
    parser.add_argument("--cpu-rounds", type=int, default=10,
                        help="rounds of throughput and CPU readings (the median counts)")
    parser.add_argument("--warmup", type=int, default=100, help="one-client requests per draftgate first")
    parser.add_argument("--session-turns", type=int, default=4, help="requests per session id (on)")
    parser.add_argument("--features", default=",".join(FEATURES),
                        help=f"what the on side turns on, some of {','.join(FEATURES)} (default all; one at a time "
                             "shows what each costs); results of a partial run go to edge-<features>.json")
    parser.add_argument("--no-ledger-service", action="store_true",
                        help="the gateway emits ledger records but no ledger service consumes them: what the "
                             "ledger service costs the others on a shared machine, by difference")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, figures not to be kept")
    args = parser.parse_args(argv)
    if args.session_turns < 1:
        parser.error("--session-turns must be >= 1")
    try:
        args.features = parse_features(args.features)
    except ValueError as exc:
        parser.error(str(exc))
    if args.quick:
        args.rounds, args.requests, args.cpu_requests, args.cpu_rounds, args.warmup = 4, 15, 150, 2, 10
    return args


def result_name(features: Sequence[str], no_ledger_service: bool = False) -> str:
    """edge for every feature on; edge-keys, edge-ledger-sessions... for a partial run; -no-ledger-service
    when nothing consumed the records."""
    name = NAME if set(features) == set(FEATURES) else "-".join([NAME, *sorted(features)])
    return f"{name}-no-ledger-service" if no_ledger_service and "ledger" in features else name


def save(result: dict[str, Any], name: str, quick: bool) -> Path:
    """bench/results/<name>.json; a --quick run's figures go to an ignored .tmp file instead."""
    if quick:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}-quick.json.tmp"
        path.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return path
    return write_result(name, result)


def summary(result: Mapping[str, Any]) -> str:
    sides, added_latency = result["throughput_and_cpu"], result["added"]
    return (f"edge: {result['verdict']}: {', '.join(result['draftgate']['on']['features'])} on against off: added p50 "
            f"{added_latency['p50_ms']} ms (target <= {ADDED_P50_MAX_MS}), p99 {added_latency['p99_ms']} ms; "
            f"{sides[ON]['requests_per_s']} against {sides[OFF]['requests_per_s']} requests/s "
            f"({result['throughput_drop']:.1%} lower, target <= {THROUGHPUT_DROP_MAX:.0%}); CPU "
            f"{sides[ON]['cpu_ms']['total']} against {sides[OFF]['cpu_ms']['total']} ms per request "
            f"(+{result['cpu_ms_added']}, the ledger service {sides[ON]['cpu_ms'].get('ledger', 0)}); Redis commands "
            f"{sides[ON].get('redis_commands_per_request', {}).get('total')} against "
            f"{sides[OFF].get('redis_commands_per_request', {}).get('total')} per request, taking "
            f"{sides[ON].get('redis_usec_per_request', {}).get('total')} against "
            f"{sides[OFF].get('redis_usec_per_request', {}).get('total')} µs of Redis's time")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    commit = resolve_commit(args.commit)
    load_before = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="draftgate-edge-"))
    try:
        with systems(args, workdir, commit) as running:
            measured = uvloop.run(measure(running, args))
    except BaseException:
        print(f"edge: failed; the services' logs are kept in {workdir}", flush=True)
        raise
    shutil.rmtree(workdir)
    result = document(args, commit, measured, load_before)
    path = save(result, result_name(args.features, args.no_ledger_service), args.quick)
    print(f"{summary(result)} -> {path}", flush=True)
    failed = [f"{name}: {check['detail']}" for name, check in result["checks"].items() if not check["passed"]]
    if failed:
        print("edge: not met: " + "; ".join(failed), flush=True)
    return result


if __name__ == "__main__":
    main()
