"""Closed-loop HTTP load from wrk, the C load generator, when it is installed (Debian: `wrk`).

A Python load generator spends about 0.13 ms of CPU per request on the same two cores as the
system it measures; wrk about a tenth of that, so its figure is closer to what draftgate itself
can serve. Benchmarks report both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)


def available() -> bool:
    return shutil.which("wrk") is not None


def post_load(url: str, body: dict[str, Any], connections: int, seconds: int) -> dict[str, float]:
    """POST `body` to `url` on `connections` keep-alive connections for `seconds` (after a warm-up)."""
    script = "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n" \
             f"wrk.body = [[{json.dumps(body)}]]\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        base = ["wrk", "-t1", f"-c{connections}", "--latency", "-s", lua.name, url]
        subprocess.run([*base[:3], "-d2s", *base[3:]], check=True, capture_output=True)
        report = subprocess.run([*base[:3], f"-d{seconds}s", *base[3:]], check=True, capture_output=True,
                                text=True).stdout
    return parse_report(report)


def parse_report(report: str) -> dict[str, float]:
    """Requests/s and latency percentiles from wrk's --latency report; any failed request is an error."""
    if "Non-2xx or 3xx responses" in report or "Socket errors" in report:
        raise RuntimeError(f"wrk saw failed requests:\n{report}")
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", report, re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in", report, re.MULTILINE)
    if rate is None or requests is None:
        raise RuntimeError(f"not a wrk report:\n{report}")
    latency = {pct: float(value) * _UNITS_MS[unit] for pct, value, unit in _LATENCY.findall(report)}
    return {"requests_per_s": float(rate.group(1)), "n": int(requests.group(1)),
            "p50_ms": round(latency["50"], 3), "p99_ms": round(latency["99"], 3)}
