"""The analytics endpoints' from/to/group_by/tenant: parsed, refused naming the parameter, sent on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ledger.params import GROUP_COLUMNS, Window, parse_window
from shared.errors import InvalidRequest


@pytest.mark.parametrize(("text", "expected"), [
    ("1764547200", datetime(2025, 12, 1, tzinfo=UTC)),
    ("1764547200.5", datetime(2025, 12, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2025-12-01", datetime(2025, 12, 1, tzinfo=UTC)),
    ("2025-12-01T10:30", datetime(2025, 12, 1, 10, 30, tzinfo=UTC)),
    ("2025-12-01T10:30:00Z", datetime(2025, 12, 1, 10, 30, tzinfo=UTC)),
    ("2025-12-01T12:30:00+02:00", datetime(2025, 12, 1, 10, 30, tzinfo=UTC)),
])
def test_times_in_seconds_or_iso_8601_are_utc(text: str, expected: datetime) -> None:
    assert parse_window({"from": text}).start == expected


@pytest.mark.parametrize(("query", "param"), [
    ({"from": "yesterday"}, "from"),
    ({"to": "2025-13-01"}, "to"),
    ({"from": "-5"}, "from"),
    ({"from": "nan"}, "from"),
    ({"to": "1e300"}, "to"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
    ({"from": "2025-12-02", "to": "2025-12-01"}, "to"),
    ({"from": "2025-12-01", "to": "2025-12-01"}, "to"),
    ({"group_by": "week"}, "group_by"),
    ({"group_by": "KEY"}, "group_by"),
    ({"tenant": "ac\x00me"}, "tenant"),
])
def test_a_bad_value_is_a_400_naming_its_parameter(query: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_window(query)
    assert caught.value.param == param and caught.value.status == 400


def test_group_by_takes_the_documented_values_and_nothing_where_not_grouped() -> None:
    assert set(GROUP_COLUMNS) == {"key", "tenant", "template", "model", "day"}
    for value in GROUP_COLUMNS:
        assert parse_window({"group_by": value}).group_by == value
    assert parse_window({"group_by": ""}).group_by is None
    with pytest.raises(InvalidRequest) as caught:
        parse_window({"group_by": "key"}, grouping=False)
    assert caught.value.param == "group_by"


def test_a_window_sent_on_parses_back_to_itself() -> None:
    window = parse_window({"from": "2025-12-01T12:30:00+02:00", "to": "1764633600", "group_by": "day",
                           "tenant": "acme:eu"})
    assert parse_window(window.to_params()) == window
    assert parse_window(Window().to_params()) == Window()
    assert window.scoped("other").tenant == "other"
    assert window.describe()["from"] == "2025-12-01T10:30:00Z"
