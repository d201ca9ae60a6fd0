"""Wire types of POST /v1/embeddings, in OpenAI's shape: the request model and the response builder.

Responses are serialised by pydantic-core (model_dump_json), about ten times faster than
json.dumps on float lists. base64 is float32 little-endian, what the openai client asks for by default.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from openai.types import CreateEmbeddingResponse, Embedding
from openai.types.create_embedding_response import Usage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.embedder.backends import Batch
from shared.errors import InvalidRequest

MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def parse_request(data: Any) -> EmbeddingRequest:
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    if _is_token_array(data.get("input")):
        raise InvalidRequest("Token arrays are not supported here: send input as a string or a list of strings.",
                             param="input", code="unsupported_input")
    try:
        request = EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = str(error["loc"][0]) if error["loc"] else None
        raise InvalidRequest(f"{param}: {error['msg']}" if param else error["msg"], param=param) from None
    if not request.texts:
        raise InvalidRequest("input must not be an empty list.", param="input")
    if len(request.texts) > MAX_INPUTS:
        raise InvalidRequest(f"input may hold at most {MAX_INPUTS} strings, got {len(request.texts)}.",
                             param="input")
    return request


def build_response(batch: Batch, model: str, encoding_format: str) -> str:
    """The JSON text of a CreateEmbeddingResponse for these rows."""
    tokens = sum(batch.tokens)
    usage = Usage(prompt_tokens=tokens, total_tokens=tokens)
    if encoding_format == "base64":
        # Embedding types the field as list[float]; the base64 string is what the wire carries instead.
        rows = batch.vectors.astype("<f4", copy=False)
        data = [Embedding.model_construct(embedding=base64.b64encode(row.tobytes()).decode(), index=i,
                                          object="embedding") for i, row in enumerate(rows)]
        response = CreateEmbeddingResponse.model_construct(data=data, model=model, object="list", usage=usage)
        return response.model_dump_json(warnings=False)
    data = [Embedding(embedding=row, index=i, object="embedding") for i, row in enumerate(batch.vectors.tolist())]
    return CreateEmbeddingResponse(data=data, model=model, object="list", usage=usage).model_dump_json()


def _is_token_array(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    return isinstance(first, int) or (isinstance(first, list) and bool(first) and isinstance(first[0], int))
