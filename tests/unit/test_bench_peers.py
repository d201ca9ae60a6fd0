"""bench.peers' pure parts: reading answers, added latency, CPU per request, the one-upstream-call
check, LiteLLM's best variant, the two targets and the verdict, and how LiteLLM is configured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest

from bench import peers_report as report
from bench.peers import MAX_RETRIES, Target, mode_result, parse_settings, post, rotated
from bench.peers import checks as run_checks
from bench.peers_stack import FEATURE_RPM, features_on, litellm_command, litellm_config, litellm_env, redis_db
from bench.peers_upstream import answer_words, call_key, counting_state
from tests.fakes.upstream import _parse_args, cli_state

LITELLM_2 = report.variant("uvicorn", 2)
GRANIAN_1 = report.variant("granian", 1)


def sse(*events: dict[str, Any], done: bool = True) -> bytes:
    lines = [b"data: " + orjson.dumps(event) for event in events] + ([b"data: [DONE]"] if done else [])
    return b"\n\n".join(lines) + b"\n\n"


def chunk(content: str | None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}], **extra}


def test_a_plain_answer_s_text_is_its_message() -> None:
    raw = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "The word1"}}]})
    assert report.answer_text(raw, stream=False) == "The word1"


def test_a_stream_s_text_joins_its_deltas_past_role_usage_and_draftgate_chunks() -> None:
    raw = sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}, chunk("The"),
              chunk(" word1"), chunk(None, draftgate={"decision": "accept"}), {"choices": [], "usage": {}})
    assert report.answer_text(raw, stream=True) == "The word1"


def test_a_stream_cut_before_done_is_refused() -> None:
    with pytest.raises(ValueError, match="DONE"):
        report.answer_text(sse(chunk("The"), done=False), stream=True)


def test_added_latency_is_pooled_over_rounds_and_shown_round_by_round() -> None:
    rounds = [{"direct": [1.0, 1.0, 1.0], "draftgate": [3.0, 3.0, 3.0]},
              {"direct": [2.0, 2.0, 2.0], "draftgate": [6.0, 6.0, 6.0]}]
    added = report.added_latency(rounds, "draftgate")
    assert added["p50_ms_by_round"] == [2.0, 4.0]
    # pooled: direct [1,1,1,2,2,2] -> p50 index round(2.5) = 2 -> 1.0; draftgate -> 3.0
    assert added["p50_ms"] == 2.0
    assert added["p99_ms"] == 4.0


def test_cpu_per_request_is_each_process_s_growth_and_their_total() -> None:
    before = {"gateway": 10.0, "router-0": 5.0, "redis": 1.0}
    after = {"gateway": 10.5, "router-0": 6.0, "redis": 1.1}
    assert report.cpu_ms_per_request(before, after, 500) == {"gateway": 1.0, "router-0": 2.0, "redis": 0.2,
                                                             "total": 3.2}


def test_a_proxy_with_no_process_costs_nothing() -> None:
    assert report.cpu_ms_per_request({}, {}, 100) == {"total": 0}


def test_the_median_round_is_a_whole_round_the_lower_middle_of_an_even_count() -> None:
    rounds = [{"cpu_ms": {"total": t}, "id": t} for t in (5.0, 1.0, 3.0, 4.0)]
    assert report.median_round(rounds)["id"] == 3.0
    assert report.median_round(rounds[:3])["id"] == 3.0


def test_upstream_calls_per_request_by_kind_leave_out_kinds_that_did_not_grow() -> None:
    before = {"fake-drafter plain": 100, "fake-drafter stream logprobs": 7}
    after = {"fake-drafter plain": 100, "fake-drafter stream logprobs": 207, "fake-heavy stream": 50}
    assert report.calls_per_request(before, after, 200) == {"fake-drafter stream logprobs": 1.0,
                                                            "fake-heavy stream": 0.25}


@pytest.mark.parametrize(("calls", "passed"), [({"fake-drafter stream logprobs": 1.0}, True),
                                               ({"fake-drafter stream logprobs": 1.0, "fake-heavy stream": 0.25},
                                                False),
                                               ({"fake-drafter plain": 0.5}, False), ({}, False)])
def test_exactly_one_upstream_call_per_request_is_required(calls: dict[str, float], passed: bool) -> None:
    assert report.one_call_check("litellm_plain", calls).passed is passed


def test_variants_are_named_and_parsed() -> None:
    assert report.variant("granian", 2) == "litellm-granian-2"
    assert report.parse_variant("uvicorn:1") == ("uvicorn", 1)
    for bad in ("gunicorn:2", "uvicorn", "uvicorn:0", "uvicorn:x"):
        with pytest.raises(ValueError):
            report.parse_variant(bad)


def test_the_best_litellm_variant_is_the_lowest_and_draftgate_is_never_it() -> None:
    figures = {"draftgate": 0.5, LITELLM_2: 16.0, GRANIAN_1: 14.0, "direct": 0.0}
    assert report.best_litellm(figures) == (GRANIAN_1, 14.0)


def test_ratios_need_a_positive_denominator() -> None:
    assert report.ratio(2.0, 8.0) == 0.25
    assert report.ratio(2.0, 0.0) is None
    assert report.ratio(2.0, -1.0) is None


def test_targets_pass_at_the_ratio_and_fail_above_it() -> None:
    cpu = {"draftgate": 2.5, LITELLM_2: 15.0, GRANIAN_1: 18.0}  # 2.5 / 15 = 1/6 exactly
    added = {"draftgate": 5.0, LITELLM_2: 19.0, GRANIAN_1: 30.0}  # 5 / 19 > 1/4
    found = {c.name: c for c in report.mode_checks("plain", cpu, added)}
    assert found["cpu_plain"].passed
    assert LITELLM_2 in found["cpu_plain"].detail and "1/6" in found["cpu_plain"].detail
    assert not found["added_p50_plain"].passed


def test_no_overhead_from_litellm_or_a_negative_one_from_draftgate_is_no_pass() -> None:
    assert not report.mode_checks("stream", {"draftgate": 1.0, LITELLM_2: 0.0},
                                  {"draftgate": 1.0, LITELLM_2: 10.0})[0].passed
    assert not report.mode_checks("stream", {"draftgate": 1.0, LITELLM_2: 10.0},
                                  {"draftgate": -0.5, LITELLM_2: 10.0})[1].passed


def test_every_feature_on_means_two_rate_limited_deployments_per_tier_on_the_fake() -> None:
    settings = features_on("http://127.0.0.1:9/v1")
    drafters = orjson.loads(settings["DRAFTGATE_DRAFTER_DEPLOYMENTS"])
    heavies = orjson.loads(settings["DRAFTGATE_HEAVYWEIGHT_DEPLOYMENTS"])
    assert [d["name"] for d in drafters] == ["drafter-a", "drafter-b"]
    assert {d["model"] for d in heavies} == {"fake-heavy"}
    assert all(d["base_url"] == "http://127.0.0.1:9/v1" and d["rpm"] == FEATURE_RPM and d["tpm"]
               for d in drafters + heavies)
    assert not any("HEDGE" in key for key in settings)  # a hedge would be a second upstream call


def test_a_second_draftgate_gets_another_database_of_the_same_redis() -> None:
    assert redis_db("redis://127.0.0.1:6390/0", 1) == "redis://127.0.0.1:6390/1"


def test_features_count_as_on_only_when_every_drafter_deployment_was_rate_limit_checked() -> None:
    assert report.features_check(["drafter-a", "drafter-b", "heavyweight-a"], ["drafter-a", "drafter-b"]).passed
    missing = report.features_check(["drafter-a"], ["drafter-a", "drafter-b"])
    assert not missing.passed and "missing drafter-b" in missing.detail
    assert report.verdict([report.Check("cpu_plain", True, ""), missing]) == "INVALID"


def test_the_verdict_is_invalid_when_a_proxy_made_other_than_one_call() -> None:
    ok, bad = report.Check("cpu_plain", True, ""), report.Check("added_p50_plain", False, "")
    one, two = report.Check("one_upstream_call_x", True, ""), report.Check("one_upstream_call_y", False, "")
    assert report.verdict([ok, one]) == "PASS"
    assert report.verdict([ok, bad, one]) == "FAIL"
    assert report.verdict([ok, one, two]) == "INVALID"


def cpu_rounds(total: float, calls: dict[str, float]) -> list[dict[str, Any]]:
    return [{"requests": 100, "requests_per_s": 50.0, "cpu_ms": {"total": t}, "upstream_cpu_ms": 0.2,
             "upstream_calls": calls} for t in (total, total * 2, total / 2)]


def test_a_mode_s_figures_compare_draftgate_with_litellm_s_best_variant_per_metric() -> None:
    names = ["direct", "draftgate", LITELLM_2, GRANIAN_1]
    latencies = [{"direct": [1.0] * 10, "draftgate": [3.0] * 10, LITELLM_2: [21.0] * 10, GRANIAN_1: [17.0] * 10}]
    calls = {"fake-drafter plain": 1.0}
    cpu = {"direct": cpu_rounds(0.0, calls), "draftgate": cpu_rounds(2.0, {"fake-drafter stream logprobs": 1.0}),
           LITELLM_2: cpu_rounds(15.0, calls), GRANIAN_1: cpu_rounds(18.0, calls)}
    figures = mode_result(latencies, cpu, names)
    assert figures["cpu"]["draftgate"]["cpu_ms"]["total"] == 2.0  # the median of 2, 4, 1
    assert figures["cpu"]["draftgate"]["total_by_round"] == [2.0, 4.0, 1.0]
    assert figures["ratios"]["cpu"] == {"ratio": round(2 / 15, 4), "against": LITELLM_2}
    assert figures["ratios"]["added_p50"] == {"ratio": 0.125, "against": GRANIAN_1, "by_round": [0.125]}  # 2 / 16
    verdicts = {c.name: c.passed for c in run_checks({"plain": figures})}
    assert verdicts == {"cpu_plain": True, "added_p50_plain": True, "one_upstream_call_draftgate_plain": True,
                        f"one_upstream_call_{LITELLM_2}_plain": True, f"one_upstream_call_{GRANIAN_1}_plain": True}


def test_every_draftgate_target_has_its_ratios_to_litellm_s_best_variant() -> None:
    names = ["direct", "draftgate", "draftgate-single", "draftgate-before", LITELLM_2, GRANIAN_1]
    latencies = [{"direct": [1.0] * 4, "draftgate": [3.0] * 4, "draftgate-single": [2.0] * 4,
                  "draftgate-before": [5.0] * 4, LITELLM_2: [21.0] * 4, GRANIAN_1: [17.0] * 4}]
    calls = {"fake-drafter plain": 1.0}
    cpu = {name: cpu_rounds(total, calls) for name, total in (
        ("direct", 0.0), ("draftgate", 2.0), ("draftgate-single", 1.5), ("draftgate-before", 3.0),
        (LITELLM_2, 15.0), (GRANIAN_1, 18.0))}
    figures = mode_result(latencies, cpu, names)
    against = {"cpu": LITELLM_2, "added_p50": GRANIAN_1}
    assert figures["ratios_by_target"] == {
        "draftgate": {"cpu": round(2 / 15, 4), "added_p50": 0.125, "against": against},
        "draftgate-single": {"cpu": 0.1, "added_p50": 0.0625, "against": against},
        "draftgate-before": {"cpu": 0.2, "added_p50": 0.25, "against": against}}
    text = report.markdown({"recorded_at": "now", "draftgate": {"commit": "abc"},
                            "litellm": {"version": "1.0", "variants": [LITELLM_2, GRANIAN_1]},
                            "load": {"cpu_clients": 16}, "load_average_before": [1.0], "load_average_after": [2.0],
                            "modes": {"plain": figures}, "checks": {}, "verdict": "PASS"})
    assert "| draftgate-single | 0.1 | 0.0625 |" in text and "| draftgate-before | 0.2 | 0.25 |" in text


def test_a_markdown_table_names_every_target_and_the_verdict() -> None:
    names = ["direct", "draftgate", LITELLM_2]
    latencies = [{"direct": [1.0] * 4, "draftgate": [3.0] * 4, LITELLM_2: [21.0] * 4}]
    cpu = {name: cpu_rounds(t, {"fake-drafter plain": 1.0}) for name, t in (("direct", 0.0), ("draftgate", 2.0),
                                                                           (LITELLM_2, 15.0))}
    modes = {"plain": mode_result(latencies, cpu, names)}
    found = run_checks(modes)
    text = report.markdown({"recorded_at": "now", "draftgate": {"commit": "abc"},
                            "litellm": {"version": "1.0", "variants": [LITELLM_2]}, "load": {"cpu_clients": 16},
                            "load_average_before": [1.0], "load_average_after": [2.0], "modes": modes,
                            "checks": {c.name: c.as_dict() for c in found}, "verdict": report.verdict(found)})
    assert f"| {LITELLM_2} | 21.0 |" in text and "| draftgate | 3.0 |" in text
    assert "added p50 0.1 (against litellm-uvicorn-2; by round 0.1)" in text
    assert text.rstrip().endswith("**PASS**")


def test_each_round_starts_the_targets_from_another_one() -> None:
    assert [rotated("abc", i) for i in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]


def test_only_draftgate_settings_are_passed_to_draftgate() -> None:
    assert parse_settings(["DRAFTGATE_BUS_REPLY_COALESCE_MS=20"]) == {"DRAFTGATE_BUS_REPLY_COALESCE_MS": "20"}
    for bad in ("LITELLM_LOG=DEBUG", "DRAFTGATE_X"):
        with pytest.raises(SystemExit):
            parse_settings([bad])


def test_litellm_calls_the_fake_as_an_openai_model_with_every_optional_cost_off() -> None:
    config = litellm_config("http://127.0.0.1:9/v1")
    (model,) = config["model_list"]
    assert model["model_name"] == "fake-drafter"
    assert model["litellm_params"] == {"model": "openai/fake-drafter", "api_base": "http://127.0.0.1:9/v1",
                                       "api_key": "unused"}
    settings = config["litellm_settings"]
    assert settings["callbacks"] == settings["success_callback"] == settings["failure_callback"] == []
    assert settings["num_retries"] == 0
    assert "database_url" not in config["general_settings"] and config["general_settings"]["disable_spend_logs"]
    env = litellm_env()
    assert env["LITELLM_LOG"] == "ERROR" and "LITELLM_MASTER_KEY" not in env and "DATABASE_URL" not in env


def test_litellm_runs_on_the_chosen_server_and_workers() -> None:
    uvicorn = litellm_command(Path("/v/bin/litellm"), Path("c.yaml"), 4000, 1, "uvicorn")
    assert uvicorn == ["/v/bin/litellm", "--config", "c.yaml", "--host", "127.0.0.1", "--port", "4000",
                       "--num_workers", "1"]
    assert litellm_command(Path("/v/bin/litellm"), Path("c.yaml"), 4000, 1, "granian")[-1] == "--run_granian"


def test_uvicorn_s_supervisor_gives_litellm_s_workers_time_to_answer_its_health_ping() -> None:
    two = litellm_command(Path("litellm"), Path("c.yaml"), 4000, 2, "uvicorn")
    assert two[-2:] == ["--timeout_worker_healthcheck", "60"]
    assert "--timeout_worker_healthcheck" not in litellm_command(Path("litellm"), Path("c.yaml"), 4000, 2, "granian")


def test_the_peers_fake_answers_as_the_standard_fake_and_only_counts_calls() -> None:
    standard = cli_state(_parse_args(["--tokens", "16"])).default
    state = counting_state(16)
    assert state.default.tokens == standard.tokens == answer_words(16)
    assert state.default.entropies == standard.entropies
    state.record("fake-drafter", {"logprobs": True}, stream=True)
    state.record("fake-drafter", {}, stream=False)
    state.record("fake-drafter", {}, stream=False)
    assert dict(state.counts) == {call_key("fake-drafter", True, True): 1, "fake-drafter plain": 2}
    assert state.snapshot() == []


class DropsFirst(asyncio.Protocol):
    """A server that closes its first `drops` connections once a request arrives, then answers 200."""

    served: ClassVar[list[str]] = []
    drops: ClassVar[int] = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, asyncio.Transport)
        if len(DropsFirst.served) < DropsFirst.drops:
            DropsFirst.served.append("dropped")
            self.transport.close()
            return
        DropsFirst.served.append("answered")
        body = b'{"choices": []}'
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize(("drops", "answered"), [(1, True), (MAX_RETRIES, True), (MAX_RETRIES + 1, False)])
async def test_a_dropped_connection_is_tried_again_and_counted_until_the_retries_run_out(
        drops: int, answered: bool) -> None:
    DropsFirst.served, DropsFirst.drops = [], drops
    server = await asyncio.get_running_loop().create_server(DropsFirst, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = Target("peer", f"http://127.0.0.1:{port}/v1/chat/completions", "m")
    try:
        async with aiohttp.ClientSession() as session:
            if answered:
                _, raw, _ = await post(session, target, stream=False)
                assert raw == b'{"choices": []}'
                assert target.retried == {"plain": drops}
                assert DropsFirst.served == ["dropped"] * drops + ["answered"]
            else:
                with pytest.raises(RuntimeError, match=f"{MAX_RETRIES} retries"):
                    await post(session, target, stream=False)
                assert target.retried == {"plain": MAX_RETRIES}
    finally:
        server.close()
        await server.wait_closed()


def test_the_markdown_names_the_requests_tried_again() -> None:
    text = report.markdown({"recorded_at": "now", "draftgate": {"commit": "abc"},
                            "litellm": {"version": "1.0", "variants": [LITELLM_2]}, "load": {"cpu_clients": 16},
                            "load_average_before": [1.0], "load_average_after": [2.0], "modes": {},
                            "requests_retried": {LITELLM_2: {"stream": 1}}, "checks": {}, "verdict": "PASS"})
    assert f"connection: {LITELLM_2} {{'stream': 1}}" in text
