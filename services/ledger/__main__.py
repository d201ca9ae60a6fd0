"""python -m services.ledger [serve | migrate | export ...]

  serve (the default)  consume the ledger streams into SQL and answer analytics on ledger.port
  migrate              bring the database at ledger.database_url to the newest schema, then exit
  export               write the ledger rows of a time window as CSV or Parquet
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import BinaryIO

from services.ledger import export
from services.ledger.app import create_app
from services.ledger.database import create_engine, migrate
from services.ledger.params import TIME_HELP, Window, parse_time
from shared.config import Config
from shared.errors import InvalidRequest
from shared.service import exit_on_config_error, serve, start


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the ledger service (the default)")
    commands.add_parser("migrate", help="run the Alembic migrations to head and exit")
    out = commands.add_parser("export", help="export ledger rows as CSV or Parquet",
                              description="Export the rows of ledger_records (or ledger_feedback) whose time is in "
                                          f"[--from, --to). Times: {TIME_HELP}.")
    out.add_argument("--format", choices=export.FORMATS, required=True)
    out.add_argument("--from", dest="start", help="first time included (default: the beginning)")
    out.add_argument("--to", dest="end", help="first time excluded (default: now and later)")
    out.add_argument("--tenant", help="only this tenant's rows")
    out.add_argument("--table", choices=sorted(export.TABLES), default="records")
    out.add_argument("--out", default="-", help="the file to write (default: standard output)")
    return parser.parse_args(argv)


def window(args: argparse.Namespace) -> Window:
    try:
        start = parse_time(args.start, "from") if args.start else None
        end = parse_time(args.end, "to") if args.end else None
    except InvalidRequest as exc:
        raise SystemExit(f"python -m services.ledger export: {exc.message}") from None
    if start is not None and end is not None and end <= start:
        raise SystemExit("python -m services.ledger export: --to must be later than --from")
    return Window(start, end, None, args.tenant)


def output(path: str) -> AbstractContextManager[BinaryIO]:
    return nullcontext(sys.stdout.buffer) if path == "-" else Path(path).open("wb")


async def run_migrate(config: Config) -> None:
    engine = create_engine(config.ledger.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def run_export(config: Config, args: argparse.Namespace) -> int:
    rows = window(args)
    engine = create_engine(config.ledger.database_url)
    try:
        await migrate(engine)  # an empty ledger exports an empty file, not an error
        with output(args.out) as out:
            return await export.write(engine, args.table, rows, args.format, out)
    finally:
        await engine.dispose()


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    config = start("ledger")
    if args.command == "migrate":
        asyncio.run(run_migrate(config))
        print(f"ledger schema at head ({config.ledger.database_url.split('://')[0]})", file=sys.stderr)
    elif args.command == "export":
        rows = asyncio.run(run_export(config, args))
        print(f"exported {rows} rows", file=sys.stderr)
    else:
        with exit_on_config_error("ledger"):
            app = create_app(config)
        serve(app, config.ledger.host, config.ledger.port, handler_cancellation=True)


main(sys.argv[1:])
