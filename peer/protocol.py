"""The data-channel wire protocol: message types, `ChannelMessage` and its strict JSON codec.

Pure: no I/O and no clock. Every frame is one JSON object carrying `type`, `id`,
`timestamp` and `sender`; the other fields depend on the type (see
docs/protocol.md, which is the normative description of this module).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from peerlab.signaling.frames import IDENTIFIER as PEER_ID

PROTOCOL_VERSION = 1

MAX_FRAME_BYTES = 65_536
"""Largest frame (UTF-8 bytes of the frame text), the only limit on a frame's size: aiortc
refuses larger data-channel messages by default."""

MAX_BODY_BYTES = 32_768
"""Largest text/edit body (UTF-8 bytes)."""

MAX_ACKED_IDS = 256
"""Most message ids one ack frame may carry."""

MAX_EMOJI_CHARS = 32

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""The shape of every id in a frame (message, peer, conversation, epoch); matched with
`fullmatch`. A peer id the agent accepts from its user is narrower: `PEER_ID`, the
signaling server's own rule (no `:`), since a peer id must be one that can register."""


class MessageType(StrEnum):
    TEXT = "text"
    EDIT = "edit"
    DELETE = "delete"
    REACTION = "reaction"
    TYPING = "typing"
    ACK = "ack"
    HEARTBEAT = "heartbeat"


RELIABLE_TYPES = frozenset(
    {MessageType.TEXT, MessageType.EDIT, MessageType.DELETE, MessageType.REACTION}
)
"""Types that are sequenced, acked by the receiver and retransmitted until acked."""


class ReactionAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class TypingState(StrEnum):
    STARTED = "started"
    STOPPED = "stopped"


class ProtocolError(ValueError):
    """A frame that is not a valid message. `code` is stable; the text says what was wrong."""

    def __init__(self, code: str, message: str, message_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.message_id = message_id


class ChannelMessage(NamedTuple):
    """One protocol message. Fields a type does not use are None.

    A NamedTuple rather than a frozen dataclass: it is built for every message sent and
    received, and tuples are an order of magnitude cheaper to create and to copy.
    """

    type: MessageType
    id: str
    timestamp: int
    sender: str
    conversation: str | None = None
    epoch: str | None = None
    seq: int | None = None
    base: int | None = None
    body: str | None = None
    target: str | None = None
    emoji: str | None = None
    action: ReactionAction | None = None
    state: TypingState | None = None
    acked_ids: tuple[str, ...] | None = None

    @property
    def reliable(self) -> bool:
        return self.type in RELIABLE_TYPES


# ---- field validators: each returns the decoded value or raises ProtocolError ----


def _bad(field: str, why: str) -> ProtocolError:
    return ProtocolError("bad_field", f"field {field!r} {why}")


def _identifier(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise _bad(field, "must be a string of 1-64 characters from [A-Za-z0-9_.:-]")
    return value


def _non_negative_int(field: str, value: Any) -> int:
    # bool is a subclass of int in Python; JSON true is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(field, "must be a non-negative integer")
    return value


def _utf8(field: str, value: str) -> bytes:
    """The UTF-8 bytes of a free-text field. The free-text fields (`body`, `emoji`) are the
    only ones where an unpaired surrogate is not already a syntax error: it is `bad_string`."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "bad_string", f"field {field!r} contains an unpaired surrogate (no UTF-8 form)"
        ) from None


def _body(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(field, "must be a string")
    # Whether the escaped body fits in a frame is the frame's limit, checked on the frame.
    if len(_utf8(field, value)) > MAX_BODY_BYTES:
        raise ProtocolError("too_big", f"field {field!r} is over {MAX_BODY_BYTES} bytes")
    return value


def _emoji(field: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EMOJI_CHARS:
        raise _bad(field, f"must be a string of 1-{MAX_EMOJI_CHARS} characters")
    _utf8(field, value)
    return value


def _enum(enum: type[StrEnum]) -> Callable[[str, Any], StrEnum]:
    allowed = ", ".join(repr(m.value) for m in enum)

    def check(field: str, value: Any) -> StrEnum:
        # A non-string is refused before the enum sees it: its error message would repr
        # the value, and a deeply nested list recurses past the limit json.loads reached.
        if not isinstance(value, str):
            raise _bad(field, f"must be one of {allowed}")
        try:
            return enum(value)
        except ValueError:
            raise _bad(field, f"must be one of {allowed}") from None

    return check


def _acked_ids(field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ACKED_IDS:
        raise _bad(field, f"must be a list of 1-{MAX_ACKED_IDS} message ids")
    return tuple(_identifier(f"{field}[{i}]", v) for i, v in enumerate(value))


_COMMON = {
    "id": _identifier,
    "timestamp": _non_negative_int,
    "sender": _identifier,
}
_SEQUENCED = {
    "conversation": _identifier,
    "epoch": _identifier,
    "seq": _non_negative_int,
    "base": _non_negative_int,
}

SCHEMA: Mapping[MessageType, Mapping[str, Callable[[str, Any], Any]]] = {
    MessageType.TEXT: {**_COMMON, **_SEQUENCED, "body": _body},
    MessageType.EDIT: {**_COMMON, **_SEQUENCED, "target": _identifier, "body": _body},
    MessageType.DELETE: {**_COMMON, **_SEQUENCED, "target": _identifier},
    MessageType.REACTION: {
        **_COMMON,
        **_SEQUENCED,
        "target": _identifier,
        "emoji": _emoji,
        "action": _enum(ReactionAction),
    },
    MessageType.TYPING: {**_COMMON, "conversation": _identifier, "state": _enum(TypingState)},
    MessageType.ACK: {**_COMMON, "acked_ids": _acked_ids},
    MessageType.HEARTBEAT: dict(_COMMON),
}
"""Required fields per type, each with its validator. Every field listed is required;
no other field is allowed."""


_OPTIONAL_FIELDS = tuple(ChannelMessage._field_defaults)


def check_identifier(what: str, value: Any) -> str:
    """Validate a conversation or message id as a frame field."""
    return _identifier(what, value)


def check_peer_id(what: str, value: Any) -> str:
    """Validate the id of a peer to talk to: one the signaling server would register."""
    if not isinstance(value, str) or not PEER_ID.fullmatch(value):
        raise _bad(what, f"must be a peer id the signaling server accepts ({PEER_ID.pattern})")
    return value


def check_fields(message_type: MessageType, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate some fields of a message of this type (what an application supplies);
    returns them normalized (enums). The send path uses it to refuse bad input before a
    sequence number is spent on it."""
    schema = SCHEMA[message_type]
    values = {}
    for name, value in fields.items():
        if name not in schema:
            raise ProtocolError("unknown_field", f"{message_type} message has no field {name!r}")
        values[name] = schema[name](name, value)
    return values


def decode(frame: str | bytes) -> ChannelMessage:
    """Parse and validate one frame; raise ProtocolError saying exactly what is wrong."""
    _check_size(len(frame) if isinstance(frame, bytes) else _utf8_len(frame))
    try:
        # Frames are UTF-8: json.loads would also guess UTF-16/32 from bytes.
        obj = json.loads(
            frame.decode("utf-8") if isinstance(frame, bytes) else frame,
            parse_constant=_not_json,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "frame must be a JSON object")
    return _validate(obj)


def _not_json(constant: str) -> None:
    # json.loads accepts NaN, Infinity and -Infinity by default; RFC 8259 does not.
    raise ValueError(f"{constant} is not a JSON value (RFC 8259)")


def encode(message: ChannelMessage, *, checked: bool = False) -> str:
    """Serialize a message; refuses anything `decode` would reject, so bad frames never leave.

    `checked=True` skips validation, for a message this process built from parts it has
    validated already (MessageChannel's send path, where it counts).
    """
    schema = SCHEMA[message.type]
    obj: dict[str, Any] = {"type": message.type.value}
    for name in schema:
        value = getattr(message, name)
        if value is not None:
            obj[name] = list(value) if isinstance(value, tuple) else value
    if not checked:
        extra = [f for f in _OPTIONAL_FIELDS if f not in schema and getattr(message, f) is not None]
        if extra:
            raise ProtocolError(
                "unknown_field", f"{message.type} message has unknown field(s) {extra}", message.id
            )
        _validate(obj)  # one set of rules for both directions
    frame = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    _check_size(_utf8_len(frame))
    return frame


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def frame_size(message: ChannelMessage) -> int:
    """The message's frame size in bytes; raises `too_big` when the frame is over the limit."""
    return _utf8_len(encode(message, checked=True))


def _check_size(size: int) -> None:
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(
            "too_big", f"frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit"
        )


def _validate(obj: dict[str, Any]) -> ChannelMessage:
    message_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if "type" not in obj:
        raise ProtocolError("missing_field", "field 'type' is missing", message_id)
    try:
        mtype = MessageType(obj["type"])
    except (ValueError, TypeError):
        raise ProtocolError(
            "unknown_type", f"unknown message type {obj['type']!r}", message_id
        ) from None
    schema = SCHEMA[mtype]
    values: dict[str, Any] = {"type": mtype}
    for name, check in schema.items():
        if name not in obj:
            raise ProtocolError(
                "missing_field", f"{mtype} message is missing field {name!r}", message_id
            )
        try:
            values[name] = check(name, obj[name])
        except ProtocolError as exc:
            exc.message_id = message_id
            raise
    if len(obj) != len(schema) + 1:
        extra = sorted(set(obj) - set(schema) - {"type"})
        raise ProtocolError(
            "unknown_field", f"{mtype} message has unknown field(s) {extra}", message_id
        )
    if "base" in values and values["base"] > values["seq"]:
        raise ProtocolError("bad_field", "field 'base' must not exceed 'seq'", message_id)
    return ChannelMessage(**values)
