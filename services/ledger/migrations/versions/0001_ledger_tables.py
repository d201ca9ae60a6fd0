"""ledger_records and ledger_feedback

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TOKEN_COLUMNS = (
    "prompt_tokens", "completion_tokens", "drafter_prompt_tokens", "drafter_completion_tokens",
    "heavyweight_prompt_tokens", "heavyweight_completion_tokens", "aborted_draft_prompt_tokens",
    "aborted_draft_completion_tokens", "wasted_speculation_prompt_tokens", "wasted_speculation_completion_tokens",
)


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.String, nullable=False, server_default="")


def upgrade() -> None:
    op.create_table(
        "ledger_records",
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        _text("key_id"), _text("tenant"), _text("template_id"), _text("session_id"), _text("model"),
        _text("served_model"),
        sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("status", sa.Integer, nullable=False),
        _text("decision"), _text("tier"), _text("deployment"), _text("cache"), _text("error"),
        sa.Column("degraded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("draft_entropy", sa.Float),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in TOKEN_COLUMNS),
        sa.Column("cost_usd", sa.Float),
        sa.Column("baseline_usd", sa.Float),
        sa.Column("saved_usd", sa.Float),
        sa.Column("calls", sa.JSON, nullable=False),
    )
    op.create_index("ix_ledger_records_time", "ledger_records", ["time"])
    op.create_index("ix_ledger_records_tenant_time", "ledger_records", ["tenant", "time"])
    op.create_index("ix_ledger_records_key_time", "ledger_records", ["key_id", "time"])
    op.create_index("ix_ledger_records_template_time", "ledger_records", ["template_id", "time"])
    op.create_table(
        "ledger_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String, nullable=False),
        sa.Column("verdict", sa.String, nullable=False),
        _text("comment"), _text("key_id"), _text("tenant"),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("request_id", "key_id", "time", "verdict", name="uq_ledger_feedback_delivery"),
    )
    op.create_index("ix_ledger_feedback_request", "ledger_feedback", ["request_id"])


def downgrade() -> None:
    op.drop_table("ledger_feedback")
    op.drop_table("ledger_records")
