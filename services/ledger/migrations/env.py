"""Alembic's environment for the ledger: always run over the connection services.ledger.migrate
passes in (online mode only)."""

from __future__ import annotations

from alembic import context

from services.ledger.migrate import VERSION_TABLE
from services.ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the ledger's migrations with `python -m services.ledger migrate`")

context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
