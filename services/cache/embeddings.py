"""The cache's client for the embedder service (OpenAI /v1/embeddings shape over HTTP).

Vectors travel as base64 float32, as the openai client does: smaller and faster than JSON floats.
Any failure becomes EmbedderUnavailable so callers can degrade to a miss.
"""

from __future__ import annotations

import base64

import aiohttp
import numpy as np


class EmbedderUnavailable(Exception):
    """The embedder could not be reached or answered with something unusable."""


class EmbedderClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, model: str, timeout_s: float) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/v1/embeddings"
        self._model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def embed(self, texts: list[str], timeout_s: float | None = None) -> list[list[float]]:
        """timeout_s: this call's, if not the client's (a write can wait longer than a lookup)."""
        payload = {"model": self._model, "input": texts, "encoding_format": "base64"}
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._session.post(self._url, json=payload, timeout=timeout) as response:
                if response.status != 200:
                    raise EmbedderUnavailable(f"embedder answered {response.status}: {await response.text()}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EmbedderUnavailable(f"embedder unreachable: {exc!r}") from exc
        return _vectors(body, len(texts))


def _vectors(body: object, expected: int) -> list[list[float]]:
    try:
        data = sorted(body["data"], key=lambda item: item["index"])  # type: ignore[index]
        vectors = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist() for item in data]
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbedderUnavailable(f"malformed embeddings response: {exc!r}") from exc
    if len(vectors) != expected:
        raise EmbedderUnavailable(f"expected {expected} embeddings, got {len(vectors)}")
    return vectors
