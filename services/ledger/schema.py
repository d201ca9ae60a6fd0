"""The ledger's tables (SQLAlchemy Core). Alembic's migrations in migrations/versions/ create them;
a change here needs a new revision there."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Token columns filled from the record's account; every one is a sum over the answer's calls.
TOKEN_COLUMNS = (
    "prompt_tokens", "completion_tokens",  # every call the answer made
    "drafter_prompt_tokens", "drafter_completion_tokens",  # the drafter tier's calls, whatever their role
    "heavyweight_prompt_tokens", "heavyweight_completion_tokens",
    "aborted_draft_prompt_tokens", "aborted_draft_completion_tokens",  # drafts escalated away
    "wasted_speculation_prompt_tokens", "wasted_speculation_completion_tokens",  # cancelled speculation
)

records = sa.Table(
    "ledger_records", metadata,
    sa.Column("request_id", sa.String, primary_key=True),  # one row per request, however often delivered
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),  # UTC, when the request arrived
    sa.Column("day", sa.String(10), nullable=False),  # UTC 'YYYY-MM-DD' of time: per-day grouping in any dialect
    sa.Column("key_id", sa.String, nullable=False, server_default=""),
    sa.Column("tenant", sa.String, nullable=False, server_default=""),
    sa.Column("template_id", sa.String, nullable=False, server_default=""),
    sa.Column("session_id", sa.String, nullable=False, server_default=""),
    sa.Column("model", sa.String, nullable=False, server_default=""),  # what the client asked for
    sa.Column("served_model", sa.String, nullable=False, server_default=""),  # the model whose text was served
    sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("decision", sa.String, nullable=False, server_default=""),
    sa.Column("tier", sa.String, nullable=False, server_default=""),
    sa.Column("deployment", sa.String, nullable=False, server_default=""),
    sa.Column("cache", sa.String, nullable=False, server_default=""),  # exact | semantic | miss | "" (no lookup)
    sa.Column("error", sa.String, nullable=False, server_default=""),
    sa.Column("degraded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("latency_ms", sa.Float),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("draft_entropy", sa.Float),
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in TOKEN_COLUMNS),
    sa.Column("cost_usd", sa.Float),  # NULL: a call was unpriced
    sa.Column("baseline_usd", sa.Float),  # the heavyweight alone for the same prompt and answer length
    sa.Column("saved_usd", sa.Float),  # baseline_usd - cost_usd
    sa.Column("calls", sa.JSON, nullable=False),  # the account's calls, as the gateway sent them
    sa.Index("ix_ledger_records_time", "time"),
    sa.Index("ix_ledger_records_tenant_time", "tenant", "time"),
    sa.Index("ix_ledger_records_key_time", "key_id", "time"),
    sa.Index("ix_ledger_records_template_time", "template_id", "time"),
)

feedback = sa.Table(
    "ledger_feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String, nullable=False),
    sa.Column("verdict", sa.String, nullable=False),  # good | bad
    sa.Column("comment", sa.String, nullable=False, server_default=""),
    sa.Column("key_id", sa.String, nullable=False, server_default=""),
    sa.Column("tenant", sa.String, nullable=False, server_default=""),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    # The same verdict delivered twice is one row; a client changing its mind later is a second.
    sa.UniqueConstraint("request_id", "key_id", "time", "verdict", name="uq_ledger_feedback_delivery"),
    sa.Index("ix_ledger_feedback_request", "request_id"),
)
