"""`calibrate fit --from-audit` against a real Redis: audited drafts published on the audit's labelled stream
as the auditor publishes them (msgpack AuditLabel under the message field; for the refit, labels made by the
auditor's own code, services/router/audit/verdicts.py) are read back page by page, a broken entry is skipped
and counted, and the step run as a process refits, exports and writes the config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from services.router import calibrate
from services.router.audit import verdicts
from services.router.calibration import audit_source
from services.router.risk import load_policy, risk
from shared.config import load_config
from shared.keys import AUDIT_LABELLED_STREAM, MESSAGE_FIELD
from shared.messages import AuditLabel, AuditSample, encode
from tests.unit.test_calibration_audit import code_prompt, confidently_wrong_on_code, plain_prompt
from tests.unit.test_calibration_fit import trace_tokens, write_dataset

pytestmark = pytest.mark.redis_flavours
ROOT = Path(__file__).resolve().parents[2]


def as_the_auditor_labels(labels: list[AuditLabel]) -> list[AuditLabel]:
    """The same drafts and verdicts, labelled by the auditor's own code from the sample the router queues."""
    out = []
    for lab in labels:
        sample = AuditSample(request_id=lab.request_id, body={"messages": lab.messages, "max_tokens": 32},
                             text=lab.trace["text"], tokens=lab.trace["tokens"], top_k=lab.trace["top_k"],
                             model=lab.trace["model"], tenant=lab.tenant, finish_reason="stop")
        audit = verdicts.Audit(verdict=lab.verdict, method=verdicts.SIMILARITY, similarity=lab.similarity,
                               heavy_text="the answer", heavy_usage={"prompt_tokens": 12, "completion_tokens": 8},
                               heavy_model="fake-heavy", detail="cosine")
        out.append(verdicts.label(sample, audit, now=1.0))
    return out


def publish(url: str, labels: list[AuditLabel], broken: int = 0) -> None:
    client = redis.Redis.from_url(url)
    try:
        for i, label in enumerate(labels):
            client.xadd(AUDIT_LABELLED_STREAM, {MESSAGE_FIELD: encode(label)})
            if i < broken:
                client.xadd(AUDIT_LABELLED_STREAM, {MESSAGE_FIELD: b"not msgpack \xc1"})
    finally:
        client.close()


def test_the_stream_is_read_whole_page_by_page(redis_url: str) -> None:
    labels = confidently_wrong_on_code(23)
    publish(redis_url, labels, broken=2)
    read, broken = audit_source.read_redis(redis_url, page=5)  # 25 entries: five full pages, then an empty one
    assert read == labels and broken == 2
    assert audit_source.read_redis(redis_url, page=25) == (labels, 2)
    assert redis.Redis.from_url(redis_url).xlen(AUDIT_LABELLED_STREAM) == 25  # read, never consumed


def test_fit_from_audit_on_the_redis_stream_refits_exports_and_writes_the_config(redis_url: str,
                                                                                 tmp_path: Path) -> None:
    prompts, traces, grades = write_dataset(tmp_path)
    running = tmp_path / "running.json"
    assert calibrate.main(["fit", "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts),
                           "--out", str(running), "--no-embedding", "--quiet", "--max-escalation", "0.4"]) == 0
    publish(redis_url, as_the_auditor_labels(confidently_wrong_on_code(40)), broken=1)
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text())
    out, export, comparison = tmp_path / "new.json", tmp_path / "audit.jsonl", tmp_path / "comparison.json"
    command = [sys.executable, "-m", "services.router.calibrate", "fit", "--from-audit", "--redis-url", redis_url,
               "--traces", str(traces), "--grades", str(grades), "--prompts", str(prompts), "--policy", str(running),
               "--no-embedding", "--quiet", "--max-escalation", "0.4", "--export-audit", str(export),
               "--comparison-out", str(comparison), "--out", str(out), "--write-config", str(config)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 stream entries were not audit labels" in done.stderr
    assert f"exported 40 audited drafts to {export}" in done.stdout
    assert "audited drafts: 40 usable (20 judged wrong)" in done.stdout
    assert f"policy written to {out}" in done.stdout
    result = json.loads(comparison.read_text())["comparison"]["trace_only"]
    assert result["new"]["auroc"]["auroc"] > result["running"]["auroc"]["auroc"] + 0.2
    new, old = load_policy(out), load_policy(running)
    sure = trace_tokens([0.1] * 12)
    assert risk(old, sure, code_prompt(500)).accept and not risk(new, sure, code_prompt(500)).accept
    assert risk(new, sure, plain_prompt(500)).accept
    routing = load_config(config).routing
    assert routing.policy == "learned" and routing.risk_model == str(out)
    assert audit_source.read_export(export) == audit_source.read_redis(redis_url)[0]


def test_an_unreachable_redis_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = calibrate.main(["fit", "--from-audit", "--redis-url", "redis://127.0.0.1:1/0", "--quiet",
                             "--no-embedding"])
    assert status == 2
    assert "cannot read the audited drafts" in capsys.readouterr().err
