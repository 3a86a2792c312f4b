"""Seeded mutations: structure-aware ones on JSON trees, blind ones on bytes, random JSON.

Every function draws only from the `random.Random` it is given, so an input is a pure
function of its case's generator. The values are the ones parsers get wrong: integer and
float boundaries, the constants JSON does not have (`NaN`, `Infinity`), numbers too big
for a double or for `int()`, lone surrogates (raw and escaped), nesting around the
interpreter's recursion limit, strings sized to a limit exactly, repeated names, unknown
fields, and values of the wrong type. `Words` adds what one target's inputs are made of.
"""

from __future__ import annotations

import copy
import random
import sys
from dataclasses import dataclass
from typing import Any

from fuzz.jsontext import Fill, Pairs, Raw, nested


@dataclass(frozen=True)
class Words:
    """What one target's inputs are made of."""

    keys: tuple[str, ...]
    """Its field names."""
    strings: tuple[str, ...]
    """Values that mean something to it: type names, ids, enum values."""
    frame_sizes: tuple[int, ...]
    """Whole-input sizes (UTF-8 bytes) at which it changes behaviour: its size limits."""
    string_sizes: tuple[int, ...]
    """Sizes (UTF-8 bytes) of one string at which it changes behaviour: field limits."""


NUMBERS: tuple[int | float, ...] = (
    0,
    1,
    -1,
    2**31 - 1,
    2**31,
    2**53 - 1,
    2**53,
    2**53 + 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    0.0,
    -0.0,
    0.5,
    1.0,
    3.0,
    1e308,
    -1e308,
    5e-324,
)

RAW_TOKENS = tuple(
    Raw(text)
    for text in (
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1" + "0" * 5_000,  # over int()'s 4,300-digit limit
        "1" + "0" * 4_299,  # just under it
        "-0",
        "1E3",
        "0.0e0",
        "01",
        "+1",
        ".5",
        "1.",
        "tru",
        "nul",
        "'a'",
        '"unterminated',
        '"\\ud800"',  # a lone high surrogate, escaped
        '"\\udc00\\ud800"',  # a pair in the wrong order
        '"\\ud83d\\ude00"',  # a real pair: one character
        '"\\u0000"',
        '"\\x41"',
    )
)

STRINGS = (
    "",
    " ",
    "a",
    "a" * 64,
    "a" * 65,
    "\ud800",
    "\udfff",
    "a\ud800b",
    "\U0001f600",
    "é",
    "👍",
    "\x00",
    "\n",
    "\t",
    "alice\n",
    " alice",
    "a:b",
    "a b",
    "..",
    "-",
    "null",
    "true",
    "0",
    "-1",
    "NaN",
    "\\",
    '"',
    "\u2028",
    "\ufeff",
    "ǅ",
    "İ",
    "a" * 1_000,
)

KEYS = ("", "x", "TYPE", "type ", "Type", "\ud800", "__proto__", "constructor", "a" * 300)

# Pieces inserted into bytes: JSON punctuation, escapes, and broken or overlong UTF-8.
BYTE_TOKENS = (
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"\\ud800",
    b"\\u00",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xc3",  # the first byte of a two-byte sequence, alone
    b"\xc0\x80",  # an overlong NUL
    b"\xed\xa0\x80",  # a surrogate encoded as if it were a character (CESU-8)
    b"\xef\xbb\xbf",  # a byte order mark
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b" " * 64,
)

# What a long string is made of: 1-, 2-, 4- and 6-byte (escaped) characters, and escapes.
FILL_UNITS = ("a", "é", "👍", "\x01", "\\", '"', "\u2028", "\ud800")

FIXED_DEPTHS = (2, 8, 9, 32, 100, 500, 999, 1_000, 1_001, 5_000, 100_000)


def depth(rng: random.Random) -> int:
    """A nesting depth; half of them just under the recursion limit, where parsers that
    recurse (and error messages that `repr` what they got) fail."""
    if rng.random() < 0.5:
        return sys.getrecursionlimit() - rng.randrange(0, 160)
    return rng.choice(FIXED_DEPTHS)


def sized_string(rng: random.Random, size: int) -> str:
    """A string of exactly `size` UTF-8 bytes, of one multi-byte character and `a`s."""
    unit = rng.choice(("a", "é", "👍", "€"))
    width = len(unit.encode())
    return unit * (size // width) + "a" * (size % width)


def interesting(rng: random.Random, words: Words) -> Any:
    """A value a parser might mishandle, or one that means something to the target."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(NUMBERS)
    if kind == 1:
        return rng.choice(RAW_TOKENS)
    if kind in (2, 3):
        return rng.choice(words.strings)
    if kind == 4:
        return rng.choice(STRINGS)
    if kind == 5:
        return rng.choice((None, True, False, [], {}, [None], {"": None}, [0] * 257))
    if kind == 6:
        return sized_string(rng, rng.choice(words.string_sizes) + rng.randint(-1, 1))
    return random_json(rng, words, 2)


def random_json(rng: random.Random, words: Words, levels: int = 4) -> Any:
    """A random JSON value at most `levels` deep, names and strings from `words`."""
    kind = rng.randrange(7 if levels > 0 else 5)
    if kind == 0:
        return rng.choice((None, True, False))
    if kind == 1:
        return rng.choice((rng.randint(-(2**64), 2**64), rng.uniform(-1e6, 1e6)))
    if kind == 2:
        return rng.choice(words.strings + STRINGS)
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(16)))
    if kind == 4:
        return rng.choice(RAW_TOKENS)
    if kind == 5:
        return [random_json(rng, words, levels - 1) for _ in range(rng.randrange(5))]
    return {
        rng.choice(words.keys + KEYS): random_json(rng, words, levels - 1)
        for _ in range(rng.randrange(6))
    }


class TreeMutation:
    """Applies one to three structural mutations to a copy of a JSON tree.

    `fill` is the `Fill` the mutations placed, if any: `jsontext.render` sizes it.
    """

    def __init__(self, rng: random.Random, words: Words) -> None:
        self.rng = rng
        self.words = words
        self.fill: Fill | None = None

    def __call__(self, tree: Any) -> Any:
        tree = copy.deepcopy(tree)
        rng = self.rng
        for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.15)):
            tree = rng.choice(self._OPS)(self, tree)
        return tree

    # Where a value can be changed: (container, key or index) of every value in the tree.
    @staticmethod
    def _slots(tree: Any) -> list[tuple[dict[str, Any] | list[Any], Any]]:
        slots: list[tuple[dict[str, Any] | list[Any], Any]] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                keys = list(node)
            elif isinstance(node, list):
                keys = list(range(len(node)))
            else:
                continue  # a leaf, or a Pairs/Raw/Fill, which are not mutated further
            for key in keys:
                slots.append((node, key))
                stack.append(node[key])
        return slots

    def _slot(self, tree: Any) -> tuple[dict[str, Any] | list[Any], Any] | None:
        slots = self._slots(tree)
        return self.rng.choice(slots) if slots else None

    def _set(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is None:
            return interesting(self.rng, self.words)
        container, key = slot
        container[key] = interesting(self.rng, self.words)
        return tree

    def _delete(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is not None:
            container, key = slot
            del container[key]
        return tree

    def _add(self, tree: Any) -> Any:
        objects = [tree] if isinstance(tree, dict) else []
        objects += [c[k] for c, k in self._slots(tree) if isinstance(c[k], dict)]
        if objects:
            name = self.rng.choice(self.words.keys + KEYS + ("unknown", "extra"))
            self.rng.choice(objects)[name] = interesting(self.rng, self.words)
        return tree

    def _repeat_name(self, tree: Any) -> Any:
        if not isinstance(tree, dict) or not tree:
            return self._set(tree)
        items = list(tree.items())
        name = self.rng.choice(items)[0]
        items.insert(self.rng.randrange(len(items) + 1), (name, interesting(self.rng, self.words)))
        return Pairs(tuple(items))

    def _nest(self, tree: Any) -> Any:
        slot = self._slot(tree)
        value = nested(depth(self.rng), self.rng.choice("[{"))
        if slot is None:
            return value
        container, key = slot
        container[key] = value
        return tree

    def _fill(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is None or self.fill is not None:
            return self._sized(tree)
        container, key = slot
        target = self.rng.choice(self.words.frame_sizes) + self.rng.randint(-2, 2)
        self.fill = container[key] = Fill(self.rng.choice(FILL_UNITS), target)
        return tree

    def _sized(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is not None:
            container, key = slot
            size = self.rng.choice(self.words.string_sizes) + self.rng.randint(-1, 1)
            container[key] = sized_string(self.rng, max(size, 0))
        return tree

    def _retype(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is None:
            return [tree]
        container, key = slot
        value = container[key]
        if isinstance(value, bool) or value is None:
            container[key] = int(bool(value))
        elif isinstance(value, int | float):
            container[key] = self.rng.choice((str(value), float(value), [value], bool(value)))
        elif isinstance(value, str):
            container[key] = self.rng.choice(([value], {value: value}, len(value)))
        elif isinstance(value, list):
            container[key] = {str(i): v for i, v in enumerate(value)}
        elif isinstance(value, dict):
            container[key] = list(value.values())
        return tree

    def _swap(self, tree: Any) -> Any:
        slots = self._slots(tree)
        if len(slots) >= 2:
            (c1, k1), (c2, k2) = self.rng.sample(slots, 2)
            c1[k1], c2[k2] = c2[k2], c1[k1]
        return tree

    def _tweak(self, tree: Any) -> Any:
        strings = [(c, k) for c, k in self._slots(tree) if isinstance(c[k], str)]
        if not strings:
            return self._set(tree)
        container, key = self.rng.choice(strings)
        value = container[key]
        container[key] = self.rng.choice(
            (
                value + "\n",
                " " + value,
                value.upper(),
                value * 2,
                value[:-1],
                value + "\ud800",
                "\udc00" + value,
                value + "é",
                (value + "a" * 65)[:65],
            )
        )
        return tree

    def _word(self, tree: Any) -> Any:
        slot = self._slot(tree)
        if slot is not None:
            container, key = slot
            container[key] = self.rng.choice(self.words.strings)
        return tree

    _OPS = (
        _set,
        _set,
        _delete,
        _add,
        _repeat_name,
        _nest,
        _fill,
        _sized,
        _retype,
        _swap,
        _tweak,
        _word,
        _word,
    )


def mutate_bytes(rng: random.Random, data: bytes, others: tuple[bytes, ...] = ()) -> bytes:
    """One to three blind edits: bit flips, odd bytes, cuts, insertions, splices."""
    buf = bytearray(data)
    for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.2)):
        op = rng.randrange(7)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0x22, 0x5C, 0x7F, 0x80, 0xC3, 0xFF))
        elif op == 2:
            del buf[at:]
        elif op == 3:
            buf[at:at] = rng.choice(BYTE_TOKENS)
        elif op == 4:
            del buf[at : at + rng.randint(1, 16)]
        elif op == 5:
            buf[at:at] = buf[at : at + rng.randint(1, 32)]
        elif others:
            other = rng.choice(others)
            buf[at:] = other[rng.randrange(len(other) + 1) :]
    return bytes(buf)


def garbage_text(rng: random.Random) -> str:
    """Random text: mostly printable, some control characters and non-ASCII."""
    alphabet = rng.choice(('{}[]",:0123456789.eE-+ntrufalsNI\\u', "\x00\x1f\x7f é€👍\u2028"))
    return "".join(
        rng.choice(alphabet) if rng.random() < 0.8 else chr(rng.randrange(0x20, 0x2FFF))
        for _ in range(rng.randrange(200))
    )


def garbage_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(200))
