"""bench/edge.py's pure parts: the two draftgates' settings, the session ids, the figures and the verdict."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bench import edge
from bench.peers_stack import Proxy
from services.ledger.migrate import upgrade_head
from services.ledger.schema import records
from shared.config import load_config
from tests.support import REPO


def test_on_turns_every_edge_feature_on_and_off_turns_them_off():
    on = load_config(REPO / "config.yaml", env=edge.settings(edge.ON, "admin-secret"))
    off = load_config(REPO / "config.yaml", env=edge.settings(edge.OFF))
    assert on.gateway.virtual_keys and on.ledger.enabled and on.gateway.admin_keys_env == edge.ADMIN_KEYS_ENV
    assert edge.settings(edge.ON, "admin-secret")[edge.ADMIN_KEYS_ENV] == "admin-secret"
    assert not off.gateway.virtual_keys and not off.ledger.enabled and off.gateway.admin_keys_env is None
    with pytest.raises(ValueError, match="admin key"):
        edge.settings(edge.ON)
    assert on.audit.sample_rate == off.audit.sample_rate == 0  # its heavyweight calls are no part of the edge


def test_one_feature_at_a_time():
    ledger_only = load_config(REPO / "config.yaml", env=edge.settings(edge.ON, features=("ledger",)))
    assert ledger_only.ledger.enabled and not ledger_only.gateway.virtual_keys
    keys_only = load_config(REPO / "config.yaml", env=edge.settings(edge.ON, "admin", features=("keys",)))
    assert keys_only.gateway.virtual_keys and not keys_only.ledger.enabled
    assert edge.parse_features("sessions, keys,keys") == ("sessions", "keys")
    for bad in ("", "keys,budgets"):
        with pytest.raises(ValueError, match="--features"):
            edge.parse_features(bad)
    assert edge.result_name(edge.FEATURES) == "edge"
    assert edge.result_name(("sessions", "keys")) == "edge-keys-sessions"
    assert edge.result_name(("ledger",), no_ledger_service=True) == "edge-ledger-no-ledger-service"
    assert edge.result_name(("keys",), no_ledger_service=True) == "edge-keys"
    assert edge.parse_args(["--features", "ledger"]).features == ("ledger",)
    with pytest.raises(SystemExit):
        edge.parse_args(["--features", "cache"])


def test_the_made_up_key_s_refusal_is_a_ledger_row_too():
    tally = edge.Tally()
    tally.sent[edge.ON] += 10
    tally.sent[edge.OFF] += 10
    tally.refused += 1
    assert tally.ledger_rows_expected() == 11


def test_the_ledger_writes_sqlite_in_the_run_s_directory(tmp_path: Path):
    config = load_config(REPO / "config.yaml", env=edge.ledger_settings(tmp_path / "ledger.db", 18085))
    assert config.ledger.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/ledger.db"
    assert config.ledger.port == 18085


def test_a_client_keeps_a_session_for_its_turns_then_starts_another():
    sessions = edge.Sessions("on-3-abcd", turns=3)
    assert [sessions.next_id() for _ in range(7)] == ["on-3-abcd-0"] * 3 + ["on-3-abcd-1"] * 3 + ["on-3-abcd-2"]


def test_on_sends_its_key_and_a_session_and_off_sends_neither():
    proxy = Proxy("x", "http://127.0.0.1:1", "auto")
    on = edge.Target(edge.ON, "http://127.0.0.1:1", proxy, key="sk-dg-k", session_turns=4)
    off = edge.Target(edge.OFF, "http://127.0.0.1:2", proxy)
    sessions = on.sessions("0")
    assert sessions is not None and sessions.turns == 4
    assert on.headers(sessions.next_id()) == {"Authorization": "Bearer sk-dg-k", "X-Session-Id": f"{sessions.prefix}-0"}
    assert off.sessions("0") is None and off.headers(None) == {}
    assert on.sessions("0").prefix != on.sessions("0").prefix  # a new run never continues an old session
    assert off.endpoint == "http://127.0.0.1:2/v1/chat/completions"


def test_added_latency_is_on_minus_off_pooled_and_round_by_round():
    rounds = [{edge.ON: [2.0, 2.1, 2.2], edge.OFF: [1.9, 2.0, 2.1]},
              {edge.ON: [3.0, 3.5, 9.0], edge.OFF: [3.0, 3.2, 3.4]}]
    found = edge.added(rounds, edge.ON, edge.OFF)
    assert found["p50_ms_by_round"] == [0.1, 0.3]
    assert found["p50_ms_median_of_rounds"] == pytest.approx(0.2)
    assert found["p50_ms"] == pytest.approx(2.2 - 2.1)  # the six of each pooled
    assert found["p99_ms"] == pytest.approx(9.0 - 3.4)


def test_throughput_drop_and_the_median_rounds():
    assert edge.throughput_drop(900.0, 1000.0) == 0.1
    assert edge.throughput_drop(1100.0, 1000.0) == -0.1
    rounds: list[dict[str, Any]] = [
        {"requests_per_s": 500.0, "cpu_ms": {"gateway": 1.0, "total": 3.0}},
        {"requests_per_s": 700.0, "cpu_ms": {"gateway": 2.0, "total": 5.0}},
        {"requests_per_s": 600.0, "cpu_ms": {"gateway": 0.5, "total": 4.0}},
    ]
    summary = edge.side_summary(rounds)
    assert summary["requests_per_s"] == 600.0 and summary["requests_per_s_by_round"] == [500.0, 700.0, 600.0]
    assert summary["cpu_ms"] == {"gateway": 0.5, "total": 4.0}  # one whole round: its parts add up
    assert summary["cpu_ms_total_by_round"] == [3.0, 5.0, 4.0]


def test_throughput_and_cpu_are_compared_round_by_round():
    def round_(rps: float, cpu: float) -> dict[str, Any]:
        return {"requests_per_s": rps, "cpu_ms": {"total": cpu}}

    on = [round_(90.0, 3.0), round_(45.0, 6.5), round_(200.0, 2.5)]
    off = [round_(100.0, 2.0), round_(50.0, 5.0), round_(200.0, 2.4)]  # the machine got busy in round 2
    pairs = edge.paired(on, off)
    assert pairs["throughput_drop_by_round"] == [0.1, 0.1, 0.0] and pairs["throughput_drop"] == 0.1
    assert pairs["cpu_ms_added_by_round"] == [1.0, 1.5, 0.1] and pairs["cpu_ms_added"] == 1.0
    with pytest.raises(ValueError):
        edge.paired(on, off[:2])


def test_redis_commands_per_request_by_command_and_in_all():
    before = {"evalsha": 100, "xadd": 10, "get": 5}
    after = {"evalsha": 300, "xadd": 12, "get": 5, "xreadgroup": 50}
    assert edge.commands_per_request(before, after, 100) == {"evalsha": 2.0, "xadd": 0.02, "xreadgroup": 0.5,
                                                             "total": 2.52}
    rounds = [{"redis_commands_per_request": {"total": 3.0}}, {"redis_commands_per_request": {"total": 2.0}},
              {"redis_commands_per_request": {"total": 9.0}}]
    assert edge.median_by_total(rounds, "redis_commands_per_request") == {"total": 3.0}
    assert edge.median_by_total([{}], "redis_commands_per_request") == {}


def figures(added_p50: float, on_rps: float, valid: bool = True) -> list[Any]:
    validity = {"ledger_rows": (valid, "rows"), "rate_limit_headers": (True, "headers")}
    pairs = {"throughput_drop": edge.throughput_drop(on_rps, 1000.0)}
    return edge.checks({"p50_ms": added_p50}, pairs, validity)


def test_the_verdict_passes_only_within_both_targets_and_is_invalid_without_the_features():
    assert edge.verdict(figures(0.3, 900.0)) == "PASS"
    assert edge.verdict(figures(0.31, 950.0)) == "FAIL"
    assert edge.verdict(figures(0.1, 899.0)) == "FAIL"
    assert edge.verdict(figures(0.1, 990.0, valid=False)) == "INVALID"
    names = {c.name for c in figures(0.1, 990.0)}
    assert names == {"added_p50", "throughput_drop", "valid_ledger_rows", "valid_rate_limit_headers"}


def test_one_upstream_call_per_request_is_checked_from_the_fake_s_counts():
    before = {"fake-drafter stream logprobs": 10}
    assert edge.one_call(before, {"fake-drafter stream logprobs": 110}, 100)[0]
    assert not edge.one_call(before, {"fake-drafter stream logprobs": 110, "fake-heavy stream": 3}, 100)[0]


def test_ledger_rows_counts_the_ledger_s_table_and_zero_before_it_exists(tmp_path: Path):
    database = tmp_path / "ledger.db"
    assert edge.ledger_rows(database) == 0

    async def migrate_and_insert(rows: int) -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_head)
                if rows:
                    await connection.execute(sa.insert(records), [
                        {"request_id": f"r{i}", "time": datetime.now(UTC), "day": "2026-12-03", "status": 200,
                         "calls": []} for i in range(rows)])
        finally:
            await engine.dispose()

    database.write_bytes(b"")  # a file with no table yet: the ledger has not migrated
    assert edge.ledger_rows(database) == 0
    asyncio.run(migrate_and_insert(3))
    assert edge.ledger_rows(database) == 3
    assert asyncio.run(edge.ledger_caught_up(database, 3, timeout_s=1)) == 3
    assert asyncio.run(edge.ledger_caught_up(database, 4, timeout_s=0.2)) == 3  # gives up at the deadline


def test_quick_runs_are_small_and_session_turns_are_validated():
    args = edge.parse_args(["--quick"])
    assert (args.rounds, args.requests, args.cpu_rounds) == (4, 15, 2)
    assert edge.parse_args([]).clients == 32
    with pytest.raises(SystemExit):
        edge.parse_args(["--session-turns", "0"])


def test_the_summary_line_names_the_verdict_and_the_figures():
    result = {"verdict": "PASS", "added": {"p50_ms": 0.12, "p99_ms": 0.5}, "throughput_drop": 0.034,
              "draftgate": {"on": {"features": ["keys", "ledger", "sessions"]}},
              "cpu_ms_added": 0.4,
              "throughput_and_cpu": {edge.ON: {"requests_per_s": 966.0, "cpu_ms": {"total": 2.4, "ledger": 0.3}},
                                     edge.OFF: {"requests_per_s": 1000.0, "cpu_ms": {"total": 2.0}}}}
    line = edge.summary(result)
    assert line.startswith("edge: PASS: keys, ledger, sessions on") and "0.12 ms" in line
    assert "3.4% lower" in line and "ledger service 0.3" in line
