"""What every `python -m services.<name>` does: load config, set up logs, serve on uvloop."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

import uvloop
from aiohttp import web

from shared.config import Config, ConfigError, StartRefused, load_config
from shared.logging import configure_logging
from shared.redact import REDACTOR, config_secrets


def start(service: str) -> Config:
    """Load and validate the config; a bad value exits with one line naming the key."""
    with exit_on_config_error(service):
        config = load_config()
    REDACTOR.add(*config_secrets(config, os.environ))  # every key and URL password the config names
    configure_logging(config.logging, service)
    return config


@contextlib.contextmanager
def exit_on_config_error(service: str) -> Iterator[None]:
    """A ConfigError raised while setting up (a bad key, or a refusal to start as configured)
    exits with status 2 and one line on stderr saying why."""
    try:
        yield
    except StartRefused as exc:
        print(f"draftgate {service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"draftgate {service}: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# Each request allocates thousands of short-lived dicts (chunks, log-probs); at the default
# 700 the collector ran 2,700 times in 4,700 routed requests and took 18% of the router's CPU.
GC_GEN0_THRESHOLD = 20_000


def serve(app: web.Application, host: str, port: int, **options: Any) -> None:
    """Run the app until SIGTERM/SIGINT on a uvloop event loop: every service spends most of its
    CPU in socket I/O, which uvloop does in C (measured in bench/overhead)."""
    tune_gc()
    web.run_app(app, host=host, port=port, print=None, loop=uvloop.new_event_loop(), **options)


def tune_gc() -> None:
    """What start-up built (modules, the SDK's type tables) lives as long as the process, so it
    is frozen out of the collector's scans, and young collections run less often."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
