"""The real all-MiniLM-L6-v2, loaded once per test process and shared by every embedder app."""

from __future__ import annotations

import functools

from aiohttp import web

from services.embedder.app import create_app
from services.embedder.backends import LocalBackend, load_local_encoder
from shared.config import load_config


@functools.cache
def local_backend() -> LocalBackend:
    return LocalBackend(load_local_encoder())


def embedder_app() -> web.Application:
    """An embedder on the shared MiniLM, with the configured batching settings."""
    return create_app(load_config(env={}), backend=local_backend())
