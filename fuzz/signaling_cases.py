"""Inputs of the signaling campaign: one WebSocket message, from a registered client or not.

Pure: `make_case` draws everything from the case's generator. Messages are mutated client
frames of docs/signaling-protocol.md §4 (as text frames: JSON escapes `\\ud800`, never
raw surrogates, which have no UTF-8 form), random text, binary frames, text frames that
are not UTF-8, and frames sized around the server's `max_size`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from fuzz.jsontext import Fill, Style, nested, render
from fuzz.mutate import TreeMutation, Words, garbage_bytes, garbage_text, mutate_bytes, random_json
from peerlab.signaling.auth import make_token
from peerlab.signaling.frames import MAX_CANDIDATE_DEPTH, MAX_SDP_BYTES
from peerlab.signaling.server import ServerConfig

SECRET = "fuzz-secret"
ROOM = "lab"
FUZZER = "mallory"
"""The registered fuzzing client. No other client's token is ever generated."""
NEWCOMER = "newcomer"
"""Who an unregistered connection registers as, when its mutated register is valid."""
PAIR = ("alice", "bob")
MAX_SIZE = ServerConfig(secret=SECRET).max_size
SYNC = "sync-"
"""Prefix of the frame type the campaign sends after each case's message (never generated)."""

SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
SESSION = "6f1c2d0e-mallory-bob-1"
CANDIDATE = {"candidate": "candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host", "sdpMid": "0"}


def _deep_candidate(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"sdpMLineIndex": 0}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


REGISTERED_SEEDS: tuple[dict[str, Any], ...] = (
    {"type": "offer", "to": "bob", "sdp": SDP, "session": SESSION},
    {"type": "answer", "to": "alice", "sdp": SDP, "session": SESSION, "from": FUZZER},
    {"type": "candidate", "to": "bob", "candidate": CANDIDATE, "session": SESSION},
    {"type": "candidate", "to": "alice", "candidate": None, "session": SESSION},
    {"type": "candidate", "to": "bob", "candidate": _deep_candidate(MAX_CANDIDATE_DEPTH)},
    {"type": "bye", "to": "alice", "session": SESSION, "reason": "closing"},
    {"type": "bye", "to": "bob"},
    {"type": "ping"},
    {"type": "register", "room": ROOM, "peer": FUZZER, "token": make_token(SECRET, ROOM, FUZZER)},
    {"type": "offer", "to": "nobody", "sdp": SDP, "session": SESSION},
)
FRESH_SEEDS: tuple[dict[str, Any], ...] = (
    {
        "type": "register",
        "room": ROOM,
        "peer": NEWCOMER,
        "token": make_token(SECRET, ROOM, NEWCOMER),
    },
    {
        "type": "register",
        "room": "other",
        "peer": NEWCOMER,
        "token": make_token(SECRET, "other", NEWCOMER),
    },
    {"type": "register", "room": ROOM, "peer": NEWCOMER, "token": "0" * 64},
    {"type": "ping"},
    {"type": "offer", "to": "bob", "sdp": SDP, "session": SESSION},
)

WORDS = Words(
    keys=("type", "room", "peer", "token", "to", "sdp", "session", "from", "candidate", "reason"),
    strings=(
        "register",
        "offer",
        "answer",
        "candidate",
        "bye",
        "ping",
        "pong",
        "error",
        *PAIR,
        FUZZER,
        NEWCOMER,
        ROOM,
        "other",
        "nobody",
        SESSION,
        "a" * 64,
    ),
    frame_sizes=(MAX_SIZE,),
    string_sizes=(0, 64, MAX_SDP_BYTES),
)

# Bytes no UTF-8 text holds: a stray continuation byte, a lead byte alone, an encoded
# surrogate, an overlong encoding, a code point above U+10FFFF.
NOT_UTF8 = (b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80")


@dataclass(frozen=True)
class SignalingCase:
    registered: bool
    """Sent by the registered fuzzing client (else by a connection that has not registered)."""
    payload: str | bytes
    binary: bool
    """A binary frame; else a text frame (if `payload` is bytes, maybe not UTF-8)."""

    @property
    def size(self) -> int:
        return len(self.payload.encode() if isinstance(self.payload, str) else self.payload)

    def literal(self) -> str:
        return (
            f"SignalingCase(registered={self.registered!r}, payload={self.payload!r}, "
            f"binary={self.binary!r})"
        )


def make_case(rng: random.Random) -> SignalingCase:
    registered = rng.random() < 0.7
    seeds = REGISTERED_SEEDS if registered else FRESH_SEEDS
    # Escaped non-ASCII: a text frame's str must have a UTF-8 form (no raw lone surrogate).
    style = Style(ensure_ascii=True, spaced=rng.random() < 0.2)
    kind = rng.random()
    payload: str | bytes
    if kind < 0.04:
        payload = render(rng.choice(seeds), style)
    elif kind < 0.82:
        mutation = TreeMutation(rng, WORDS)
        payload = render(mutation(rng.choice(seeds)), style, mutation.fill)
        if rng.random() < 0.1:
            blind = mutate_bytes(
                rng, payload.encode(), tuple(json.dumps(s).encode() for s in seeds)
            )
            payload = blind.decode("utf-8", "replace")  # blind, but still a text frame
    elif kind < 0.88:
        payload = rng.choice((garbage_text(rng), render(random_json(rng, WORDS), style)))
    elif kind < 0.94:
        binary = rng.choice((garbage_bytes(rng), render(rng.choice(seeds), style).encode()))
        return SignalingCase(registered, binary, binary=True)
    elif kind < 0.95:
        text = bytearray(render(rng.choice(seeds), style).encode())
        at = rng.randrange(len(text) + 1)
        text[at:at] = rng.choice(NOT_UTF8)
        return SignalingCase(registered, bytes(text), binary=False)
    elif kind < 0.97:
        # Deeply nested candidates: the relay re-encodes what it forwards.
        frame = dict(rng.choice(REGISTERED_SEEDS[2:5]))
        frame["candidate"] = _deep_candidate(MAX_CANDIDATE_DEPTH + rng.randint(-1, 1))
        if rng.random() < 0.5:
            frame["candidate"] = nested(rng.randint(1, 100_000), rng.choice("[{"))
        payload = render(frame, style)
    else:
        # A frame at the server's size limit, give or take a few bytes (over it: close 1009).
        frame = dict(REGISTERED_SEEDS[0])
        fill = frame["sdp"] = Fill(rng.choice(("a", "é", "\x01")), MAX_SIZE + rng.randint(-3, 3))
        payload = render(frame, style, fill)
    return SignalingCase(registered, payload, binary=False)
