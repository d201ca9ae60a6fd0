"""Write chosen values into a config YAML in place: only those keys' values change, comments stay.

Works on config.yaml (`cache:` at the top level) and on YAML nested deeper, such as the Kubernetes
ConfigMap's embedded config (`    cache:`): the section is found by name, its keys by indentation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_KEY = r"^(?P<indent>\s*){key}:(?P<space>\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(?:#.*)?)$"


def scalar(value: object) -> str:
    """A YAML scalar: null, true/false, numbers as written, plain strings bare unless they need quotes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    plain = re.fullmatch(r"[A-Za-z0-9_./-]+", text) and text not in ("null", "true", "false")
    return text if plain else json.dumps(text)


def set_values(text: str, section: str, values: dict[str, object]) -> str:
    """text with section.key set to each value; a key the section lacks is added at its end."""
    lines = text.splitlines(keepends=True)
    start, indent = _section(lines, section)
    end = start + 1
    child_indent: str | None = None
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > len(indent)):
        if lines[end].strip() and child_indent is None:
            child_indent = lines[end][:_indent(lines[end])]
        end += 1
    child_indent = child_indent if child_indent is not None else indent + "  "
    missing = dict(values)
    for index in range(start + 1, end):
        for key in list(missing):
            match = re.match(_KEY.format(key=re.escape(key)), lines[index].rstrip("\n"))
            if match and match.group("indent") == child_indent:
                lines[index] = _replaced(lines[index], match, key, scalar(missing.pop(key)))
    last = end
    while last > start + 1 and not lines[last - 1].strip():
        last -= 1
    added = [f"{child_indent}{key}: {scalar(value)}\n" for key, value in missing.items()]
    if added and last > 0 and not lines[last - 1].endswith("\n"):
        lines[last - 1] += "\n"
    return "".join(lines[:last] + added + lines[last:])


def write(path: str | Path, section: str, values: dict[str, object]) -> None:
    path = Path(path)
    path.write_text(set_values(path.read_text(), section, values))


def _replaced(line: str, match: re.Match[str], key: str, value: str) -> str:
    """The line with its value replaced, a trailing comment kept in its column when it fits."""
    newline = "\n" if line.endswith("\n") else ""
    head = f"{match.group('indent')}{key}:{match.group('space') or ' '}{value}"
    comment = match.group("tail").strip()
    if not comment:
        return head + newline
    column = line.index("#", match.start("tail"))
    return f"{head}{' ' * max(1, column - len(head))}{comment}{newline}"


def _section(lines: list[str], section: str) -> tuple[int, str]:
    pattern = re.compile(rf"^(?P<indent>\s*){re.escape(section)}:\s*(?:#.*)?$")
    for index, line in enumerate(lines):
        match = pattern.match(line.rstrip("\n"))
        if match:
            return index, match.group("indent")
    raise ValueError(f"no `{section}:` section to write into")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
