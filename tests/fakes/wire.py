"""OpenAI wire bodies for the fake upstream, built with the openai package's own models.

Streaming chunks are rendered once per (script, request shape) into JSON strings without `id` and
`created`; each request only prepends those two, so the hot path does no pydantic work.
Fields are dumped with `exclude_unset`, so the explicit nulls the real API sends (`finish_reason`,
`logprobs`, `usage` when usage is requested) stay, and everything else is omitted.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionTokenLogprob
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction
from openai.types.chat.chat_completion_chunk import ChoiceLogprobs as ChunkLogprobs
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.chat.chat_completion_token_logprob import TopLogprob

from tests.fakes.scripts import Script, ToolCall, planned, token_alternatives

FINGERPRINT = "fp_fake"
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Shape:
    """Everything in a request that changes the reply's bytes apart from id, time and usage."""

    model: str
    logprobs: bool
    top_k: int
    include_usage: bool
    max_tokens: int | None


@dataclass(frozen=True)
class Plan:
    """A rendered reply without id/created: the streaming chunks (role, one per token, final) and the
    whole `chat.completion` without usage."""

    role: str
    tokens: list[str]
    final: str
    whole: str


def _rest(model: ChatCompletionChunk | ChatCompletion) -> str:
    body = model.model_dump(mode="json", exclude_unset=True)
    del body["id"], body["created"]
    return json.dumps(body, separators=(",", ":"))[1:]


def sse(cid: str, created: int, rest: str) -> bytes:
    return f'data: {{"id":"{cid}","created":{created},{rest}\n\n'.encode()


def whole(cid: str, created: int, usage: CompletionUsage, rest: str) -> bytes:
    return f'{{"id":"{cid}","created":{created},"usage":{usage.model_dump_json()},{rest}'.encode()


def _logprob(token: str, bits: float, k: int, sentinel: bool) -> ChatCompletionTokenLogprob:
    chosen, alternatives = token_alternatives(token, bits, k, sentinel)
    tops = [TopLogprob(token=t, logprob=lp, bytes=list(t.encode())) for t, lp in alternatives]
    return ChatCompletionTokenLogprob(token=token, logprob=chosen, bytes=list(token.encode()), top_logprobs=tops)


def _logprobs(script: Script, shape: Shape, tokens: list[str]) -> list[ChatCompletionTokenLogprob] | None:
    if not (shape.logprobs and script.logprobs):
        return None
    return [_logprob(t, b, shape.top_k, script.sentinel) for t, b in zip(tokens, script.bits, strict=False)]


def planned_tokens(script: Script, shape: Shape) -> tuple[list[str], str]:
    """The tokens this request gets and its finish_reason (`length` when max_tokens cuts the script,
    and then no tool call follows)."""
    tokens, finish, _ = planned(script, shape.max_tokens)
    return tokens, finish


def planned_tool_calls(script: Script, finish: str) -> tuple[ToolCall, ...]:
    return () if finish == "length" else script.tool_calls


def tool_call_id(call: ToolCall, index: int) -> str:
    return call.id or f"call_fake_{index}"


def _tool_chunks(shape: Shape, calls: tuple[ToolCall, ...]) -> list[str]:
    """One chunk per argument piece, the first of each call naming it, as OpenAI streams tool calls."""
    chunks = []
    for index, call in enumerate(calls):
        for n, piece in enumerate(call.pieces() or [""]):
            head = {"id": tool_call_id(call, index), "type": "function"} if n == 0 else {}
            function = ChoiceDeltaToolCallFunction(arguments=piece, **({"name": call.name} if n == 0 else {}))
            delta = ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(index=index, function=function, **head)])
            chunks.append(_chunk(shape, ChunkChoice(index=0, delta=delta, logprobs=None, finish_reason=None)))
    return chunks


def _chunk(shape: Shape, choice: ChunkChoice) -> str:
    extra = {"usage": None} if shape.include_usage else {}
    chunk = ChatCompletionChunk(id="", created=0, model=shape.model, object="chat.completion.chunk",
                                system_fingerprint=FINGERPRINT, choices=[choice], **extra)
    return _rest(chunk)


def render(script: Script, shape: Shape) -> Plan:
    tokens, finish = planned_tokens(script, shape)
    logprobs = _logprobs(script, shape, tokens)
    role = ChunkChoice(index=0, delta=ChoiceDelta(role="assistant", content="", refusal=None), logprobs=None,
                       finish_reason=None)
    chunks = []
    for i, token in enumerate(tokens):
        lp = ChunkLogprobs(content=[logprobs[i]], refusal=None) if logprobs is not None else None
        chunks.append(_chunk(shape, ChunkChoice(index=0, delta=ChoiceDelta(content=token), logprobs=lp,
                                                finish_reason=None)))
    chunks += _tool_chunks(shape, planned_tool_calls(script, finish))
    final = ChunkChoice(index=0, delta=ChoiceDelta(), logprobs=None, finish_reason=finish)  # type: ignore[arg-type]
    return Plan(role=_chunk(shape, role), tokens=chunks, final=_chunk(shape, final),
                whole=_completion(script, shape))


def usage(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                           total_tokens=prompt_tokens + completion_tokens)


@functools.lru_cache(maxsize=1024)
def usage_chunk(model: str, prompt_tokens: int, completion_tokens: int) -> str:
    """Rendered once per shape: in benchmarks the fake shares the CPU with what it measures."""
    chunk = ChatCompletionChunk(id="", created=0, model=model, object="chat.completion.chunk",
                                system_fingerprint=FINGERPRINT, choices=[],
                                usage=usage(prompt_tokens, completion_tokens))
    return _rest(chunk)


def _message_tool_calls(calls: tuple[ToolCall, ...]) -> list[ChatCompletionMessageFunctionToolCall]:
    return [ChatCompletionMessageFunctionToolCall(id=tool_call_id(c, i), type="function",
                                                  function=Function(name=c.name, arguments=c.json))
            for i, c in enumerate(calls)]


def _completion(script: Script, shape: Shape) -> str:
    tokens, finish = planned_tokens(script, shape)
    logprobs = _logprobs(script, shape, tokens)
    calls = planned_tool_calls(script, finish)
    extra = {"tool_calls": _message_tool_calls(calls)} if calls else {}
    message = ChatCompletionMessage(role="assistant", content="".join(tokens) if tokens or not calls else None,
                                    refusal=None, annotations=[], **extra)
    choice = Choice(index=0, message=message, finish_reason=finish,  # type: ignore[arg-type]
                    logprobs=ChoiceLogprobs(content=logprobs, refusal=None) if logprobs is not None else None)
    completion = ChatCompletion(id="", created=0, model=shape.model, object="chat.completion",
                                system_fingerprint=FINGERPRINT, choices=[choice])
    return _rest(completion)


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}}).encode()


def models_body(names: list[str], created: int) -> bytes:
    models = [Model(id=n, created=created, object="model", owned_by="draftgate-fake") for n in names]
    data = [m.model_dump(exclude_unset=True) for m in models]
    return json.dumps({"object": "list", "data": data}).encode()
