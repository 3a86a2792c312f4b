"""JSON text including what `json.dumps` refuses to write, for inputs that are almost JSON.

A mutated value is a tree of ordinary JSON values plus two markers: `Raw` (text written
verbatim: `NaN`, `1e400`, a 5,000-digit integer, an escaped lone surrogate, nesting
deeper than any recursive writer could go) and `Pairs` (an object that repeats a name).
`dumps` writes such a tree in one of several `Style`s, since the parsers must not care
about whitespace or escaping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Raw:
    """Written as is."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written from these (name, value) pairs, names possibly repeated."""

    items: tuple[tuple[str, Any], ...]


@dataclass
class Fill:
    """A string grown (with `unit`, then `a`s) until the whole text is `target` UTF-8 bytes.

    Its `text` is set by `render`: how long it must be depends on everything around it.
    """

    unit: str
    target: int
    text: str = ""


@dataclass(frozen=True)
class Style:
    ensure_ascii: bool = False
    """Escape non-ASCII characters (`\\u00e9`) instead of writing them."""
    spaced: bool = False
    """`{"a": 1, "b": 2}` rather than `{"a":1,"b":2}`."""


def nested(depth: int, kind: str = "[", inner: str = "0") -> Raw:
    """`depth` arrays (`[`) or objects (`{`) around `inner`."""
    if kind == "[":
        return Raw("[" * depth + inner + "]" * depth)
    return Raw('{"a":' * depth + inner + "}" * depth)


def dumps(value: Any, style: Style = Style()) -> str:
    """Serialize `value` (JSON values, `Raw`, `Pairs`); the trees fuzzing builds are shallow."""
    comma, colon = (", ", ": ") if style.spaced else (",", ":")
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Fill):
        return _string(value.text, style)
    if isinstance(value, dict | Pairs):
        items = value.items if isinstance(value, Pairs) else value.items()
        return (
            "{" + comma.join(f"{_string(k, style)}{colon}{dumps(v, style)}" for k, v in items) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + comma.join(dumps(v, style) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, style)
    # None, bools, ints and finite floats (NaN and infinities are `Raw`).
    return json.dumps(value)


def render(value: Any, style: Style, fill: Fill | None = None) -> str:
    """`dumps`, with `fill` (a `Fill` somewhere in `value`) sized to its target."""
    text = dumps(value, style)
    if fill is None:
        return text
    missing = fill.target - utf8_len(text)
    unit = utf8_len(_string(fill.unit, style)) - 2  # without the quotes
    if missing > 0:
        fill.text = fill.unit * (missing // unit) + "a" * (missing % unit)
        text = dumps(value, style)
    return text


def utf8_len(text: str) -> int:
    """UTF-8 size of `text`; a lone surrogate counts its 3 bytes (it has no real UTF-8 form)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _string(text: str, style: Style) -> str:
    # ensure_ascii=False writes a lone surrogate as itself: text that has no UTF-8 form.
    return json.dumps(text, ensure_ascii=style.ensure_ascii)
