"""The decoder campaign: mutated and random frames into `peerlab.peer.protocol.decode`.

Invariants (docs/protocol.md §6, §7):
- `decode` returns a `ChannelMessage` or raises `ProtocolError` with one of the codes a
  frame can get (`DECODE_CODES`); any other exception is a finding;
- a frame over `MAX_FRAME_BYTES` is `too_big`, and one that is not an RFC 8259 JSON
  object in UTF-8 is `bad_json` (the first two steps of §6, checked independently);
- every frame `decode` accepts survives the round trip: `decode(encode(m)) == m`.
"""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Callable
from typing import Any

from fuzz.campaign import Budget, Cases, Report, case_rng, counts
from fuzz.jsontext import Style, render, utf8_len
from fuzz.mutate import TreeMutation, Words, garbage_bytes, garbage_text, mutate_bytes, random_json
from peerlab.peer.protocol import (
    MAX_BODY_BYTES,
    MAX_EMOJI_CHARS,
    MAX_FRAME_BYTES,
    ChannelMessage,
    MessageType,
    ProtocolError,
    decode,
    encode,
)

TARGET = "decoder"

DECODE_CODES = frozenset(
    {
        "bad_json",
        "unknown_type",
        "missing_field",
        "bad_field",
        "bad_string",
        "unknown_field",
        "too_big",
    }
)
"""The codes of docs/protocol.md §7 that `decode` can give; `wrong_sender` is the channel's."""

_COMMON = {"id": "5f2b1c0e8a9d4e7f9b3a6c1d2e4f5a6b", "timestamp": 1764100000000, "sender": "alice"}
_SEQUENCED = {"conversation": "general", "epoch": "9f86d081884c7d65", "seq": 4, "base": 3}
SEEDS: tuple[dict[str, Any], ...] = (
    # The examples of docs/protocol.md §4, one per type, then some at their limits.
    {"type": "text", **_COMMON, **_SEQUENCED, "body": "Hello, Bob! ☃"},
    {"type": "edit", **_COMMON, **_SEQUENCED, "target": "0c7e2a9b", "body": "Hello, Bob!"},
    {"type": "delete", **_COMMON, **_SEQUENCED, "target": "0c7e2a9b"},
    {
        "type": "reaction",
        **_COMMON,
        **_SEQUENCED,
        "target": "5f2b1c0e",
        "emoji": "👍",
        "action": "add",
    },
    {"type": "typing", **_COMMON, "conversation": "general", "state": "started"},
    {"type": "ack", **_COMMON, "acked_ids": ["5f2b1c0e", "0c7e2a9b"]},
    {"type": "heartbeat", **_COMMON},
    {"type": "ack", **_COMMON, "acked_ids": [f"{i:032x}" for i in range(256)]},
    {"type": "text", **_COMMON, **_SEQUENCED, "seq": 2**53 - 1, "base": 0, "body": ""},
    {
        "type": "reaction",
        **_COMMON,
        **_SEQUENCED,
        "target": "x" * 64,
        "emoji": "👍" * MAX_EMOJI_CHARS,
        "action": "remove",
    },
)
SEED_TEXTS = tuple(json.dumps(seed).encode() for seed in SEEDS)

WORDS = Words(
    keys=tuple(dict.fromkeys(key for seed in SEEDS for key in seed)),
    strings=(
        *(t.value for t in MessageType),
        "add",
        "remove",
        "started",
        "stopped",
        "alice",
        "bob",
        "general",
        "9f86d081884c7d65",
        "a" * 64,
        "a:b",
        "x.y_z-0",
    ),
    frame_sizes=(MAX_FRAME_BYTES,),
    string_sizes=(0, 64, MAX_EMOJI_CHARS * 4, MAX_BODY_BYTES, MAX_FRAME_BYTES),
)

Decode = Callable[[str | bytes], ChannelMessage]
Encode = Callable[[ChannelMessage], str]


def make_frame(rng: random.Random) -> str | bytes:
    """Case input: a frame, as text (which may hold lone surrogates) or as bytes."""
    kind = rng.random()
    style = Style(ensure_ascii=rng.random() < 0.3, spaced=rng.random() < 0.2)
    frame: str | bytes
    if kind < 0.05:
        frame = json.dumps(rng.choice(SEEDS), ensure_ascii=style.ensure_ascii)
    elif kind < 0.78:
        mutation = TreeMutation(rng, WORDS)
        frame = render(mutation(rng.choice(SEEDS)), style, mutation.fill)
        if rng.random() < 0.15:
            frame = mutate_bytes(rng, frame.encode("utf-8", "surrogatepass"), SEED_TEXTS)
    elif kind < 0.88:
        frame = mutate_bytes(rng, rng.choice(SEED_TEXTS), SEED_TEXTS)
    elif kind < 0.95:
        frame = render(random_json(rng, WORDS), style)
    elif kind < 0.98:
        frame = garbage_text(rng)
    else:
        frame = garbage_bytes(rng)
    # decode takes both; the same frame either way, except where it is not UTF-8.
    if isinstance(frame, str) and rng.random() < 0.4:
        return frame.encode("utf-8", "surrogatepass")
    if isinstance(frame, bytes) and rng.random() < 0.5:
        try:
            return frame.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return frame


def expected_code(frame: str | bytes) -> str | None:
    """The code docs/protocol.md §6 steps 1-2 give this frame, None if they pass it on."""
    size = len(frame) if isinstance(frame, bytes) else utf8_len(frame)
    if size > MAX_FRAME_BYTES:
        return "too_big"
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return "bad_json"
    except RecursionError:
        return None  # how deep is too deep depends on the caller's stack: no expectation
    return None if isinstance(value, dict) else "bad_json"


def _not_json(constant: str) -> None:
    raise ValueError(constant)


def check(frame: str | bytes, decode: Decode, encode: Encode) -> tuple[str, str | None]:
    """(outcome, problem): the outcome is `accepted`, an error code or `crash`."""
    try:
        message = decode(frame)
    except ProtocolError as exc:
        if exc.code not in DECODE_CODES:
            return exc.code, f"ProtocolError with a code not in docs/protocol.md §7: {exc.code!r}"
        expected = expected_code(frame)
        if expected is not None and exc.code != expected:
            return exc.code, f"rejected as {exc.code!r} ({exc}), docs/protocol.md §6: {expected!r}"
        return exc.code, None
    except Exception as exc:  # what the campaign hunts: anything but a ProtocolError
        return "crash", f"decode raised {_described(exc)}"
    expected = expected_code(frame)
    if expected is not None:
        return "accepted", f"accepted, but docs/protocol.md §6 says {expected!r}"
    if not isinstance(message, ChannelMessage):
        return "accepted", f"decode returned {type(message).__name__}, not a ChannelMessage"
    try:
        again = decode(encode(message))
    except Exception as exc:  # encode refusing (or crashing on) what decode accepted
        return "accepted", f"round trip: decode(encode(m)) raised {_described(exc)}"
    if again != message:
        return "accepted", f"round trip changed the message: {message!r} became {again!r}"
    return "accepted", None


def _described(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename}:{where.lineno} ({where.name})" if where else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{at}"


def run(
    seed: int,
    budget: Budget,
    only: int | None = None,
    *,
    decode: Decode = decode,
    encode: Encode = encode,
) -> Report:
    report = Report(TARGET, seed)
    for case in Cases(report, budget, only):
        frame = make_frame(case_rng(TARGET, seed, case))
        outcome, problem = check(frame, decode, encode)
        report.cases += 1
        report.outcomes[outcome] += 1
        if problem is not None:
            report.find(case, problem, repr(frame))
        if only is not None:
            report.trace += [f"input: {frame!r}", f"outcome: {outcome}"]
    rejected = report.outcomes.copy()
    accepted = rejected.pop("accepted", 0)
    report.details += [
        f"accepted={accepted}",
        f"rejected={rejected.total()}",
        f"by code {counts(rejected)}",
    ]
    return report
