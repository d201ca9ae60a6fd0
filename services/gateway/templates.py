"""Prompt templates: a system prompt with {variables}, rendered by a small renderer of our own. Pure.

The syntax is str.format's simplest part only: `{name}` (a Python identifier) is replaced by the
request's value for it, `{{` and `}}` are literal braces. Nothing else inside braces is allowed —
no attribute or index access (`{x.__class__}`, `{x[0]}`), no conversions (`{x!r}`), no format specs
(`{x:>10}`), no positional fields (`{}`, `{0}`) — so a template can never reach into Python objects,
and a value is inserted as plain text (braces in a value are not interpreted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TEMPLATE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An escaped brace, a {field}, or a lone brace (an error).
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
MAX_SYSTEM_CHARS = 100_000


class TemplateError(ValueError):
    """The template text is not one this renderer accepts."""


class MissingVariable(KeyError):
    """A variable the template uses has no value in the request."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Field:
    name: str


Piece = str | Field


@dataclass(frozen=True)
class Template:
    id: str
    system: str
    description: str = ""
    source: str = "config"  # config (read-only) | api (POST /admin/templates)

    @property
    def variables(self) -> tuple[str, ...]:
        return variables(self.system)

    def render(self, values: Mapping[str, str]) -> str:
        return render(self.system, values)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "system": self.system, "description": self.description,
                "variables": list(self.variables), "source": self.source}


def parse(text: str) -> tuple[Piece, ...]:
    """The template as literal text and fields; TemplateError names the first bad brace."""
    pieces: list[Piece] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = match.group(1)
        if name is None:
            raise TemplateError(f"a lone {token!r} at character {match.start()}: write {token * 2} for a literal brace")
        if not _IDENTIFIER.fullmatch(name):
            raise TemplateError(f"{token!r} at character {match.start()}: a field must be a plain variable name "
                                "such as {company} (no attribute or index access, conversions, format specs "
                                "or positional fields)")
        pieces.append("".join(literal))
        literal = []
        pieces.append(Field(name))
    literal.append(text[position:])
    pieces.append("".join(literal))
    return tuple(piece for piece in pieces if piece != "")


def variables(text: str) -> tuple[str, ...]:
    """The variables a template uses, in order of first use."""
    return tuple(dict.fromkeys(piece.name for piece in parse(text) if isinstance(piece, Field)))


def render(text: str, values: Mapping[str, str]) -> str:
    """The template with every field replaced by its value; MissingVariable names the first one without."""
    out = []
    for piece in parse(text):
        if isinstance(piece, Field):
            if piece.name not in values:
                raise MissingVariable(piece.name)
            out.append(values[piece.name])
        else:
            out.append(piece)
    return "".join(out)


def check(template_id: str, system: str) -> None:
    """A template fit to be stored: its id's form, a non-empty system prompt that parses."""
    if not TEMPLATE_ID.fullmatch(template_id):
        raise TemplateError("the id must be 1-64 characters: letters, digits, and _ . : - (not first)")
    if not system.strip():
        raise TemplateError("the system prompt is empty")
    if len(system) > MAX_SYSTEM_CHARS:
        raise TemplateError(f"the system prompt is longer than {MAX_SYSTEM_CHARS} characters")
    parse(system)
