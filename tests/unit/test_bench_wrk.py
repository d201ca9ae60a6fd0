"""Reading wrk's report for the overhead benchmark."""

from __future__ import annotations

import pytest

from bench.wrk import parse_report

REPORT = """Running 10s test @ http://127.0.0.1:56217/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    22.30ms    7.66ms  52.76ms   67.72%
    Req/Sec     1.44k    86.13     1.67k    74.00%
  Latency Distribution
     50%  850.00us
     75%   27.55ms
     90%   32.13ms
     99%    1.27s
  14367 requests in 10.02s, 10.19MB read
Requests/sec:   1433.49
Transfer/sec:      1.02MB
"""


def test_reads_rate_count_and_percentiles_in_milliseconds() -> None:
    assert parse_report(REPORT) == {"requests_per_s": 1433.49, "n": 14367, "p50_ms": 0.85, "p99_ms": 1270.0}


def test_failed_requests_make_the_run_invalid() -> None:
    with pytest.raises(RuntimeError, match="failed requests"):
        parse_report(REPORT.replace("Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec"))
