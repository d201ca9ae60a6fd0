"""The progressive-streaming benchmark's pure parts: what counts as a right answer (the seam above
all), the statistics, the issue's two targets, the verdict, and the table; and the heavyweight's
continuation in its fake upstream."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.progressive import (
    BUFFERED,
    BUFFERED_SERIAL,
    DIRECT,
    PROGRESSIVE,
    PROGRESSIVE_SERIAL,
    SEAM,
    SEAM_MODES,
    TTFT_MODES,
    Job,
    Outcome,
    checks_of,
    cpu_figures,
    cpu_per_request,
    expected_problem,
    figures,
    jobs,
    judge,
    per_token,
    problems,
    seam_words,
    stats,
    table,
    ttft_check,
    ttft_limit_ms,
    verdict,
)
from bench.progressive_upstream import (
    ANSWER_TOKENS,
    LENGTHS,
    HeavyweightState,
    continuation_tokens,
    drafted,
    drafter_state,
    shown_words,
    turning_entropies,
)
from bench.soak_report import Check
from shared.config import BusConfig

WHOLE_HEAVY = "".join(continuation_tokens(0))


def continued(shown: int) -> str:
    return "".join(drafted(shown)) + "".join(continuation_tokens(shown))


def accepted(mode: str, length: int, ttft: float, **changes: Any) -> Outcome:
    fields: dict[str, Any] = {"ttft_ms": ttft, "total_ms": ttft + 20 * length, "text": "".join(drafted(length))}
    if mode == PROGRESSIVE:
        fields |= {"decision": "progressive", "final": {"decision": "accept", "speculation": "none"}}
    elif mode == BUFFERED:
        fields |= {"decision": "accept", "speculation": "none"}
    return Outcome(mode, f"len{length}", **{**fields, **changes})


def seam(mode: str, ttft: float, total: float, **changes: Any) -> Outcome:
    if mode in (PROGRESSIVE, PROGRESSIVE_SERIAL):
        fields: dict[str, Any] = {"decision": "progressive", "text": continued(16),
                                  "final": {"decision": "continued", "seam_tokens": 16, "speculation": "used"}}
    else:
        fields = {"decision": "escalate", "text": WHOLE_HEAVY}
    return Outcome(mode, SEAM, ttft_ms=ttft, total_ms=total, **{**fields, **changes})


def good_run(progressive_ttft: float = 240.0, continued_total: float = 1500.0) -> list[Outcome]:
    outcomes = []
    for length in LENGTHS:
        outcomes += [accepted(DIRECT, length, 52.0), accepted(BUFFERED, length, 60.0 + 20 * length),
                     accepted(PROGRESSIVE, length, progressive_ttft)]
    outcomes += [seam(PROGRESSIVE, 245.0, continued_total), seam(PROGRESSIVE_SERIAL, 245.0, continued_total + 100),
                 seam(BUFFERED_SERIAL, 1030.0, 2250.0), seam(BUFFERED, 800.0, 2000.0)]
    return outcomes


CPU = {40: {BUFFERED: {"router": 3.0, "gateway": 1.0, "gateway+router": 4.0},
            PROGRESSIVE: {"router": 3.5, "gateway": 1.1, "gateway+router": 4.6}},
       200: {BUFFERED: {"router": 11.0, "gateway": 1.0, "gateway+router": 12.0},
             PROGRESSIVE: {"router": 19.5, "gateway": 9.1, "gateway+router": 28.6}}}


def test_every_mode_and_scenario_is_asked_as_often_in_one_reproducible_shuffle() -> None:
    order = jobs(3)
    counts = Counter(order)
    expected = {Job(mode, f"len{length}") for length in LENGTHS for mode in TTFT_MODES}
    expected |= {Job(mode, SEAM) for mode in SEAM_MODES}
    assert set(counts) == expected and set(counts.values()) == {3}
    assert order == jobs(3) and order != sorted(order, key=lambda job: (job.mode, job.scenario))


def test_statistics_are_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert stats(values) == {"n": 20, "p50_ms": 11.0, "p90_ms": 18.0, "mean_ms": 10.5}
    assert stats([]) == {"n": 0}
    assert stats([16.0, 31.0], unit="tokens") == {"n": 2, "p50_tokens": 16.0, "p90_tokens": 31.0, "mean_tokens": 23.5}


def test_a_seamless_continuation_is_the_shown_words_then_the_rest_of_the_answer() -> None:
    assert seam_words(continued(16)) == (16, True)
    assert seam_words(continued(16).replace(" h17", "", 1)) == (16, False)  # a word lost
    assert seam_words("".join(drafted(16)) + " h15" + "".join(continuation_tokens(16))) == (16, False)  # twice
    assert seam_words("".join(drafted(16)) + WHOLE_HEAVY) == (16, False)  # restarted, not continued
    assert seam_words("".join(drafted(16)) + "h16" + "".join(continuation_tokens(17))) == (0, False)  # no space
    assert seam_words(WHOLE_HEAVY) == (0, True)


def test_answers_are_judged_by_their_mode_and_scenario() -> None:
    assert all(expected_problem(outcome) is None for outcome in good_run())
    assert expected_problem(accepted(PROGRESSIVE, 10, 200.0, decision="accept")) is None  # decided before release
    assert expected_problem(accepted(PROGRESSIVE, 40, 200.0, final=None)) is not None
    assert expected_problem(accepted(BUFFERED, 40, 900.0, final={"decision": "accept"})) is not None
    assert expected_problem(accepted(DIRECT, 40, 50.0, text=" d0")) is not None
    assert expected_problem(seam(PROGRESSIVE, 240.0, 1500.0, final={"decision": "continued", "seam_tokens": 12})) \
        is not None  # the field must count what the client got
    assert expected_problem(seam(PROGRESSIVE, 240.0, 1500.0, final={"decision": "escalate", "seam_tokens": 0})) \
        is not None
    assert expected_problem(seam(BUFFERED_SERIAL, 1000.0, 2200.0, text=continued(16))) is not None
    assert expected_problem(Outcome(PROGRESSIVE, SEAM, error="APIConnectionError: boom")) == "APIConnectionError: boom"


def test_figures_leave_out_wrong_answers_and_count_them() -> None:
    outcomes = [*good_run(), accepted(PROGRESSIVE, 40, 5.0, text=" d0")]
    found = figures(outcomes)
    assert found["len40"][PROGRESSIVE]["ttft"]["n"] == 1 and found["len40"][PROGRESSIVE]["ttft"]["p50_ms"] == 240.0
    assert found["len40"][PROGRESSIVE]["unexpected"] == 1
    assert found[SEAM][PROGRESSIVE]["finals"] == {"continued/used": 1}
    assert problems(outcomes)["count"] == 1


def test_the_ttft_target_is_direct_plus_the_early_exit_region_plus_50_ms() -> None:
    assert ttft_limit_ms(52.0) == 52.0 + 10 * 20 + 50
    assert ttft_check(40, 52.0, 302.0).passed
    assert not ttft_check(40, 52.0, 302.5).passed


def test_continued_totals_pass_up_to_the_serial_escalation_s() -> None:
    names = {check.name: check.passed for check in checks_of(figures(good_run(continued_total=2150.0)))}
    assert names == {"ttft_len10": True, "ttft_len40": True, "ttft_len200": True,
                     f"seam_total_{PROGRESSIVE}": True, f"seam_total_{PROGRESSIVE_SERIAL}": True}
    slow = {check.name: check.passed for check in checks_of(figures(good_run(continued_total=2200.0)))}
    assert slow[f"seam_total_{PROGRESSIVE}"] and not slow[f"seam_total_{PROGRESSIVE_SERIAL}"]


def test_a_target_without_a_figure_fails() -> None:
    outcomes = [o for o in good_run() if not (o.mode == DIRECT and o.scenario == "len200")]
    checks = {check.name: check for check in checks_of(figures(outcomes))}
    assert not checks["ttft_len200"].passed and "no figure" in checks["ttft_len200"].detail


def test_wrong_answers_make_a_run_invalid_whatever_its_figures() -> None:
    passing, failing = Check("a", True, ""), Check("b", False, "")
    assert verdict([passing], 0) == "PASS"
    assert verdict([passing, failing], 0) == "FAIL"
    assert verdict([passing], 1) == "INVALID"


def test_cpu_per_request_is_each_process_and_their_sum() -> None:
    assert cpu_per_request({"router": 1.0, "gateway": 2.0}, {"router": 1.3, "gateway": 2.1}, 100) == {
        "router": 3.0, "gateway": 1.0, "gateway+router": 4.0}


def test_cpu_per_token_is_the_slope_between_the_draft_lengths() -> None:
    figures_ = cpu_figures(CPU)
    assert figures_["ms_per_token"][PROGRESSIVE] == {"router": 0.1, "gateway": 0.05, "gateway+router": 0.15}
    assert figures_["ms_per_token"][BUFFERED]["gateway"] == 0.0
    assert figures_["progressive_over_buffered"] == {"40": 1.15, "200": 2.38}
    assert per_token({40: {"x": 1.0}}) == {}  # one length: no slope
    assert cpu_figures({40: CPU[40]})["ms_per_token"] == {}


def test_the_table_shows_every_part_and_the_verdict() -> None:
    result = {"recorded_at": "2026-12-10T10:00:00Z", "code": "abc1234", "seconds": 200.0,
              "load": {"before": [0.5, 0.4, 0.3], "after": [1.2, 0.8, 0.5], "cpus": 2},
              **judge(good_run(), CPU, repetitions=20, concurrency=4)}
    assert result["verdict"] == "PASS"
    text = table(result)
    assert "| 40 | 52 / 52 | 860 / 860 | 240 / 240 | 3.58x | 188 | 302 |" in text
    assert "| progressive, continued (speculation on) | 245 / 245 | 1500 / 1500 | 0.67x | 16 | continued/used x1 |" \
        in text
    assert "| buffered, serial escalation (speculation off) | 1030 / 1030 | 2250 / 2250 | 1x | - | - |" in text
    assert "| 40 (96) | progressive | 1.1 | 3.5 | 4.6 | 1.15x |" in text
    assert "| each further token | progressive | 0.05 | 0.1 | 0.15 | |" in text
    # The settings that change the CPU figures, as configured by default.
    assert f"stream_holdback_tokens 4, bus.reply_coalesce_ms {BusConfig().reply_coalesce_ms:g}" in text
    assert text.rstrip().endswith("**PASS**")


def test_the_turning_draft_passes_the_early_exit_region_then_crosses_the_window_threshold() -> None:
    bits = turning_entropies()
    assert max(bits[:10]) < 1.4  # nothing elevated inside the early-exit region: tokens get shown
    crossing = next(i for i in range(10, len(bits) + 1) if sum(bits[i - 10:i]) / 10 > 2.0)
    assert 20 < crossing < len(bits)  # escalates after a prefix was shown, before the draft ends
    state = drafter_state()
    assert state.pick("fake-drafter", [{"role": "user", "content": "[turns] go"}]).bits == bits
    assert len(state.pick("fake-drafter", [{"role": "user", "content": "[len200] go"}]).tokens) == 200


def test_the_heavyweight_writes_the_rest_of_its_answer_after_a_shown_prefix() -> None:
    state = HeavyweightState()
    whole = state.pick("fake-heavy", [{"role": "user", "content": "[turns] go"}])
    assert whole.text == WHOLE_HEAVY and len(whole.tokens) == ANSWER_TOKENS
    messages = [{"role": "user", "content": "[turns] go"}, {"role": "assistant", "content": "".join(drafted(16))},
                {"role": "user", "content": "Continue exactly where you stopped."}]
    assert shown_words(messages) == 16
    rest = state.pick("fake-heavy", messages)
    assert rest.text == "".join(continuation_tokens(16)) and rest.tokens[0] == " h16"
    assert state.pick("fake-heavy", messages) is rest  # one script per length: the fake renders it once
