"""The dashboard and alert rules use only metrics and labels the code defines.

Names and labels come from the prometheus_client constructor calls in services/ and shared/, read
with ast, and each selector's job must be the service that defines the metric: renaming a metric
or a label breaks this test, not the dashboard.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Series each prometheus_client metric type exposes, as suffixes of its name.
METRIC_KINDS = {"Counter": ("_total", "_created"), "Gauge": ("",), "Enum": ("",), "Info": ("_info",),
                "Histogram": ("_bucket", "_sum", "_count", "_created"), "Summary": ("", "_sum", "_count", "_created")}
BUILTIN_SERIES = {"up"}
ALWAYS_LABELS = {"job", "instance"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# Metric definitions, read from the code


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str
    labels: frozenset[str]
    service: str  # services/<service>/...; "shared" for shared/

    @property
    def exposed(self) -> set[str]:
        base = self.name.removesuffix("_total") if self.kind == "Counter" else self.name
        return {base + suffix for suffix in METRIC_KINDS[self.kind]}


def metric_definitions() -> list[MetricDef]:
    found = []
    for path in sorted([*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]):
        tree = ast.parse(path.read_text())
        if not any(isinstance(n, ast.ImportFrom) and n.module == "prometheus_client" for n in ast.walk(tree)):
            continue
        parts = path.relative_to(REPO).parts
        service = parts[1] if parts[0] == "services" else "shared"
        found += [_metric(call, service) for call in ast.walk(tree) if _is_metric_call(call)]
    return found


def _is_metric_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return False
    func = node.func
    return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in METRIC_KINDS


def _metric(call: ast.Call, service: str) -> MetricDef:
    kind = call.func.id if isinstance(call.func, ast.Name) else call.func.attr  # type: ignore[union-attr]
    labels_node = call.args[2] if len(call.args) > 2 else next(
        (k.value for k in call.keywords if k.arg == "labelnames"), None)
    labels = set(ast.literal_eval(labels_node)) if labels_node is not None else set()
    if kind == "Histogram":
        labels.add("le")
    return MetricDef(call.args[0].value, kind, frozenset(labels), service)  # type: ignore[union-attr]


# PromQL references, checked against the definitions

SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
NAME = re.compile(r"\bdraftgate_[a-z0-9_]+\b")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def check_expr(expr: str, defs: list[MetricDef], jobs: set[str]) -> list[str]:
    """Problems with one PromQL expression: unknown metrics, labels, or a job that lacks the metric."""
    by_name: dict[str, list[MetricDef]] = {}
    for d in defs:
        for exposed in d.exposed:
            by_name.setdefault(exposed, []).append(d)
    errors: list[str] = []
    used: list[MetricDef] = []
    for name, body in SELECTOR.findall(expr):
        found, problems = _select(name, dict(MATCHER.findall(body)), by_name.get(name, []), jobs)
        used += found
        errors += problems
    selected = {name for name, _ in SELECTOR.findall(expr)}
    for name in set(NAME.findall(expr)) - selected:
        if name not in by_name:
            errors.append(f"{name}: no such metric in the code")
        used += by_name.get(name, [])
    known = ALWAYS_LABELS.union(*(d.labels for d in used))
    for group in GROUPING.findall(expr):
        errors += [f"{expr!r}: groups by unknown label {label}" for label in _names(group) if label not in known]
    return errors


def _select(name: str, matchers: dict[str, str], candidates: list[MetricDef],
            jobs: set[str]) -> tuple[list[MetricDef], list[str]]:
    """The definitions one selector can mean (narrowed by its job), and what is wrong with it."""
    job = matchers.get("job")
    if name in BUILTIN_SERIES:
        return [], [f"{name}: job {job!r} is not scraped"] if job is not None and job not in jobs else []
    if job is not None:
        candidates = [d for d in candidates if d.service in (job, "shared")]
    if not candidates:
        return [], [f"{name}: no such metric in the code" + (f" of the {job} service" if job else "")]
    labels = ALWAYS_LABELS.union(*(d.labels for d in candidates))
    return candidates, [f"{name}: no label {label}" for label in matchers if label not in labels]


def _names(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def prometheus_jobs() -> set[str]:
    return {job["job_name"] for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "draftgate.json").read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    panels = dashboard()["panels"]
    return [*panels, *(inner for p in panels for inner in p.get("panels", []))]


# The dashboard's two data sources: Prometheus (PromQL in "expr") and the ledger's PostgreSQL (SQL in
# "rawSql", checked against the migrated schema in test_deploy_ledger.py), each chosen by a variable.
PROMETHEUS_SOURCE = {"type": "prometheus", "uid": "${datasource}"}
LEDGER_SOURCE = {"type": "grafana-postgresql-datasource", "uid": "${ledger}"}


def dashboard_targets(source: dict[str, str]) -> list[dict[str, Any]]:
    return [t for p in dashboard_panels() for t in p.get("targets", []) if t["datasource"] == source]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for t in dashboard_targets(PROMETHEUS_SOURCE)]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for rule in group["rules"]]


# Metrics: dashboard and alerts use only what the code defines


def test_metric_definitions_are_read_from_every_service():
    defs = {d.name: d for d in metric_definitions()}
    assert defs["draftgate_draft_entropy_bits"].service == "router"
    assert defs["draftgate_request_duration_seconds"].labels == {"decision", "le"}
    assert {d.service for d in defs.values()} >= {"gateway", "router"}


def test_the_metric_check_catches_renamed_metrics_and_labels():
    defs, jobs = metric_definitions(), prometheus_jobs()
    assert check_expr('sum by (decision) (rate(draftgate_requests_total{job="gateway"}[5m]))', defs, jobs) == []
    assert check_expr("rate(draftgate_request_total[5m])", defs, jobs)
    assert check_expr('rate(draftgate_requests_total{decison="accept"}[5m])', defs, jobs)
    assert check_expr('rate(draftgate_requests_total{job="router"}[5m])', defs, jobs)
    assert check_expr("sum by (tier) (rate(draftgate_requests_total[5m]))", defs, jobs)
    assert check_expr('up{job="nobody"}', defs, jobs)
    assert check_expr('sum by (tier) (rate(draftgate_gateway_cache_lookups_total{job="gateway"}[5m]))', defs, jobs)


def test_dashboard_queries_use_only_metrics_and_labels_the_code_defines():
    defs, jobs = metric_definitions(), prometheus_jobs()
    errors = [error for expr in dashboard_exprs() for error in check_expr(expr, defs, jobs)]
    assert errors == []


def test_dashboard_legends_name_labels_the_query_keeps():
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            if target["datasource"] != PROMETHEUS_SOURCE:
                continue
            kept = {"le", *ALWAYS_LABELS, *(label for g in GROUPING.findall(target["expr"]) for label in _names(g))}
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend <= kept, f"{panel['title']}: legend uses {legend - kept}"


def test_alert_expressions_use_only_metrics_and_labels_the_code_defines():
    defs, jobs = metric_definitions(), prometheus_jobs()
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert rule["alert"].startswith("Draftgate") and rule["labels"]["severity"]
        assert check_expr(rule["expr"], defs, jobs) == [], rule["alert"]
        grouped = {label for g in GROUPING.findall(rule["expr"]) for label in _names(g)}
        used = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))))
        assert used <= grouped, f"{rule['alert']}: annotations use {used - grouped}"


def test_dashboard_covers_the_routing_speculation_cache_and_capacity_metrics():
    text = " ".join(dashboard_exprs())
    for name in ("draftgate_requests_total", "draftgate_router_decisions_total",
                 "draftgate_request_duration_seconds_bucket", "draftgate_draft_entropy_bits_bucket",
                 "draftgate_speculations_started_total", "draftgate_speculations_cancelled_total",
                 "draftgate_speculations_used_total", "draftgate_speculation_wasted_tokens_total",
                 "draftgate_cache_lookups_total", "draftgate_upstream_errors_total", "draftgate_router_in_flight"):
        assert name in text, name
    assert "histogram_quantile(0.99" in text and "histogram_quantile(0.5" in text


def test_dashboard_panels_do_not_overlap():
    """Rows added by different hands keep to their own space (Grafana would push one under the other)."""
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_the_edge_metrics():
    """Issue #13's edge: refusals at admission, degraded answers, ledger records on both ends, sessions."""
    text = " ".join(dashboard_exprs())
    for name in ("draftgate_gateway_refused_total", "draftgate_degraded_total", "draftgate_degraded_rejected_total",
                 "draftgate_ledger_records_total", "draftgate_ledger_rows_total", "draftgate_session_turns_total"):
        assert name in text, name


def test_dashboard_is_a_well_formed_grafana_dashboard():
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for variable, filename in (("datasource", "prometheus.yml"), ("ledger", "ledger.yml")):
        [provisioned] = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / filename)["datasources"]
        assert variables[variable]["type"] == "datasource" and variables[variable]["query"] == provisioned["type"]
        assert variables[variable]["current"]["value"] == provisioned["uid"]
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert panel["title"] and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "heatmap", "gauge", "bargauge", "table"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        assert panel["datasource"] in (PROMETHEUS_SOURCE, LEDGER_SOURCE), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            if target["datasource"] == PROMETHEUS_SOURCE:
                assert target["expr"].strip()
            else:
                assert target["rawQuery"] and target["rawSql"].strip() and target["format"] in {"time_series", "table"}
    assert dashboard_targets(PROMETHEUS_SOURCE) and dashboard_targets(LEDGER_SOURCE)
