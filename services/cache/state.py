"""Typed keys for what the cache service's handlers share."""

from __future__ import annotations

from aiohttp import web

from services.cache.core import Cache
from services.cache.stats import CacheMetrics
from shared.config import Config

CONFIG = web.AppKey("config", Config)
CACHE = web.AppKey("cache", Cache)
METRICS = web.AppKey("metrics", CacheMetrics)
