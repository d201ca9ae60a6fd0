"""What every `python -m services.<name>` does: load config, set up logs, serve on uvloop."""

from __future__ import annotations

import sys
from typing import Any

import uvloop
from aiohttp import web

from shared.config import Config, ConfigError, load_config
from shared.logging import configure_logging


def start(service: str) -> Config:
    """Load and validate the config; a bad value exits with one line naming the key."""
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"draftgate {service}: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(config.logging, service)
    return config


def serve(app: web.Application, host: str, port: int, **options: Any) -> None:
    """Run the app until SIGTERM/SIGINT on a uvloop event loop: every service spends most of its
    CPU in socket I/O, which uvloop does in C (measured in bench/overhead)."""
    web.run_app(app, host=host, port=port, print=None, loop=uvloop.new_event_loop(), **options)
