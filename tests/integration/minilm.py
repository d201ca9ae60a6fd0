"""The real all-MiniLM-L6-v2, loaded once per test process and shared by every embedder app.

It is the configured local backend (onnx by default, from the export `make install` writes), so the
cache tests embed exactly as a deployed embedder does.
"""

from __future__ import annotations

import functools

from aiohttp import web

from services.embedder.app import create_app
from services.embedder.backends import LocalBackend, open_local_backend
from shared.config import load_config


@functools.cache
def local_backend() -> LocalBackend:
    return open_local_backend(load_config(env={}).embedder)


def embedder_app() -> web.Application:
    """An embedder on the shared MiniLM, with the configured batching settings."""
    return create_app(load_config(env={}), backend=local_backend())
