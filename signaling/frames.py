"""Parsing and validation of signaling frames, and construction of server frames.

Pure: no I/O. :func:`parse_frame` turns one received WebSocket message into a
:class:`Register`, :class:`Relay` or :class:`Ping`, or raises :class:`FrameError`
carrying the protocol error code. The wire protocol is specified in
``docs/signaling-protocol.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SDP_BYTES = 64 * 1024

RELAY_TYPES = frozenset({"offer", "answer", "candidate", "bye"})
CLIENT_TYPES = frozenset({"register", "ping"}) | RELAY_TYPES

# Error codes (the "code" field of an error frame).
BAD_JSON = "bad_json"
UNKNOWN_TYPE = "unknown_type"
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

    ``frame`` is the received object, kept whole so that fields the server does
    not know are forwarded unchanged.
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
    registration state, then the fields of that type.
    """
    obj = _decode(message)
    kind = _frame_type(obj)
    if registered_as is None and kind != "register":
        raise FrameError(NOT_REGISTERED, "the first frame must be a register frame", kind)
    if registered_as is not None and kind == "register":
        raise FrameError(ALREADY_REGISTERED, "this connection is already registered", kind)
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


def _decode(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise FrameError(BAD_JSON, "frames must be WebSocket text frames")
    try:
        obj = json.loads(message)
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
    if kind not in CLIENT_TYPES:
        raise FrameError(UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}", kind[:64])
    return kind


def _relay(obj: dict[str, Any], kind: str, sender: str) -> Relay:
    to = _identifier(obj, "to", kind)
    if kind in ("offer", "answer"):
        sdp = _string(obj, "sdp", kind)
        if len(sdp.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
            raise FrameError(TOO_BIG, f"field 'sdp' is over {MAX_SDP_BYTES} bytes", kind)
        _string(obj, "session", kind)
    elif kind == "candidate":
        if "candidate" not in obj:
            raise FrameError(MISSING_FIELD, "missing field 'candidate'", kind)
        if obj["candidate"] is not None and not isinstance(obj["candidate"], dict):
            raise FrameError(BAD_FIELD, "field 'candidate' must be an object or null", kind)
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
    return value


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
    # ASCII output: a lone surrogate a client sent in a JSON escape stays an escape.
    return json.dumps(frame, separators=(",", ":"))
