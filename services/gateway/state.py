"""Typed keys for what the gateway's handlers share."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from services.gateway.auth import Access, Caller
from services.gateway.ledger_out import LedgerOut
from services.gateway.metrics import GatewayMetrics
from services.gateway.replies import ReplyReader
from shared.config import Config
from shared.supervise import Loops

CONFIG = web.AppKey("config", Config)
REDIS = web.AppKey("redis", Redis)
REPLIES = web.AppKey("replies", ReplyReader)
LOOPS = web.AppKey("loops", Loops)  # the supervised background loops (the reply reader's)
HTTP = web.AppKey("http", aiohttp.ClientSession)
METRICS = web.AppKey("metrics", GatewayMetrics)
API_KEYS = web.AppKey("api_keys", frozenset)  # the client keys: access.client_keys
ACCESS = web.AppKey("access", Access)
STARTED = web.AppKey("started", float)
LEDGER_OUT = web.AppKey("ledger_out", LedgerOut)  # set only when ledger.enabled
TEMPLATES_CONFIGURED = web.AppKey("templates_configured", dict)  # gateway.templates: id -> Template
CALLER = web.RequestKey("caller", Caller)  # set on operator endpoints
