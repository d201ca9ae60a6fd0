"""Pure: the malformed answers a misbehaving upstream sends, by mode name (`Script.garbage`).

Data modes put one bad `data:` value into a stream after `Script.garbage_after` good tokens and
then carry on as if nothing happened (a reader that skips garbage still notices nothing amiss).
Stream modes break the stream itself; page modes answer any request with a body that is no
chat completion at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# A whole data line that stops in the middle of a JSON object.
_NOT_JSON = b'{"id":"chatcmpl-garbage","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":'


def _entry(token: str, **fields: Any) -> dict[str, Any]:
    return {"token": token, "logprob": -0.1, "bytes": None,
            "top_logprobs": [{"token": token, "logprob": -0.1, "bytes": None}], **fields}


def _choice(edit: Callable[[dict[str, Any], str], None]) -> Callable[[dict[str, Any]], bytes]:
    """A data mode that breaks one field of a good token chunk's first choice."""
    def render(chunk: dict[str, Any]) -> bytes:
        choice = chunk["choices"][0]
        edit(choice, choice["delta"].get("content") or "x")
        return json.dumps(chunk).encode()
    return render


def _set(key: str, value: Callable[[str], Any]) -> Callable[[dict[str, Any], str], None]:
    def edit(choice: dict[str, Any], token: str) -> None:
        choice[key] = value(token)
    return edit


def _choices_not_list(chunk: dict[str, Any]) -> bytes:
    return json.dumps({**chunk, "choices": {"0": chunk["choices"][0]}}).encode()


DATA_MODES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "not_json": lambda chunk: _NOT_JSON,
    "number": lambda chunk: b"42",
    "array": lambda chunk: b"[1]",
    "string": lambda chunk: b'"x"',
    "choices_not_list": _choices_not_list,
    "delta_not_object": _choice(_set("delta", lambda token: token)),
    "logprobs_not_object": _choice(_set("logprobs", lambda token: 5)),
    "content_not_list": _choice(_set("logprobs", lambda token: {"content": _entry(token), "refusal": None})),
    "top_logprobs_not_objects": _choice(_set("logprobs", lambda token: {
        "content": [_entry(token, top_logprobs=[-0.1, -2.3])], "refusal": None})),
    "logprob_not_number": _choice(_set("logprobs", lambda token: {
        "content": [_entry(token, top_logprobs=[{"token": token, "logprob": "high", "bytes": None}])],
        "refusal": None})),
    "missing_fields": _choice(_set("logprobs", lambda token: {"content": [{"top_logprobs": [{"bytes": None}]}],
                                                              "refusal": None})),
}
# truncated: the connection ends cleanly after the good tokens (no finish_reason, no [DONE]);
# cut_mid_json: half a data line, then the connection is dropped.
STREAM_MODES = frozenset({"truncated", "cut_mid_json"})
_HTML = "<html><head><title>{0}</title></head><body><h1>{0}</h1><p>nginx</p></body></html>"
# mode -> (status, content type, body)
PAGE_MODES: dict[str, tuple[int, str, bytes]] = {
    "not_sse": (200, "application/json", b'{"id":"chatcmpl-1","object":"chat.completion","created":1,'
                                         b'"model":"m","choices":[]}'),
    "html_200": (200, "text/html", _HTML.format("Welcome").encode()),
    "html_500": (500, "text/html", _HTML.format("500 Internal Server Error").encode()),
    "html_502": (502, "text/html", _HTML.format("502 Bad Gateway").encode()),
}
MODES = frozenset({*DATA_MODES, *STREAM_MODES, *PAGE_MODES})
CUT = b'data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","choices":[{"index":0,"del'


def bad_data(mode: str, token_chunk: bytes) -> bytes:
    """The bad data value of a data mode, made from one good token chunk's JSON."""
    return DATA_MODES[mode](json.loads(token_chunk))
