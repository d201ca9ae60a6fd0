"""Alembic, driven from code: the migrations in migrations/ applied over a connection we already
hold (no alembic.ini; `python -m services.ledger migrate` runs this alone)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).parent / "migrations"
# Not Alembic's default name: the ledger may share a database with other applications' migrations.
VERSION_TABLE = "ledger_alembic_version"


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
