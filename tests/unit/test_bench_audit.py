"""bench/audit.py's pure parts: alternating order and CPU per request."""

from __future__ import annotations

import pytest

from bench.audit import order, per_request


def test_the_sides_alternate_which_goes_first():
    assert [order(i) for i in range(4)] == [("off", "on"), ("on", "off"), ("off", "on"), ("on", "off")]


def test_cpu_per_request_is_the_difference_in_ms_over_the_requests():
    assert per_request({"router": 1.0, "gateway": 2.0}, {"router": 1.5, "gateway": 2.2}, 100) == {
        "router": pytest.approx(5.0), "gateway": pytest.approx(2.0)}
