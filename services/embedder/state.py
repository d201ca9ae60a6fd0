"""Typed keys for what the embedder's handlers share."""

from __future__ import annotations

from aiohttp import web

from services.embedder.backends import EmbeddingBackend
from services.embedder.batcher import MicroBatcher
from services.embedder.metrics import EmbedderMetrics
from shared.config import Config

CONFIG = web.AppKey("config", Config)
BACKEND = web.AppKey("backend", EmbeddingBackend)
BATCHER = web.AppKey("batcher", MicroBatcher)
METRICS = web.AppKey("metrics", EmbedderMetrics)
