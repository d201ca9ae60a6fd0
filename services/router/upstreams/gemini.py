"""Google's Gemini API (`POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`), spoken natively.

Request: system and developer messages become `systemInstruction`; user, assistant and tool
messages become `contents` of role user / model with parts (text, inlineData, fileData,
functionCall, functionResponse); `generationConfig` takes temperature, top_p, max_tokens, stop,
seed, penalties, response_format (JSON mode and JSON schemas) and the log-probs a drafter needs
(`responseLogprobs`, `logprobs` = the number of top candidates); tools become
`functionDeclarations` (their JSON schemas as `parametersJsonSchema`), tool_choice a
`functionCallingConfig`.

Response: each event is a whole GenerateContentResponse. Its text (thought parts left out) is a
content delta, each functionCall a tool call, `logprobsResult` (chosenCandidates and
topCandidates, logProbability in nats) the OpenAI log-prob entries the router judges, so Gemini
can be a drafter; `finishReason` one finish chunk and `usageMetadata` one usage chunk. Gemini sends
no end marker: the stream ends when the connection's body does, whole if its last choice finished.
"""

from __future__ import annotations

import mimetypes
import re
import time
from collections.abc import Mapping
from typing import Any

from services.router.upstreams.base import (
    HttpRequest,
    Target,
    content_text,
    error_object,
    join_url,
    retry_after_s,
    split_data_url,
    tool_arguments,
)
from services.router.upstreams.errors import UpstreamError, UpstreamStatusError, UpstreamStreamError, retryable_status
from services.router.wellformed import MalformedChunk, check_chunk
from shared import fastjson

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
                  "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
                  "IMAGE_SAFETY": "content_filter"}
_SYSTEM_ROLES = frozenset({"system", "developer"})
_CONFIG_KEYS = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


class GeminiProvider:
    name = "gemini"
    logprobs = True

    def request(self, target: Target, params: dict[str, Any]) -> HttpRequest:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        headers.update(target.headers)
        model = str(params.get("model") or target.model).removeprefix("models/")
        url = join_url(target.base_url, "/v1beta", f"/models/{model}:streamGenerateContent?alt=sse", also=("/v1",))
        return HttpRequest("POST", url, headers, fastjson.dumps(generate_body(params)))

    def decoder(self) -> GeminiDecoder:
        return GeminiDecoder()

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        error = _error_object(body)
        delay = retry_after_s(headers)
        return UpstreamStatusError(_message(error, f"HTTP {status}"), status=status, body=_openai_error(error),
                                   retryable=retryable_status(status),
                                   retry_after_s=delay if delay is not None else _retry_delay(error))


def generate_body(params: dict[str, Any]) -> dict[str, Any]:
    """The generateContent body for an OpenAI chat-completions body."""
    system, contents = conversation(params.get("messages") or [])
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = {theirs: params[ours] for ours, theirs in _CONFIG_KEYS if params.get(ours) is not None}
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = int(max_tokens)
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    config.update(_response_format(params.get("response_format")))
    if params.get("logprobs"):
        config["responseLogprobs"] = True
        if params.get("top_logprobs"):
            config["logprobs"] = int(params["top_logprobs"])
    if config:
        body["generationConfig"] = config
    declarations = [_declaration(tool["function"]) for tool in params.get("tools") or ()
                    if isinstance(tool, dict) and tool.get("function")]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        calling = _calling_config(params.get("tool_choice"))
        if calling is not None:
            body["toolConfig"] = {"functionCallingConfig": calling}
    return body


def conversation(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system instruction, contents) for OpenAI messages; consecutive messages of one role share a
    content, and a tool result is a functionResponse named after the call it answers."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    for message in messages:
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            text = content_text(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            parts = _model_parts(message, names)
            role = "model"
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id")), str(message.get("name") or ""))
            parts = [{"functionResponse": {"name": name, "response": _response(message.get("content"))}}]
            role = "user"
        else:
            parts = _user_parts(message.get("content"))
            role = "user"
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_media((part.get("image_url") or {}).get("url") or "", "image/jpeg"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}",
                                         "data": audio.get("data") or ""}})
        elif kind == "file" and (part.get("file") or {}).get("file_data"):
            parts.append(_media(part["file"]["file_data"], "application/pdf"))
    return parts


def _media(url: str, default_type: str) -> dict[str, Any]:
    inline = split_data_url(url)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"mimeType": mimetypes.guess_type(url)[0] or default_type, "fileUri": url}}


def _model_parts(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    text = content_text(message.get("content"))
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        names[str(call.get("id"))] = name
        parts.append({"functionCall": {"name": name, "args": tool_arguments(function.get("arguments"))}})
    return parts


def _response(content: Any) -> dict[str, Any]:
    """A tool's result as the object functionResponse.response must be: the JSON object it returned,
    else its text under "result"."""
    text = content_text(content)
    try:
        parsed = fastjson.loads(text) if text else None
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": text}


def _response_format(response_format: Any) -> dict[str, Any]:
    if not isinstance(response_format, dict):
        return {}
    if response_format.get("type") == "json_object":
        return {"responseMimeType": "application/json"}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"responseMimeType": "application/json", **({"responseJsonSchema": schema} if schema else {})}
    return {}


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function.get("name"), "description": function.get("description") or ""}
    if function.get("parameters"):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _calling_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}
    return {"auto": {"mode": "AUTO"}, "required": {"mode": "ANY"}, "none": {"mode": "NONE"}}.get(str(choice)) \
        if choice is not None else None


def _error_object(body: bytes) -> dict[str, Any] | None:
    """Gemini's error object; a streaming endpoint may wrap the error body in a JSON array."""
    try:
        parsed = fastjson.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, list) and parsed:
        return error_object(fastjson.dumps(parsed[0]))
    return error_object(body)


def _message(error: dict[str, Any] | None, default: str) -> str:
    message = error.get("message") if error else None
    return message if isinstance(message, str) and message else default


def _openai_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Gemini's {code, message, status} as OpenAI's {message, type, param, code}."""
    if error is None:
        return None
    status = error.get("status")
    return {"message": _message(error, "upstream error"), "type": status, "param": None, "code": status}


def _retry_delay(error: dict[str, Any] | None) -> float | None:
    """A google.rpc.RetryInfo detail's retryDelay ("37s"), which Gemini sends with its 429s."""
    for detail in (error or {}).get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay") or ""))
            if match:
                return float(match.group(1))
    return None


def _entry(candidate: dict[str, Any], alternatives: list[dict[str, Any]]) -> dict[str, Any]:
    """One OpenAI log-prob entry. A logProbability of 0 (probability 1) is left out of proto JSON."""
    token = str(candidate.get("token") or "")
    return {"token": token, "logprob": float(candidate.get("logProbability") or 0.0),
            "bytes": list(token.encode()),
            "top_logprobs": [{"token": str(alt.get("token") or ""), "logprob": float(alt.get("logProbability") or 0.0),
                              "bytes": list(str(alt.get("token") or "").encode())} for alt in alternatives]}


def logprob_entries(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """OpenAI log-prob entries for a logprobsResult: one per decoding step, the chosen token with
    that step's top candidates as its alternatives."""
    if not result:
        return []
    tops = result.get("topCandidates") or []
    return [_entry(chosen, (tops[step].get("candidates") or []) if step < len(tops) else [])
            for step, chosen in enumerate(result.get("chosenCandidates") or ())]


class GeminiDecoder:
    """GenerateContentResponse events as OpenAI chunks. Never `done`: Gemini's stream ends with its body."""

    def __init__(self) -> None:
        self.done = False
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._started = False
        self._finished = False
        self._calls = 0
        self._usage: dict[str, Any] = {}

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        try:
            value = fastjson.loads(data)
        except ValueError:
            raise MalformedChunk("a data value that is not JSON") from None
        if type(value) is not dict:
            raise MalformedChunk("an event that is not a JSON object")
        if "error" in value:
            error = value["error"] if isinstance(value["error"], dict) else {"message": str(value["error"])}
            raise UpstreamStreamError(_message(error, "stream error"), body=_openai_error(error))
        try:
            chunks = self._translate(value)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            raise MalformedChunk("a response the Gemini API does not send") from None
        return [check_chunk(chunk) for chunk in chunks]

    def _translate(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            self._id = str(value.get("responseId") or f"gemini-{time.time_ns()}")
            self._model = str(value.get("modelVersion") or "")
            chunks.append(self._chunk({"role": "assistant", "content": ""}))
        if value.get("usageMetadata"):
            self._usage = value["usageMetadata"]
        candidates = value.get("candidates") or []
        if not candidates:
            if (value.get("promptFeedback") or {}).get("blockReason"):  # the prompt itself was refused
                chunks.extend(self._finish("content_filter"))
            return chunks
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        if type(parts) is not list or any(type(part) is not dict for part in parts):
            raise TypeError("parts is not a list of objects")
        text = "".join(part["text"] for part in parts if "text" in part and not part.get("thought"))
        entries = logprob_entries(candidate.get("logprobsResult"))
        if text or entries:
            chunks.append(self._chunk({"content": text}, {"content": entries, "refusal": None} if entries else None))
        for part in parts:
            if "functionCall" in part:
                chunks.append(self._call(part["functionCall"]))
        reason = candidate.get("finishReason")
        if reason and reason != "FINISH_REASON_UNSPECIFIED":
            mapped = FINISH_REASONS.get(reason, "stop")
            chunks.extend(self._finish("tool_calls" if mapped == "stop" and self._calls else mapped))
        return chunks

    def _call(self, call: dict[str, Any]) -> dict[str, Any]:
        index, self._calls = self._calls, self._calls + 1
        arguments = fastjson.dumps(call.get("args") or {}).decode()
        return self._chunk({"tool_calls": [{"index": index, "id": str(call.get("id") or f"call_{self._id}_{index}"),
                                            "type": "function",
                                            "function": {"name": str(call["name"]), "arguments": arguments}}]})

    def _finish(self, reason: str) -> list[dict[str, Any]]:
        if self._finished:
            return []
        self._finished = True
        usage = self._usage
        prompt = int(usage.get("promptTokenCount") or 0)
        completion = int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0)
        counted: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                   "total_tokens": int(usage.get("totalTokenCount") or prompt + completion)}
        if usage.get("cachedContentTokenCount"):
            counted["prompt_tokens_details"] = {"cached_tokens": int(usage["cachedContentTokenCount"])}
        if usage.get("thoughtsTokenCount"):
            counted["completion_tokens_details"] = {"reasoning_tokens": int(usage["thoughtsTokenCount"])}
        return [self._chunk({}, finish_reason=reason),
                {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                 "choices": [], "usage": counted}]

    def _chunk(self, delta: dict[str, Any], logprobs: dict[str, Any] | None = None,
               finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}


PROVIDER = GeminiProvider()
