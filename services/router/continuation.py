"""The heavyweight's request when it continues a draft the client has partly seen. Pure.

Three styles, one per kind of server (`<tier>.continuation` in the config):
- instruction: any chat model. The shown text goes as an assistant turn, followed by a user turn
  asking to go on from exactly there. The model may still restate or glue words; seam.py repairs
  the two common slips.
- continue_final_message: vLLM and SGLang extend the last assistant message token by token
  (`continue_final_message: true, add_generation_prompt: false` in the body): an exact seam.
- prefill: servers that extend a trailing assistant message by themselves (Anthropic's Messages
  API, DeepSeek's prefix completion behind an adapter): the assistant turn alone.
With nothing shown the request is the client's own, whatever the style.
"""

from __future__ import annotations

from typing import Any

from services.router.upstream import stream_params

INSTRUCTION = "instruction"
CONTINUE_FINAL_MESSAGE = "continue_final_message"
PREFILL = "prefill"

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it from exactly where it stopped, even mid-sentence: "
    "write only the text that comes next, without repeating anything already written and without any "
    "preamble, so that the two parts read as one answer."
)


LIMITS = ("max_tokens", "max_completion_tokens")


def continuation_params(body: dict[str, Any], model: str, prefix: str, style: str,
                        shown_tokens: int = 0) -> dict[str, Any]:
    """The streamed request that makes `model` answer `body` going on from `prefix`, which took
    `shown_tokens` of the client's token limit: the continuation gets what is left of it."""
    params = stream_params(body, model)
    if not prefix:
        return params
    for key in LIMITS:
        if isinstance(params.get(key), int):
            params[key] = max(params[key] - shown_tokens, 1)
    shown = {"role": "assistant", "content": prefix}
    if style == INSTRUCTION:
        params["messages"] = [*body["messages"], shown, {"role": "user", "content": CONTINUE_INSTRUCTION}]
    elif style == CONTINUE_FINAL_MESSAGE:
        params["messages"] = [*body["messages"], shown]
        params.update(continue_final_message=True, add_generation_prompt=False)
    elif style == PREFILL:
        params["messages"] = [*body["messages"], shown]
    else:
        raise ValueError(f"unknown continuation style {style!r}")
    return params
