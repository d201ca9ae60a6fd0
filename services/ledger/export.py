"""`python -m services.ledger export`: ledger rows of a time window as CSV or Parquet, streamed from
the database in chunks (memory stays flat however large the window)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger.analytics import tenant_filter
from services.ledger.params import Window
from services.ledger.schema import feedback, records

TABLES = {"records": records, "feedback": feedback}
FORMATS = ("csv", "parquet")
CHUNK_ROWS = 10_000


def query(table: sa.Table, window: Window) -> sa.Select[Any]:
    where = []
    if window.start is not None:
        where.append(table.c.time >= window.start)
    if window.end is not None:
        where.append(table.c.time < window.end)
    if window.tenant is not None:
        where.append(tenant_filter(table.c.tenant, window.tenant))
    order = table.c.request_id if table is records else table.c.id
    return sa.select(table).where(*where).order_by(table.c.time, order)


async def chunks(engine: AsyncEngine, statement: sa.Select[Any]) -> AsyncIterator[list[dict[str, Any]]]:
    async with engine.connect() as conn:
        result = await conn.stream(statement.execution_options(yield_per=CHUNK_ROWS))
        async for partition in result.mappings().partitions(CHUNK_ROWS):
            yield [dict(row) for row in partition]


def arrow_schema(table: sa.Table) -> pa.Schema:
    return pa.schema([pa.field(column.name, _arrow_type(column.type), nullable=column.nullable)
                      for column in table.columns])


def _arrow_type(kind: sa.types.TypeEngine[Any]) -> pa.DataType:
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):  # BigInteger too
        return pa.int64()
    if isinstance(kind, sa.Float):
        return pa.float64()
    return pa.string()  # strings, and JSON as its text


def json_columns(table: sa.Table) -> list[str]:
    return [column.name for column in table.columns if isinstance(column.type, sa.JSON)]


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # SQLite hands back naive UTC
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


async def write(engine: AsyncEngine, table_name: str, window: Window, fmt: str, out: BinaryIO) -> int:
    """Write the rows; returns how many."""
    table = TABLES[table_name]
    as_json = json_columns(table)
    names = [column.name for column in table.columns]  # the order select(table) returns them in
    rows = 0
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        writer.writerow(names)
        async for chunk in chunks(engine, query(table, window)):
            writer.writerows([[csv_cell(value) for value in _jsonify(row, as_json).values()] for row in chunk])
            rows += len(chunk)
        text.flush()
        text.detach()
        return rows
    schema = arrow_schema(table)
    with pq.ParquetWriter(out, schema) as parquet:
        async for chunk in chunks(engine, query(table, window)):
            parquet.write_table(pa.Table.from_pylist([_jsonify(row, as_json) for row in chunk], schema))
            rows += len(chunk)
    return rows


def _jsonify(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    for name in columns:
        row[name] = json.dumps(row[name], separators=(",", ":"))
    return row
