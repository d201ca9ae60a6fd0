"""HTTP glue of the embedder: parse, wait for the batch, answer in OpenAI's shape."""

from __future__ import annotations

import json

import openai
from aiohttp import web

from services.embedder.batcher import BatcherClosed
from services.embedder.protocol import build_response, parse_request
from services.embedder.state import BACKEND, BATCHER, CONFIG, METRICS
from shared import __version__
from shared.errors import InvalidRequest, NotFound, Unavailable, UpstreamFailed


async def embeddings(request: web.Request) -> web.Response:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None
    parsed = parse_request(data)
    backend = request.app[BACKEND]
    if not backend.serves(parsed.model):
        raise NotFound(f"The model {parsed.model!r} does not exist here; this embedder serves {backend.model!r}.",
                       param="model", code="model_not_found")
    try:
        batch = await request.app[BATCHER].embed(parsed.texts)
    except openai.APIError as exc:
        raise UpstreamFailed(f"The embeddings upstream failed: {type(exc).__name__}") from exc
    except BatcherClosed as exc:
        raise Unavailable(str(exc)) from exc
    if parsed.dimensions is not None and parsed.dimensions != batch.vectors.shape[1]:
        raise InvalidRequest(f"{backend.model} produces {batch.vectors.shape[1]} dimensions only.",
                             param="dimensions")
    metrics = request.app[METRICS]
    metrics.requests.inc()
    metrics.inputs.inc(len(parsed.texts))
    return web.Response(text=build_response(batch, backend.model, parsed.encoding_format),
                        content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__, "backend": request.app[CONFIG].embedder.backend,
                              "model": request.app[BACKEND].model})
