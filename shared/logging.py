"""structlog set-up shared by every service: key=value lines for people, JSON for machines.

No secret reaches a line: structured values are redacted by name and content before rendering, and
the rendered line once more (exception tracebacks, reprs of objects holding URLs); records from the
standard library's loggers (aiohttp, httpx, the SDKs) pass the same redaction. See shared/redact.py.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.config import LoggingConfig
from shared.redact import REDACTOR, Redactor


def configure_logging(config: LoggingConfig, service: str, redactor: Redactor = REDACTOR) -> None:
    level = getattr(logging, config.level.upper())
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))
    renderer = structlog.processors.JSONRenderer() if config.json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            redact_event(redactor),
            redact_rendered(renderer, redactor),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def redact_event(redactor: Redactor) -> Processor:
    def processor(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        return {key: redactor.value(value, key) for key, value in event.items()}
    return processor


def redact_rendered(renderer: Processor, redactor: Redactor) -> Processor:
    """The renderer, then the text pass over its output: what the event pass cannot see (the repr
    of an exception or of an object holding a URL) is redacted in the line itself."""
    def processor(logger: WrappedLogger, method: str, event: EventDict) -> Any:
        line = renderer(logger, method, event)
        return redactor.text(line) if isinstance(line, str) else line
    return processor


class RedactingFilter(logging.Filter):
    """The same redaction for records of the standard library's loggers."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redactor.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.text(record.exc_text)
        return True
