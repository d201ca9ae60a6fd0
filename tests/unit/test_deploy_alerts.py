"""PromQL in deploy/, through promtool (Debian's prometheus package; `make install` provides it): the
alert rules parse and their rule tests pass (and fail when a rule is broken), and every Prometheus query
of the dashboard parses. Names and labels are checked against the code in test_deploy_metrics.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.unit.test_deploy_metrics import DEPLOY, alert_rules, dashboard_exprs

PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
# Grafana's range variables, as it would substitute them for a 1-hour view.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (make install does)"
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_checks_the_alert_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alert_rules())} rules found" in result.stdout


def test_the_ledger_and_degraded_alerts_pass_their_rule_tests():
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert {"DraftgateLedgerDown", "DraftgateLedgerBehind", "DraftgateLedgerRecordsDropped",
            "DraftgateDegraded"} <= tested <= {rule["alert"] for rule in alert_rules()}
    result = promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_tests_fail_when_feedback_rows_could_hide_the_ledger_s_gap(tmp_path: Path):
    """Without the table filter, the feedback table's rows make up for the records the ledger does not
    write, and the alert never fires: the rule tests say so."""
    text = RULES.read_text()
    broken = text.replace('draftgate_ledger_rows_total{job="ledger", table="ledger_records"}',
                          'draftgate_ledger_rows_total{job="ledger"}')
    assert broken != text
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "DraftgateLedgerBehind" in result.stdout + result.stderr


def test_every_dashboard_prometheus_query_parses(tmp_path: Path):
    exprs = dashboard_exprs()
    assert len(exprs) > 30
    rules = []
    for index, expr in enumerate(exprs):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_a_query_that_does_not_parse_is_caught(tmp_path: Path):
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [
        {"record": "bad:query", "expr": 'sum by (tier (rate(draftgate_requests_total{job="gateway"}[1m]))'}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0
