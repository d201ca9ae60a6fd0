"""draftgate's own common library: config, wire messages, the Redis-stream bus, errors."""

__version__ = "0.1.0"
