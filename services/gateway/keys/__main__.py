"""python -m services.gateway.keys create|list|show|revoke: virtual keys from the command line.

Talks to the Redis of the configuration (config.yaml, DRAFTGATE_* overrides, or --config), as the
gateways do; no gateway needs to be running.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from services.gateway.chat import served_models
from services.gateway.keys import store
from services.gateway.keys.model import parse_spec
from shared.config import Config, load_config
from shared.errors import ApiError
from shared.redact import redact_url
from shared.redis_client import connect
from shared.service import exit_on_config_error

OVERVIEW = """\
Make, list and revoke draftgate's virtual keys. A key (sk-dg-...) is shown once, when it is made:
Redis keeps only its SHA-256. Each key has a tenant (whose spend and cache it shares), the models it
may use, requests and tokens per minute, USD budgets per UTC day and month, and an expiry; every
limit is optional. The gateway checks all of it on every request, across every gateway pod.

examples:
  python -m services.gateway.keys create --tenant acme --rpm 60 --tpm 100000 --budget-day 5
  python -m services.gateway.keys create --tenant acme --models drafter,auto --expires-in 30d
  python -m services.gateway.keys list
  python -m services.gateway.keys revoke vk_0123456789abcdef"""


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m services.gateway.keys", description=OVERVIEW,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--config", metavar="PATH", help="the YAML config (default: the repository's config.yaml); "
                      "DRAFTGATE_REDIS_URL and the other DRAFTGATE_* variables override it as for the services")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="make a key and print it (once)",
                                 description="Make a key. Limits left out are off.")
    create.add_argument("--tenant", default="", help="who the key belongs to: keys of one tenant share its "
                        "cache entries and are grouped in analytics (default: the key's own id)")
    create.add_argument("--name", default="", help="a label for people (e.g. 'ci pipeline')")
    create.add_argument("--models", default="", metavar="NAMES",
                        help="comma-separated tiers (auto, drafter, heavyweight), tier models or deployment "
                             "names the key may use (default: all). A tier allows its deployments; auto allows "
                             "automatic routing")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute (every upstream call's prompt + completion)")
    create.add_argument("--budget-day", type=float, metavar="USD", help="spend allowed per UTC day")
    create.add_argument("--budget-month", type=float, metavar="USD", help="spend allowed per UTC month")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", metavar="DURATION", help="e.g. 3600, 90m, 12h, 30d, 2w")
    expiry.add_argument("--expires-at", metavar="TIME", help="an ISO 8601 time (UTC unless it says otherwise)")
    create.add_argument("--json", action="store_true", help="print the key's record as JSON")
    listing = commands.add_parser("list", help="list every key (never the key itself) with today's spend",
                                  description="List every key, revoked and expired ones too.")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = commands.add_parser("show", help="one key's record and spend", description="Show one key by id.")
    show.add_argument("id", help="the key's id (vk_...)")
    revoke = commands.add_parser("revoke", help="revoke a key (at once, on every gateway)",
                                 description="Revoke a key by id: its requests are 401s from now on. "
                                             "The record stays, listed as revoked.")
    revoke.add_argument("id", help="the key's id (vk_...)")
    return main


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI's options as POST /admin/keys's body: one validation for both."""
    fields: dict[str, Any] = {"tenant": args.tenant, "name": args.name, "rpm": args.rpm, "tpm": args.tpm,
                              "budget_usd_day": args.budget_day, "budget_usd_month": args.budget_month}
    if args.models:
        fields["models"] = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.expires_in:
        fields["expires_in"] = args.expires_in
    if args.expires_at:
        fields["expires_at"] = args.expires_at
    return fields


async def run(args: argparse.Namespace, config: Config) -> int:
    redis = connect(config.redis)
    now = time.time()
    try:
        if args.command == "create":
            spec = parse_spec(spec_fields(args), [name for name in served_models(config) if name], now)
            key, secret = await store.create(redis, spec, now)
            record = {**key.public(now=now), "key": secret}
            if args.json:
                print(orjson.dumps(record).decode())
            else:
                print(f"{secret}\n\nid {key.id}, tenant {key.tenant}. This is the only time the key is shown: "
                      "keep it now.", file=sys.stdout)
            return 0
        if args.command == "list":
            keys = [key for key in await store.list_keys(redis, now) if args.tenant in (None, key["tenant"])]
            print(orjson.dumps(keys, option=orjson.OPT_INDENT_2).decode() if args.json else table(keys))
            return 0
        if args.command == "show":
            found = await store.show(redis, args.id, now)
            if found is None:
                print(f"no key has the id {args.id}", file=sys.stderr)
                return 1
            print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
            return 0
        revoked = await store.revoke(redis, args.id, now)
        if revoked is None:
            print(f"no key has the id {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {revoked.id} (tenant {revoked.tenant})")
        return 0
    finally:
        await redis.aclose()


COLUMNS = ("id", "tenant", "name", "status", "models", "rpm", "tpm", "budget/day", "spent/day", "budget/month",
           "spent/month", "expires")


def table(keys: list[dict[str, Any]]) -> str:
    if not keys:
        return "no virtual keys"
    rows = [COLUMNS, *([key["id"], key["tenant"], key["name"] or "-", key["status"], ",".join(key["models"]) or "all",
                        _n(key["rpm"]), _n(key["tpm"]), _n(key["budget_usd_day"]), f"{key['spend_usd_day']:.4f}",
                        _n(key["budget_usd_month"]), f"{key['spend_usd_month']:.4f}", _time(key["expires_at"])]
                       for key in keys)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _n(value: object) -> str:
    return "-" if value is None else str(value)


def _time(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with exit_on_config_error("keys"):
        config = load_config(args.config)
    try:
        return asyncio.run(run(args, config))
    except ApiError as exc:  # a bad option: the same message the admin API gives
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"error: cannot reach Redis at {redact_url(config.redis.url)}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
