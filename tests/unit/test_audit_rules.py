"""The audit's alert rules: promtool evaluates them on scraped-like series (the rate rising, too few
audits, a config threshold, one tenant and one category, the budget), they name only metrics the code
defines, and compose and k8s ship them."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.unit.test_deploy_metrics import DEPLOY, check_expr, metric_definitions, prometheus_jobs

RULES = DEPLOY / "prometheus" / "audit-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "audit-rules.test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (make install does)"
    return found


def test_promtool_checks_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_the_disagreement_alert_fires_in_promtool_rule_tests():
    result = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_fail_when_the_alert_would_not_fire(tmp_path):
    """The rule tests can fail: with the threshold's comparison reversed, the rising rate never fires."""
    broken = RULES.read_text().replace(
        "max(draftgate_audit_disagreement_rate{job=\"router\"})\n            > on()",
        "max(draftgate_audit_disagreement_rate{job=\"router\"})\n            < on()")
    assert broken != RULES.read_text()
    (tmp_path / "audit-rules.yml").write_text(broken)
    (tmp_path / "audit-rules.test.yml").write_text(RULE_TESTS.read_text())
    result = subprocess.run([promtool(), "test", "rules", str(tmp_path / "audit-rules.test.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "DraftgateAuditDisagreement" in result.stdout + result.stderr


def test_the_rules_use_only_metrics_and_labels_the_code_defines():
    defs, jobs = metric_definitions(), prometheus_jobs()
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {"DraftgateAuditDisagreement", "DraftgateAuditTenantDisagreement",
                                                 "DraftgateAuditCategoryDisagreement", "DraftgateAuditBudgetSpent"}
    for rule in rules:
        assert rule["labels"]["severity"]
        assert check_expr(rule["expr"], defs, jobs) == [], rule["alert"]


def test_compose_and_k8s_ship_the_rules():
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "/etc/prometheus/audit-rules.yml" in prometheus["rule_files"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mount = "./prometheus/audit-rules.yml:/etc/prometheus/audit-rules.yml:ro"
    assert mount in compose["services"]["prometheus"]["volumes"]
    configmap = yaml.safe_load((DEPLOY / "k8s" / "prometheus-rules.yaml").read_text())
    assert configmap["data"]["audit-rules.yml"] == RULES.read_text()
    assert "prometheus-rules.yaml" in yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
