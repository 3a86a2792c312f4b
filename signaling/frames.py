"""Parsing and validation of signaling frames, and construction of server frames.

Pure: no I/O. :func:`parse_frame` turns one received WebSocket message into a
:class:`Register`, :class:`Relay` or :class:`Ping`, or raises :class:`FrameError`
carrying the protocol error code. The wire protocol is specified in
``docs/signaling-protocol.md``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SDP_BYTES = 64 * 1024
# Frames must be I-JSON (RFC 7493): unique names, finite numbers, integers exactly
# representable as doubles.
MAX_SAFE_INTEGER = 2**53 - 1
# Deep enough for any RTCIceCandidateInit, shallow enough that re-encoding a
# relayed candidate can never hit the interpreter's recursion limit.
MAX_CANDIDATE_DEPTH = 8

_SESSION_FIELDS = ("type", "to", "sdp", "session", "from")
# The fields each client frame type may carry; any other field is unknown_field.
FIELDS: dict[str, frozenset[str]] = {
    "register": frozenset({"type", "room", "peer", "token"}),
    "ping": frozenset({"type"}),
    "offer": frozenset(_SESSION_FIELDS),
    "answer": frozenset(_SESSION_FIELDS),
    "candidate": frozenset({"type", "to", "candidate", "session", "from"}),
    "bye": frozenset({"type", "to", "session", "reason", "from"}),
}
RELAY_TYPES = frozenset({"offer", "answer", "candidate", "bye"})
CLIENT_TYPES = frozenset(FIELDS)

# Error codes (the "code" field of an error frame).
BAD_JSON = "bad_json"
UNKNOWN_TYPE = "unknown_type"
UNKNOWN_FIELD = "unknown_field"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
NOT_REGISTERED = "not_registered"
ALREADY_REGISTERED = "already_registered"
AUTH_FAILED = "auth_failed"
UNKNOWN_PEER = "unknown_peer"
RATE_LIMITED = "rate_limited"
TOO_BIG = "too_big"


class FrameError(Exception):
    """A received frame was rejected; becomes an error frame sent back to the client."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.ref)


@dataclass(frozen=True)
class Register:
    room: str
    peer: str
    token: str


@dataclass(frozen=True)
class Relay:
    """An offer, answer, candidate or bye for peer ``to``.

    ``frame`` is the received object, kept whole: its fields are forwarded unchanged.
    """

    type: str
    to: str
    frame: dict[str, Any]


@dataclass(frozen=True)
class Ping:
    pass


ClientFrame = Register | Relay | Ping


def parse_frame(message: str | bytes, registered_as: str | None) -> ClientFrame:
    """Parse and validate one client message.

    ``registered_as`` is the sender's registered peer id, or ``None`` before a
    successful register. Checks run in this order: JSON object, ``type``,
    registration state, unknown fields, then the fields of that type.
    """
    obj = _decode(message)
    kind = _frame_type(obj)
    if registered_as is None and kind != "register":
        raise FrameError(NOT_REGISTERED, "the first frame must be a register frame", kind)
    if registered_as is not None and kind == "register":
        raise FrameError(ALREADY_REGISTERED, "this connection is already registered", kind)
    _no_unknown_fields(obj, kind)
    if kind == "register":
        return Register(
            room=_identifier(obj, "room", kind),
            peer=_identifier(obj, "peer", kind),
            token=_string(obj, "token", kind),
        )
    if kind == "ping":
        return Ping()
    assert registered_as is not None
    return _relay(obj, kind, registered_as)


class _NotIJson(ValueError):
    """JSON the protocol does not accept (raised from inside ``json.loads``)."""


def _no_constant(name: str) -> float:
    raise _NotIJson(f"{name} is not a JSON number (RFC 8259)")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotIJson("an object has the same name twice (RFC 7493)")
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400, which Python reads as inf
        raise _NotIJson(f"number {text[:32]} is out of range")
    return value


def _safe_int(text: str) -> int:
    # Length first: a 5,000-digit literal is refused without converting it (and
    # without reaching int()'s own 4,300-digit limit).
    if len(text.lstrip("-")) <= len(str(MAX_SAFE_INTEGER)):
        value = int(text)
        if abs(value) <= MAX_SAFE_INTEGER:
            return value
    shown = text if len(text) <= 24 else f"{text[:24]}... ({len(text)} characters)"
    raise _NotIJson(f"integer {shown} is out of range (|n| <= 2**53-1, RFC 7493)")


def _decode(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise FrameError(BAD_JSON, "frames must be WebSocket text frames")
    try:
        obj = json.loads(
            message,
            object_pairs_hook=_unique_names,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_safe_int,
        )
    except _NotIJson as exc:
        raise FrameError(BAD_JSON, str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise FrameError(BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError(BAD_JSON, "a frame must be a JSON object")
    return obj


def _frame_type(obj: dict[str, Any]) -> str:
    if "type" not in obj:
        raise FrameError(MISSING_FIELD, "missing field 'type'")
    kind = obj["type"]
    if not isinstance(kind, str):
        raise FrameError(BAD_FIELD, "field 'type' must be a string")
    _text(kind, "type", None)  # ``ref`` echoes the type back: it must be text
    if kind not in CLIENT_TYPES:
        raise FrameError(UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}", kind[:64])
    return kind


def _no_unknown_fields(obj: dict[str, Any], kind: str) -> None:
    for field in obj:
        if field not in FIELDS[kind]:
            raise FrameError(
                UNKNOWN_FIELD, f"unknown field {field[:64]!r} for frame type {kind!r}", kind
            )


def _relay(obj: dict[str, Any], kind: str, sender: str) -> Relay:
    to = _identifier(obj, "to", kind)
    if to == sender:
        raise FrameError(BAD_FIELD, "field 'to' must not be the sender's own id", kind)
    if kind in ("offer", "answer"):
        sdp = _string(obj, "sdp", kind)
        if len(sdp.encode("utf-8")) > MAX_SDP_BYTES:
            raise FrameError(TOO_BIG, f"field 'sdp' is over {MAX_SDP_BYTES} bytes", kind)
        _string(obj, "session", kind)
    elif kind == "candidate":
        if "candidate" not in obj:
            raise FrameError(MISSING_FIELD, "missing field 'candidate'", kind)
        if obj["candidate"] is not None and not isinstance(obj["candidate"], dict):
            raise FrameError(BAD_FIELD, "field 'candidate' must be an object or null", kind)
        _json_text(obj["candidate"], "candidate", kind)
        _string(obj, "session", kind)
    else:  # bye
        for optional in ("session", "reason"):
            if optional in obj:
                _string(obj, optional, kind)
    if "from" in obj and obj["from"] != sender:
        raise FrameError(BAD_FIELD, "field 'from' must be absent or the sender's own id", kind)
    return Relay(type=kind, to=to, frame=obj)


def _string(obj: dict[str, Any], field: str, kind: str) -> str:
    if field not in obj:
        raise FrameError(MISSING_FIELD, f"missing field {field!r}", kind)
    value = obj[field]
    if not isinstance(value, str):
        raise FrameError(BAD_FIELD, f"field {field!r} must be a string", kind)
    _text(value, field, kind)
    return value


def _text(value: str, field: str, kind: str | None) -> None:
    """Reject lone surrogates (a JSON escape such as ``\\ud800`` alone): not Unicode text."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError(
            BAD_FIELD, f"field {field!r} holds a lone surrogate (not Unicode text)", kind
        ) from None


def _json_text(value: Any, field: str, kind: str) -> None:
    """Check every string (keys too) and the nesting depth of a JSON value, without recursion."""
    stack = [(value, 1)]  # (value, how many objects and arrays it is nested in, itself included)
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_CANDIDATE_DEPTH:
            raise FrameError(
                BAD_FIELD, f"field {field!r} is nested over {MAX_CANDIDATE_DEPTH} levels", kind
            )
        if isinstance(item, str):
            _text(item, field, kind)
        elif isinstance(item, dict):
            for key, child in item.items():
                _text(key, field, kind)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _identifier(obj: dict[str, Any], field: str, kind: str) -> str:
    value = _string(obj, field, kind)
    if not IDENTIFIER.fullmatch(value):
        raise FrameError(
            BAD_FIELD, f"field {field!r} must match {IDENTIFIER.pattern} (1-64 chars)", kind
        )
    return value


# Frames sent by the server.


def relayed_frame(relay: Relay, sender: str) -> dict[str, Any]:
    """The frame delivered to the target: the received one, ``to`` removed, ``from`` set."""
    frame = {key: value for key, value in relay.frame.items() if key not in ("to", "from")}
    frame["from"] = sender
    return frame


def registered_frame(
    room: str, peer: str, peers: list[str], ice_servers: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "type": "registered",
        "room": room,
        "peer": peer,
        "peers": sorted(peers),
        "ice_servers": ice_servers,
    }


def presence_frame(event: str, peer: str) -> dict[str, Any]:
    return {"type": "presence", "event": event, "peer": peer}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "ref": ref}


def encode(frame: dict[str, Any]) -> str:
    """Serialize a frame for a WebSocket text frame."""
    # ASCII output, so that a frame's length is its size in bytes (signaling.outbox).
    return json.dumps(frame, separators=(",", ":"))
