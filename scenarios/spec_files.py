"""Reading PeerLab's YAML files — declarative scenarios and network profiles — against
their JSON Schemas (scenarios/schemas/, published in docs/scenarios.md and
docs/profiles.md). Every error names the file, the line and the field, and says what was
expected: `chat.yaml:14: faults[0].partition.betwen: unknown key; expected one of
between, direction`. Pure but for reading the file.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).parent / "schemas"
Where = tuple[str | int, ...]

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


class SpecError(ValueError):
    """A file that cannot be used; the message starts with `file:line: field:`."""


@cache
def schema(name: str) -> dict[str, Any]:
    """A shipped JSON Schema ("scenario" or "profile")."""
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def field_name(where: Where) -> str:
    """`faults[0].partition.between` for ("faults", 0, "partition", "between")."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


class Document:
    """A parsed YAML file: its data and the line of every mapping key and list item."""

    def __init__(self, path: Path, text: str):
        self.path = path
        try:
            self.data = yaml.safe_load(text)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            raise SpecError(f"{path}:{line}: not valid YAML: {exc}") from None
        self.lines: dict[Where, int] = {}
        if node is not None:
            self._index(node, ())

    @classmethod
    def read(cls, path: Path) -> Document:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: cannot read it: {exc}") from None
        return cls(path, text)

    def _index(self, node: yaml.Node, where: Where) -> None:
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._index(value, (*where, key.value))
                # A key's own line beats its value's (a nested mapping starts below it).
                self.lines[(*where, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*where, i))

    def line(self, where: Where) -> int:
        """The line of `where`, or of its nearest ancestor that has one."""
        while where not in self.lines and where:
            where = where[:-1]
        return self.lines.get(where, 1)

    def error(self, where: Where, message: str) -> SpecError:
        return SpecError(f"{self.path}:{self.line(where)}: {field_name(where)}: {message}")

    def validate(self, schema_name: str) -> None:
        """Check the data against a shipped schema; SpecError for the first problem in
        file order."""
        validator = jsonschema.Draft202012Validator(schema(schema_name))
        problems = sorted(
            (self._explain(e) for e in validator.iter_errors(self.data)),
            # In file order; on one line, an unknown key first: it explains the rest.
            key=lambda found: (self.line(found[0]), "unknown key" not in found[1]),
        )
        if problems:
            where, message = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise self.error(where, message + more)

    def _explain(self, error: jsonschema.ValidationError) -> tuple[Where, str]:
        where: Where = tuple(error.absolute_path)
        rule = error.schema if isinstance(error.schema, dict) else {}
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = sorted(rule.get("properties", {}))
            extra = sorted(k for k in error.instance if k not in rule.get("properties", {}))
            expected = f"expected one of {', '.join(known)}" if known else "no keys allowed"
            return (*where, extra[0]), f"unknown key; {expected}"
        if error.validator == "required":
            return where, error.message.replace("is a required property", "is required")
        if error.validator == "oneOf" and where[:1] == ("faults",):
            kinds = [next(iter(option["required"])) for option in rule["oneOf"]]
            return where, f"expected exactly one fault kind: {', '.join(kinds)}"
        deeper = [e for e in error.context or () if len(e.absolute_path) > len(where)]
        if error.validator == "anyOf" and deeper:
            # The instance had the shape of one branch and failed inside it: say where.
            return self._explain(jsonschema.exceptions.best_match(deeper))
        if error.validator in ("anyOf", "oneOf") and "title" in rule:
            return where, f"expected {rule['title']}; got {error.instance!r}"
        if error.validator == "enum":
            choices = ", ".join(map(str, rule["enum"]))
            return where, f"expected one of {choices}; got {error.instance!r}"
        return where, error.message


def duration(value: Any) -> float:
    """Seconds from a schema-valid duration: a number, or "500ms" / "5s" / "2m"."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    assert match, value  # the schema let only these through
    return float(match.group(1)) * _UNITS[match.group(2)]
