"""The chat-completions request as OpenAI defines it: one typed model, validated once at the gateway.

The rules are OpenAI's (the `openai` package's `completion_create_params` TypedDicts state them
exactly; tests/unit/test_chat_request.py holds this model to them): types are strict as in JSON
Schema ("false" is not a boolean, 1.5 is not an integer; 1.0 is one, and an integer is a number),
every optional field may be null, and every object keeps fields it does not know untouched, so
vendor extensions and fields OpenAI adds later pass through to the upstream. Enumerations that grow with model releases
(reasoning_effort, service_tier, verbosity, voices, image detail) are plain strings: the upstream
judges them. Pure.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

# Tags of the unions below read "<key>=<value>"; error locations carry them, and error reporting
# drops every location part holding this character.
TAG_MARK = "="
# Error types of those unions: "union_tag:<key>" (missing or unknown value at key), "json_kind".
UNION_TAG_ERROR = "union_tag"
JSON_KIND_ERROR = "json_kind"

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
TEMPLATE_ID_KEY = "template_id"


def _integral(value: Any) -> Any:
    """1.0 is an integer in JSON Schema, and so to OpenAI's validation; 1.5 and "1" are not."""
    return int(value) if type(value) is float and value.is_integer() else value


def integer(ge: int = INT64_MIN, le: int = INT64_MAX) -> Any:
    """An integer field: what JSON calls one, within what the wire (msgpack) and upstreams carry.
    The bounds go here, before the validator: bounds stacked on it would vanish from the schema."""
    return Annotated[int, Field(ge=max(ge, INT64_MIN), le=min(le, INT64_MAX)), BeforeValidator(_integral)]


class OpenObject(BaseModel):
    """An OpenAI object: its known fields checked, unknown ones kept as sent."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


def tagged(key: str, members: dict[str, Any]) -> Any:
    """A union of objects chosen by the string at `key` (OpenAI's `type` or `role`): a missing or
    unknown value is one clear error naming `key`, not one error per member."""

    def pick(value: Any) -> str | None:
        tag = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        return f"{key}{TAG_MARK}{tag}" if isinstance(tag, str) and tag in members else None

    choices = tuple(Annotated[member, Tag(f"{key}{TAG_MARK}{name}")] for name, member in members.items())
    return Annotated[Union[choices], Discriminator(  # noqa: UP007 (a runtime tuple of members)
        pick, custom_error_type=f"{UNION_TAG_ERROR}:{key}",
        custom_error_message="Supported values are: " + ", ".join(f"'{name}'" for name in members))]


_KINDS: dict[type, str] = {str: "string", list: "array", dict: "object"}


def either(expected: str, **members: Any) -> Any:
    """A union chosen by the JSON kind of the value (string, array, object): one error saying
    what was expected when the kind fits none."""

    def pick(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return "kind=object" if "object" in members else None
        kind = _KINDS.get(type(value))
        return f"kind{TAG_MARK}{kind}" if kind in members else None

    choices = tuple(Annotated[member, Tag(f"kind{TAG_MARK}{kind}")] for kind, member in members.items())
    return Annotated[Union[choices], Discriminator(  # noqa: UP007
        pick, custom_error_type=JSON_KIND_ERROR, custom_error_message=f"expected {expected}")]


# Content parts

class TextPart(OpenObject):
    type: Literal["text"]
    text: str


class ImageURL(OpenObject):
    url: str
    detail: str | None = None


class ImagePart(OpenObject):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(OpenObject):
    data: str
    format: str


class InputAudioPart(OpenObject):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(OpenObject):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(OpenObject):
    type: Literal["file"]
    file: FileRef


class RefusalPart(OpenObject):
    type: Literal["refusal"]
    refusal: str


TextOnlyPart = tagged("type", {"text": TextPart})
UserPart = tagged("type", {"text": TextPart, "image_url": ImagePart, "input_audio": InputAudioPart,
                           "file": FilePart})
AssistantPart = tagged("type", {"text": TextPart, "refusal": RefusalPart})

TextContent = either("a string or an array of content parts", string=str, array=list[TextOnlyPart])
UserContent = either("a string or an array of content parts", string=str, array=list[UserPart])
AssistantContent = either("a string or an array of content parts", string=str, array=list[AssistantPart])


# Tool calls an assistant made

class FunctionCall(OpenObject):
    name: str
    arguments: str


class FunctionToolCall(OpenObject):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomCall(OpenObject):
    name: str
    input: str


class CustomToolCall(OpenObject):
    id: str
    type: Literal["custom"]
    custom: CustomCall


ToolCall = tagged("type", {"function": FunctionToolCall, "custom": CustomToolCall})


class AudioRef(OpenObject):
    id: str


# Messages

class SystemMessage(OpenObject):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(OpenObject):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(OpenObject):
    role: Literal["user"]
    content: UserContent
    name: str | None = None


class AssistantMessage(OpenObject):
    """content may be absent or null (a message that only calls tools)."""

    role: Literal["assistant"]
    content: AssistantContent | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: AudioRef | None = None


class ToolMessage(OpenObject):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class FunctionMessage(OpenObject):
    """Deprecated by OpenAI, still accepted: content is required but may be null."""

    role: Literal["function"]
    content: str | None
    name: str


Message = tagged("role", {"system": SystemMessage, "developer": DeveloperMessage, "user": UserMessage,
                          "assistant": AssistantMessage, "tool": ToolMessage, "function": FunctionMessage})


# Tools the model may call, and how it must answer

class FunctionDefinition(OpenObject):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(OpenObject):
    type: Literal["function"]
    function: FunctionDefinition


class CustomToolDefinition(OpenObject):
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(OpenObject):
    type: Literal["custom"]
    custom: CustomToolDefinition


Tool = tagged("type", {"function": FunctionTool, "custom": CustomTool})


class ToolName(OpenObject):
    name: str


class NamedFunctionChoice(OpenObject):
    type: Literal["function"]
    function: ToolName


class NamedCustomChoice(OpenObject):
    type: Literal["custom"]
    custom: ToolName


class AllowedTools(OpenObject):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(OpenObject):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


ToolChoice = either("'none', 'auto', 'required' or a tool choice object",
                    string=Literal["none", "auto", "required"],
                    object=tagged("type", {"function": NamedFunctionChoice, "custom": NamedCustomChoice,
                                           "allowed_tools": AllowedToolsChoice}))
FunctionChoice = either("'none', 'auto' or a function name object", string=Literal["none", "auto"], object=ToolName)


class TextFormat(OpenObject):
    type: Literal["text"]


class JSONObjectFormat(OpenObject):
    type: Literal["json_object"]


class JSONSchemaSpec(OpenObject):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JSONSchemaFormat(OpenObject):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = tagged("type", {"text": TextFormat, "json_object": JSONObjectFormat,
                                 "json_schema": JSONSchemaFormat})


class StreamOptions(OpenObject):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class Prediction(OpenObject):
    type: Literal["content"]
    content: TextContent


class OutputAudio(OpenObject):
    format: str
    voice: either("a voice name or a voice object", string=str, object=dict[str, Any])


Penalty = Annotated[float, Field(ge=-2, le=2)]
Stop = either("a string or an array of strings", string=str, array=Annotated[list[str], Field(max_length=4)])


class ChatCompletionRequest(OpenObject):
    """POST /v1/chat/completions. `model` may be absent: the gateway routes by entropy then."""

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: integer(ge=1) | None = None
    max_completion_tokens: integer(ge=1) | None = None
    stop: Stop | None = None
    seed: integer() | None = None
    n: integer(ge=1) | None = None
    logprobs: bool | None = None
    top_logprobs: integer(ge=0, le=20) | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, integer(ge=-100, le=100)] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: FunctionChoice | None = None
    response_format: ResponseFormat | None = None
    prediction: Prediction | None = None
    audio: OutputAudio | None = None
    modalities: list[str] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    backend: str | None = Field(default=None, min_length=1)  # draftgate's: one deployment, no entropy routing
    # draftgate's: the values of metadata.template_id's {variables} (README "Templates and sessions")
    variables: dict[str, str] | None = None
    # draftgate's: the conversation this request continues (or the X-Session-Id header)
    session_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=SESSION_ID_PATTERN)

    @property
    def deployment(self) -> tuple[str, str] | None:
        """The deployment the client named in the body and where: `backend`, else
        `metadata.deployment` (POST /v1/{deployment}/chat/completions names one in the path)."""
        if self.backend is not None:
            return self.backend, "backend"
        named = (self.metadata or {}).get("deployment")
        return (named, "metadata.deployment") if named else None

    @property
    def template_id(self) -> str | None:
        """The prompt template named in `metadata.template_id` (metadata stays OpenAI's: strings only)."""
        return (self.metadata or {}).get(TEMPLATE_ID_KEY) or None

    @property
    def streaming(self) -> bool:
        return self.stream is True

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage is True

    def body(self) -> dict[str, Any]:
        """The request as the client sent it, types checked: only the fields it set (absent stays
        absent, null stays null), unknown fields included. What routers and the cache get."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    def upstream_body(self) -> dict[str, Any]:
        """body() without draftgate's own fields (they name a deployment, a template, its variables or a
        session, and are not the upstream's); the very same body() when the request has none of them."""
        body = self.body()
        for name in DRAFTGATE_FIELDS:
            body.pop(name, None)
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and any(key in metadata for key in DRAFTGATE_METADATA):
            rest = {key: value for key, value in metadata.items() if key not in DRAFTGATE_METADATA}
            if rest:
                body["metadata"] = rest
            else:
                del body["metadata"]
        return body


# draftgate's own request fields, never sent upstream: top level, and inside metadata.
DRAFTGATE_FIELDS = ("backend", "variables", "session_id")
DRAFTGATE_METADATA = ("deployment", "template_id")
