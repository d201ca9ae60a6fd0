"""structlog set-up shared by every service: key=value lines for people, JSON for machines."""

from __future__ import annotations

import logging
import sys

import structlog

from shared.config import LoggingConfig


def configure_logging(config: LoggingConfig, service: str) -> None:
    level = getattr(logging, config.level.upper())
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    renderer = structlog.processors.JSONRenderer() if config.json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
