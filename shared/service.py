"""What every `python -m services.<name>` does before serving: load config, set up logs."""

from __future__ import annotations

import sys

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
