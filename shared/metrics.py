"""Prometheus plumbing: each app owns a registry (tests start from zero) served at /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

REGISTRY = web.AppKey("registry", CollectorRegistry)


def add_metrics_route(app: web.Application, registry: CollectorRegistry) -> None:
    app[REGISTRY] = registry
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
