"""Wire types of the cache service's HTTP API, validated with pydantic; unknown fields pass through."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.cache.keys import is_partition_id
from shared.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: Any = None


class ChatBody(BaseModel):
    """Only what the cache reads from a chat request; the rest passes through untouched."""

    model_config = ConfigDict(extra="allow", strict=True)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    tenant: str = ""
    body: ChatBody
    # How long the caller waits for the answer; absent: gateway.cache_timeout_s, the gateway's wait.
    timeout_s: float | None = Field(default=None, gt=0, le=3600)


class FlushRequest(BaseModel):
    """No field: flush everything; tenant: all of that tenant's entries; partition: one partition."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tenant: str | None = None
    partition: str | None = None

    @field_validator("partition")
    @classmethod
    def _partition_id(cls, value: str | None) -> str | None:
        if value is not None and not is_partition_id(value):
            raise ValueError("must be a partition id (64 lowercase hex characters)")
        return value


def parse(model: type[M], data: Any) -> M:
    """Validate or raise InvalidRequest naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequest(f"{param}: {error['msg']}" if param else error["msg"], param=param) from None
