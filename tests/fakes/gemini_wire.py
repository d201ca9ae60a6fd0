"""Pure: the Gemini API's wire format for the fake upstream (`POST /v1beta/models/{model}:generateContent`
and `:streamGenerateContent`, `?alt=sse` for server-sent events, else one JSON array).

Built from the Gemini API reference (models.generateContent / streamGenerateContent, Content, Part,
GenerationConfig, Tool / FunctionDeclaration / Schema, LogprobsResult, UsageMetadata, error codes)
and the google-genai SDK's types. The request is checked as the real API checks it: an API key
(`x-goog-api-key` or `?key=`), field names known to the proto (lowerCamel or snake_case), roles
`user` / `model`, non-empty parts with one data field each, function call and response turns in
order, function names, Schema fields and types, a non-empty `properties` for OBJECT parameters, and
`logprobs` only with `responseLogprobs`; a wrong translation gets the 400 the real API gives.
Answers carry candidates[].content.parts[] (text / functionCall), finishReason, usageMetadata and,
when asked, logprobsResult {topCandidates, chosenCandidates}; a stream sends a running usageMetadata in
every chunk and the finishReason with the last part. Errors are `{"error": {code, message, status}}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.scripts import Frames, Script, ToolCall, planned, token_alternatives

STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
            503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# Script.finish_reason (OpenAI's words) -> finishReason; anything else is taken as Gemini's own word.
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
METHODS = frozenset({"generateContent", "streamGenerateContent"})
MAX_TOP_LOGPROBS = 20
MAX_STOP_SEQUENCES = 5

REQUEST_FIELDS = frozenset({"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
                            "generationConfig", "cachedContent", "model"})
CONTENT_FIELDS = frozenset({"role", "parts"})
PART_DATA = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                       "codeExecutionResult"})
PART_FIELDS = PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
CALL_FIELDS = frozenset({"name", "args", "id", "partialArgs", "willContinue"})
RESPONSE_FIELDS = frozenset({"name", "response", "id", "parts", "willContinue", "scheduling"})
GENERATION_FIELDS = frozenset({"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
                               "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP",
                               "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                               "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "imageConfig",
                               "mediaResolution"})
TOOL_FIELDS = frozenset({"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution",
                         "urlContext", "computerUse", "fileSearch", "googleMaps", "mcpServers"})
DECLARATION_FIELDS = frozenset({"name", "description", "parameters", "parametersJsonSchema", "response",
                                "responseJsonSchema", "behavior"})
SCHEMA_FIELDS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                           "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                           "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                           "maximum", "additionalProperties", "$ref", "$defs"})
SCHEMA_TYPES = frozenset({"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
CALLING_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
          "or other form of API consumer identity to call this API.")


class GeminiError(Exception):
    """A request the real API refuses: its HTTP status and message (the status name follows from the code)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """What the fake needs from a valid generateContent request."""

    model: str
    stream: bool  # streamGenerateContent
    sse: bool  # ?alt=sse: server-sent events, else one JSON array written as it grows
    messages: list[dict[str, Any]]  # the contents as OpenAI-style turns, for State.pick
    prompt_tokens: int
    logprobs: bool  # generationConfig.responseLogprobs
    top_k: int  # generationConfig.logprobs
    max_tokens: int | None  # generationConfig.maxOutputTokens


def status_name(status: int) -> str:
    return STATUSES.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _field_error(path: str, message: str) -> GeminiError:
    return GeminiError(400, f"* GenerateContentRequest.{path}: {message}\n")


def _fields(path: str, value: Any, allowed: frozenset[str]) -> dict[str, Any]:
    """The object with lowerCamel keys, as the proto's JSON parser reads either spelling; an unknown
    name is refused the way that parser refuses it."""
    if not isinstance(value, dict):
        where = f" at '{path}'" if path else ""
        raise GeminiError(400, f"Invalid JSON payload received. Expected an object{where}.")
    out = {}
    for key, item in value.items():
        name = key if key.startswith("$") else camel(key)
        if name not in allowed:
            where = f" at '{path}'" if path else ""
            raise GeminiError(400, f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')
        out[name] = item
    return out


def _list(path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise GeminiError(400, f"Invalid JSON payload received. Expected a list at '{path}'.")
    return value


def _part(path: str, raw: Any) -> dict[str, Any]:
    part = _fields(path, raw, PART_FIELDS)
    data = [k for k in part if k in PART_DATA]
    if len(data) != 1:
        raise _field_error(f"{path}.data", "required oneof field 'data' must have one initialized field")
    if "text" in part and not isinstance(part["text"], str):
        raise GeminiError(400, f"Invalid value at '{path}.text' (TYPE_STRING)")
    if "functionCall" in part:
        call = _fields(f"{path}.function_call", part["functionCall"], CALL_FIELDS)
        if not isinstance(call.get("name"), str) or not call["name"]:
            raise _field_error(f"{path}.function_call.name", "Name cannot be empty.")
        if not isinstance(call.get("args", {}), dict):
            raise GeminiError(400, f"Invalid value at '{path}.function_call.args' "
                              "(type.googleapis.com/google.protobuf.Struct)")
    if "functionResponse" in part:
        answer = _fields(f"{path}.function_response", part["functionResponse"], RESPONSE_FIELDS)
        if not isinstance(answer.get("name"), str) or not answer["name"]:
            raise _field_error(f"{path}.function_response.name", "Name cannot be empty.")
        if not isinstance(answer.get("response", {}), dict):
            raise GeminiError(400, f"Invalid value at '{path}.function_response.response' "
                              "(type.googleapis.com/google.protobuf.Struct)")
    return part


def _content(path: str, raw: Any, system: bool = False) -> dict[str, Any]:
    content = _fields(path, raw, CONTENT_FIELDS)
    role = content.get("role", "")
    if not system and role not in ("", "user", "model"):
        raise GeminiError(400, "Please use a valid role: user, model.")
    parts = content.get("parts")
    if not parts:
        raise _field_error(f"{path}.parts", f"{path.split('[')[0]}.parts must not be empty.")
    content["parts"] = [_part(f"{path}.parts[{j}]", p) for j, p in enumerate(_list(f"{path}.parts", parts))]
    return content


def _kinds(content: dict[str, Any], kind: str) -> int:
    return sum(1 for p in content["parts"] if kind in p)


def _check_turns(contents: list[dict[str, Any]]) -> None:
    """Function calls follow a user turn or function responses; responses answer the calls just before."""
    for i, content in enumerate(contents):
        previous = contents[i - 1] if i else None
        if _kinds(content, "functionCall") and (previous is None or previous.get("role") == "model"):
            raise GeminiError(400, "Please ensure that function call turn comes immediately after a user turn or "
                              "after a function response turn.")
        answers = _kinds(content, "functionResponse")
        if answers and (previous is None or not _kinds(previous, "functionCall")):
            raise GeminiError(400, "Please ensure that function response turn comes immediately after a function "
                              "call turn.")
        if answers and previous is not None and answers != _kinds(previous, "functionCall"):
            raise GeminiError(400, "Please ensure that the number of function response parts is equal to the "
                              "number of function call parts of the function call turn.")


def _schema(path: str, raw: Any) -> None:
    schema = _fields(path, raw, SCHEMA_FIELDS)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in SCHEMA_TYPES):
        raise GeminiError(400, f"Invalid value at '{path}.type' (type.googleapis.com/google.ai.generativelanguage."
                          f"v1beta.Type), {json.dumps(kind)}")
    for name in ("properties", "$defs"):
        for key, sub in (schema.get(name) or {}).items():
            _schema(f"{path}.{snake(name)}[{key}].value", sub)
    if isinstance(schema.get("items"), dict):
        _schema(f"{path}.items", schema["items"])
    for n, sub in enumerate(schema.get("anyOf") or []):
        _schema(f"{path}.any_of[{n}]", sub)
    if isinstance(kind, str) and kind.upper() == "OBJECT" and not schema.get("properties") \
            and "additionalProperties" not in schema and "anyOf" not in schema:
        raise _field_error(f"{path}.properties", "should be non-empty for OBJECT type")


def _declaration(path: str, raw: Any) -> None:
    declaration = _fields(path, raw, DECLARATION_FIELDS)
    name = declaration.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise _field_error(f"{path}.name", "Invalid function name. Must start with a letter or an underscore. Must "
                           "be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum length "
                           "of 64.")
    if "parameters" in declaration:
        _schema(f"{path}.parameters", declaration["parameters"])


def _tools(raw: Any) -> None:
    for i, tool in enumerate(_list("tools", raw)):
        fields = _fields(f"tools[{i}]", tool, TOOL_FIELDS)
        for j, declaration in enumerate(_list(f"tools[{i}].function_declarations",
                                              fields.get("functionDeclarations", []))):
            _declaration(f"tools[{i}].function_declarations[{j}]", declaration)


def _tool_config(raw: Any) -> None:
    config = _fields("tool_config", raw, frozenset({"functionCallingConfig", "retrievalConfig"}))
    calling = _fields("tool_config.function_calling_config", config.get("functionCallingConfig", {}),
                      frozenset({"mode", "allowedFunctionNames"}))
    mode = calling.get("mode", "AUTO")
    if mode not in CALLING_MODES:
        raise GeminiError(400, "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/"
                          f"google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), {json.dumps(mode)}")


def _generation(raw: Any) -> dict[str, Any]:
    config = _fields("generation_config", raw, GENERATION_FIELDS)
    temperature = config.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        raise _field_error("generation_config.temperature", "must be in the range [0.0, 2.0]")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise _field_error("generation_config.max_output_tokens", "must be a positive integer")
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise GeminiError(400, "Invalid value at 'generation_config.stop_sequences' (TYPE_STRING)")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise _field_error("generation_config.stop_sequences", f"at most {MAX_STOP_SEQUENCES} stop sequences are "
                           "allowed")
    top_k = config.get("logprobs")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 0 <= top_k <= MAX_TOP_LOGPROBS:
            raise _field_error("generation_config.logprobs", f"must be in the range [0, {MAX_TOP_LOGPROBS}]")
        if config.get("responseLogprobs") is not True:
            raise _field_error("generation_config.logprobs", "logprobs is only valid when response_logprobs is "
                               "true")
    return config


def _key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("x-goog-api-key") or query.get("key") or None


def _turns(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contents as OpenAI-style turns (user / assistant, text joined), for scripting rules."""
    return [{"role": "assistant" if c.get("role") == "model" else "user",
             "content": " ".join(p["text"] for p in c["parts"] if "text" in p)} for c in contents]


def parse_request(headers: Mapping[str, str], query: Mapping[str, str], target: str,
                  raw: bytes) -> tuple[dict[str, Any], Request]:
    """The body and what the fake needs of it, or the GeminiError the real API answers.

    `target` is the path's last segment, `{model}:{method}`; `headers` has lower-case names."""
    model, _, method = target.rpartition(":")
    if method not in METHODS or not model:
        raise GeminiError(404, f"Method not found: {target}")
    if _key(headers, query) is None:
        raise GeminiError(403, NO_KEY)
    try:
        body = json.loads(raw)
    except ValueError:
        raise GeminiError(400, "Invalid JSON payload received. Unexpected token.") from None
    fields = _fields("", body, REQUEST_FIELDS)
    raw_contents = fields.get("contents")
    if not raw_contents:
        raise _field_error("contents", "contents is not specified")
    contents = [_content(f"contents[{i}]", c) for i, c in enumerate(_list("contents", raw_contents))]
    _check_turns(contents)
    system = _content("system_instruction", fields["systemInstruction"], system=True) \
        if "systemInstruction" in fields else None
    if "tools" in fields:
        _tools(fields["tools"])
    if "toolConfig" in fields:
        _tool_config(fields["toolConfig"])
    config = _generation(fields.get("generationConfig", {}))
    turns = _turns(contents)
    words = sum(len(t["content"].split()) for t in turns + (_turns([system]) if system else []))
    return body, Request(model=model.removeprefix("models/"), stream=method == "streamGenerateContent",
                         sse=query.get("alt") == "sse", messages=turns, prompt_tokens=words,
                         logprobs=config.get("responseLogprobs") is True, top_k=config.get("logprobs") or 0,
                         max_tokens=config.get("maxOutputTokens"))


# --- answers -----------------------------------------------------------------------------------------

def finish_reason(finish: str) -> str:
    return FINISH_REASONS.get(finish, finish.upper())


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def logprobs_result(tokens: list[str], bits: list[float], top_k: int, sentinel: bool) -> dict[str, Any]:
    """chosenCandidates per token and, when top candidates were asked, topCandidates sorted best first."""
    chosen, top = [], []
    for token, b in zip(tokens, bits, strict=False):
        logprob, alternatives = token_alternatives(token, b, top_k, sentinel)
        chosen.append({"token": token, "logProbability": logprob})
        top.append({"candidates": [{"token": t, "logProbability": lp} for t, lp in alternatives]})
    result: dict[str, Any] = {"topCandidates": top} if top_k else {}
    result["chosenCandidates"] = chosen
    result["logProbabilitySum"] = sum(c["logProbability"] for c in chosen)
    return result


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}


def _call_part(call: ToolCall) -> dict[str, Any]:
    return {"functionCall": {"name": call.name, "args": call.arguments}}


def _wants_logprobs(request: Request, script: Script) -> bool:
    return request.logprobs and script.logprobs


def _top(request: Request, candidate: dict[str, Any], usage: dict[str, Any], response_id: str) -> dict[str, Any]:
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": request.model,
            "responseId": response_id}


def response(request: Request, script: Script, response_id: str) -> dict[str, Any]:
    """The whole GenerateContentResponse a generateContent request gets."""
    tokens, finish, calls = planned(script, request.max_tokens)
    parts = ([{"text": "".join(tokens)}] if tokens else []) + [_call_part(c) for c in calls]
    candidate: dict[str, Any] = {"content": {"parts": parts or [{"text": ""}], "role": "model"},
                                 "finishReason": finish_reason(finish), "index": 0}
    if _wants_logprobs(request, script) and tokens:
        result = logprobs_result(tokens, script.bits, request.top_k, script.sentinel)
        candidate["avgLogprobs"] = result["logProbabilitySum"] / len(tokens)
        candidate["logprobsResult"] = result
    return _top(request, candidate, _usage(request.prompt_tokens, len(tokens) + len(calls)), response_id)


def _chunks(request: Request, script: Script, response_id: str) -> list[dict[str, Any]]:
    """One GenerateContentResponse per text token or function call; the last carries the finishReason."""
    tokens, finish, calls = planned(script, request.max_tokens)
    bits = script.bits
    chunks = []
    for i, token in enumerate(tokens):
        candidate: dict[str, Any] = {"content": {"parts": [{"text": token}], "role": "model"}, "index": 0}
        if _wants_logprobs(request, script):
            candidate["logprobsResult"] = logprobs_result([token], bits[i:i + 1], request.top_k, script.sentinel)
        chunks.append(_top(request, candidate, _usage(request.prompt_tokens, i + 1), response_id))
    for n, call in enumerate(calls):
        candidate = {"content": {"parts": [_call_part(call)], "role": "model"}, "index": 0}
        chunks.append(_top(request, candidate, _usage(request.prompt_tokens, len(tokens) + n + 1), response_id))
    if not chunks:
        chunks.append(_top(request, {"content": {"parts": [{"text": ""}], "role": "model"}, "index": 0},
                           _usage(request.prompt_tokens, 0), response_id))
    chunks[-1]["candidates"][0]["finishReason"] = finish_reason(finish)
    return chunks


def frame(request: Request, data: bytes, first: bool) -> bytes:
    """One value of the stream: an SSE event, or an element of the JSON array."""
    if request.sse:
        return b"data: " + data + b"\r\n\r\n"
    return data if first else b",\r\n" + data


def frames(request: Request, script: Script, response_id: str) -> Frames:
    chunks = _chunks(request, script, response_id)
    units = [frame(request, _dumps(c), i == 0) for i, c in enumerate(chunks)]
    return Frames(head=b"" if request.sse else b"[", units=units, tail=b"" if request.sse else b"]")


def sample_chunk(request: Request, script: Script, response_id: str) -> dict[str, Any]:
    """A token chunk with log-probs, the material garbage modes break."""
    token = script.tokens[0] if script.tokens else "x"
    candidate = {"content": {"parts": [{"text": token}], "role": "model"}, "index": 0,
                 "logprobsResult": logprobs_result([token], script.bits[:1] or [0.0], max(request.top_k, 2), False)}
    return _top(request, candidate, _usage(request.prompt_tokens, 1), response_id)


def error_body(status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": status_name(status)}
    if retry_after_s is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_s:g}s"}]
    return {"error": error}


def _break(chunk: dict[str, Any], mode: str) -> Any:
    """The chunk with one field broken the way a garbage data mode says."""
    candidate = chunk["candidates"][0]
    result = candidate["logprobsResult"]
    token = result["chosenCandidates"][0]["token"]
    edits = {
        "choices_not_list": lambda: chunk.update(candidates={"0": candidate}),
        "delta_not_object": lambda: candidate.update(content=token),
        "logprobs_not_object": lambda: candidate.update(logprobsResult=5),
        "content_not_list": lambda: result.update(chosenCandidates=result["chosenCandidates"][0]),
        "top_logprobs_not_objects": lambda: result["topCandidates"][0].update(candidates=[-0.1, -2.3]),
        "logprob_not_number": lambda: result["chosenCandidates"][0].update(logProbability="high"),
        "missing_fields": lambda: result.update(chosenCandidates=[{}], topCandidates=[{"candidates": [{}]}]),
    }
    edits[mode]()
    return chunk


def bad_data(mode: str, chunk: dict[str, Any]) -> bytes:
    """The bad value of a garbage data mode (every mode of tests.fakes.garbage.DATA_MODES has a Gemini form)."""
    plain = {"not_json": b'{"candidates":[{"content":{"parts":[{"text":', "number": b"42", "array": b"[1]",
             "string": b'"x"'}
    return plain[mode] if mode in plain else _dumps(_break(chunk, mode))


# Half a chunk: the connection drops in the middle of its data line.
CUT = b'data: {"candidates":[{"content":{"parts":[{"te'
