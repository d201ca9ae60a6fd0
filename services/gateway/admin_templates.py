"""The template admin API (admin key required: services/gateway/operator.py closes every /admin path):
POST /admin/templates {id, system, description} creates or replaces an API template (201 / 200),
GET /admin/templates lists config and API templates, GET / DELETE /admin/templates/{id}.
Config templates are read-only: replacing or deleting one is a 409."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from services.gateway import template_store
from services.gateway.state import REDIS, TEMPLATES_CONFIGURED
from services.gateway.templates import Template, TemplateError, check
from shared.errors import InvalidRequest, NotFound, Unavailable

READ_ONLY = 409


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    return body


def template_from(body: dict[str, Any]) -> Template:
    """The template a POST body describes; a 400 naming the field that is wrong."""
    for name, required in (("id", True), ("system", True), ("description", False)):
        value = body.get(name)
        if value is None and not required:
            continue
        if value is None:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name,
                                 code="missing_required_parameter")
        if not isinstance(value, str):
            raise InvalidRequest(f"Invalid type for '{name}': expected a string.", param=name, code="invalid_type")
    template_id, system = body["id"], body["system"]
    try:
        check(template_id, system)
    except TemplateError as exc:
        param = "id" if str(exc).startswith("the id") else "system"
        raise InvalidRequest(f"Invalid template {param}: {exc}.", param=param, code="invalid_template") from None
    return Template(template_id, system, body.get("description") or "", source="api")


def _not_found(template_id: str) -> NotFound:
    return NotFound(f"The template `{template_id}` does not exist.", param="id", code="template_not_found")


def _read_only(template_id: str) -> InvalidRequest:
    return InvalidRequest(f"The template `{template_id}` comes from the configuration (gateway.templates) and is "
                          "read-only.", param="id", code="template_read_only", status=READ_ONLY)


async def create_template(request: web.Request) -> web.Response:
    template = template_from(_body(await request.read()))
    if template.id in request.app[TEMPLATES_CONFIGURED]:
        raise _read_only(template.id)
    try:
        created = await template_store.put(request.app[REDIS], template)
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; the template was not stored.", code="redis_unavailable") from exc
    return web.json_response(template.to_json(), status=201 if created else 200)


async def list_templates(request: web.Request) -> web.Response:
    try:
        templates = await template_store.listing(request.app[REDIS], request.app[TEMPLATES_CONFIGURED])
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; templates cannot be listed.", code="redis_unavailable") from exc
    return web.json_response({"object": "list", "data": [template.to_json() for template in templates]})


async def get_template(request: web.Request) -> web.Response:
    template_id = request.match_info["template_id"]
    try:
        template = await template_store.find(request.app[REDIS], request.app[TEMPLATES_CONFIGURED], template_id)
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; the template cannot be read.", code="redis_unavailable") from exc
    if template is None:
        raise _not_found(template_id)
    return web.json_response(template.to_json())


async def delete_template(request: web.Request) -> web.Response:
    template_id = request.match_info["template_id"]
    if template_id in request.app[TEMPLATES_CONFIGURED]:
        raise _read_only(template_id)
    try:
        removed = await template_store.remove(request.app[REDIS], template_id)
    except RedisError as exc:
        raise Unavailable("Redis is unavailable; the template was not deleted.", code="redis_unavailable") from exc
    if not removed:
        raise _not_found(template_id)
    return web.json_response({"id": template_id, "object": "template", "deleted": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/templates", create_template)
    app.router.add_get("/admin/templates", list_templates)
    # [^/]+: any segment reaches the handler (and the operator middleware's key check first), braces included
    app.router.add_get("/admin/templates/{template_id:[^/]+}", get_template)
    app.router.add_delete("/admin/templates/{template_id:[^/]+}", delete_template)
