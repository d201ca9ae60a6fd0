"""Typed keys for what the ledger service's handlers share."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger.metrics import LedgerMetrics
from services.ledger.writer import Schema
from shared.config import Config
from shared.supervise import Loops

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
REDIS = web.AppKey("redis", Redis)
LOOPS = web.AppKey("loops", Loops)
METRICS = web.AppKey("metrics", LedgerMetrics)
SCHEMA = web.AppKey("schema", Schema)  # ready once Alembic's upgrade ran in this process
