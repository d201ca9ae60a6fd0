"""How a turn's key-script calls are grouped into commands (services/gateway/limits._batches): in order,
each command within BATCH_MAX_ARGS arguments, one clock and one day per command."""

from __future__ import annotations

from services.gateway.limits import BATCH_MAX_ARGS, ScriptCall, _batches


def call(name: str, args: int = 20, clock: str = "", day: str = "2026-12-05") -> ScriptCall:
    return ScriptCall([name], ["admit", clock, "", "", "", day, "2026-12", 3600, *(["x"] * (args - 8))])


def test_a_turns_calls_go_in_order_in_as_few_commands_as_their_size_allows() -> None:
    calls = [call(str(index)) for index in range(10)]
    assert _batches(calls) == [calls]
    many = [call(str(index), args=1000) for index in range(9)]
    groups = _batches(many)
    assert [item for group in groups for item in group] == many
    assert [len(group) for group in groups] == [3, 3, 3]
    assert all(9 + sum(len(c.keys) + len(c.args) + 2 for c in group) <= BATCH_MAX_ARGS for group in groups)


def test_a_call_larger_than_a_batch_goes_alone() -> None:
    small, large = call("a"), call("b", args=BATCH_MAX_ARGS + 1)
    assert _batches([small, large, small]) == [[small], [large], [small]]


def test_a_call_of_another_clock_or_day_starts_another_command() -> None:
    before, after = call("a", day="2026-12-05"), call("b", day="2026-12-06")
    assert _batches([before, before, after, after]) == [[before, before], [after, after]]
    assert _batches([call("a", clock="1"), call("a", clock="2")]) == [[call("a", clock="1")], [call("a", clock="2")]]
