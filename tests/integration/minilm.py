"""The real all-MiniLM-L6-v2, loaded once per test process and shared by every embedder app."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from services.embedder.app import create_app
from services.embedder.backends import LocalBackend, load_local_encoder
from shared.config import load_config


@functools.cache
def local_backend() -> LocalBackend:
    """Loaded on the thread that will encode, as LocalBackend.load() does."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
    return LocalBackend(executor.submit(load_local_encoder).result(), executor)


def embedder_app() -> web.Application:
    """An embedder on the shared MiniLM, with the configured batching settings."""
    return create_app(load_config(env={}), backend=local_backend())
