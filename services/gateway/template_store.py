"""Where templates live: gateway.templates (read-only, checked at start) and the TEMPLATES hash in
Redis (POST /admin/templates), shared by every gateway pod. A config template's id cannot be
taken by an API one."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from services.gateway.templates import Template, TemplateError, check
from shared.config import ConfigError, GatewayConfig
from shared.keys import TEMPLATES


def configured(config: GatewayConfig) -> dict[str, Template]:
    """The config's templates by id; ConfigError names the first unusable one."""
    templates = {}
    for index, item in enumerate(config.templates):
        try:
            check(item.id, item.system)
        except TemplateError as exc:
            raise ConfigError(f"gateway.templates[{index}] ({item.id!r}): {exc}") from None
        templates[item.id] = Template(item.id, item.system, item.description, source="config")
    return templates


def _decode(template_id: str, raw: bytes) -> Template | None:
    try:
        data = orjson.loads(raw)
        return Template(template_id, str(data["system"]), str(data.get("description", "")), source="api")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def find(redis: Redis, config_templates: dict[str, Template], template_id: str) -> Template | None:
    """A config template without a round trip; an API one from Redis."""
    found = config_templates.get(template_id)
    if found is not None:
        return found
    raw = await redis.hget(TEMPLATES, template_id)
    return None if raw is None else _decode(template_id, raw)


async def listing(redis: Redis, config_templates: dict[str, Template]) -> list[Template]:
    stored = await redis.hgetall(TEMPLATES)
    api = [_decode(key.decode() if isinstance(key, bytes) else key, raw) for key, raw in stored.items()]
    extra = sorted((t for t in api if t is not None and t.id not in config_templates), key=lambda t: t.id)
    return [*config_templates.values(), *extra]


async def put(redis: Redis, template: Template) -> bool:
    """Store (or replace) an API template; True when it is new."""
    value = orjson.dumps({"system": template.system, "description": template.description})
    return bool(await redis.hset(TEMPLATES, template.id, value))


async def remove(redis: Redis, template_id: str) -> bool:
    return bool(await redis.hdel(TEMPLATES, template_id))
