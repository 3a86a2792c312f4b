"""The data-channel wire protocol: message types, `ChannelMessage` and its strict JSON codec.

Pure: no I/O and no clock. Every message frame is one JSON object carrying `type`, `id`,
`timestamp` and `sender`; the other fields depend on the type (see docs/protocol.md,
which is the normative description of this module). Two ends that both announced the
`batch` extension in their SDP for a connection (`announce_features`, `sdp_features`)
may also carry several message frames and acks in one `batch` frame (`FrameBatcher`,
`decode_frame`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from json.encoder import encode_basestring as _json_string
from operator import itemgetter
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

MAX_BATCH_MESSAGES = 256
"""Most message frames one batch frame may carry."""

BATCH = "batch"
"""The `type` of a batch frame, and the name of the extension that allows it."""

FEATURES = frozenset({BATCH})
"""The extensions this implementation announces and understands (docs/protocol.md §13)."""

SDP_FEATURES_ATTRIBUTE = "peerlab-features"
"""The session-level SDP attribute that announces a peer's extensions."""

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""The shape of every id in a frame (message, peer, conversation, epoch); matched with
`fullmatch`. A peer id the agent accepts from its user is narrower: `PEER_ID`, the
signaling server's own rule (no `:`), since a peer id must be one that can register."""

_IDENTIFIER_MATCH = _IDENTIFIER.fullmatch
_IDENTIFIERS = re.compile(r"[A-Za-z0-9_.:-]{1,64}(?:,[A-Za-z0-9_.:-]{1,64})*")
"""Identifiers joined by commas (a comma is not an identifier character)."""


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
    # An ack carries up to 256 ids: one match over all of them, unless one is bad (a
    # comma inside an id shows in the count); then the first bad one is named.
    try:
        joined = ",".join(value)
    except TypeError:
        joined = None
    if joined is None or not (
        _IDENTIFIERS.fullmatch(joined) and joined.count(",") == len(value) - 1
    ):
        for i, v in enumerate(value):
            _identifier(f"{field}[{i}]", v)
    return tuple(value)


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
_FIELD_INDEX = {name: i for i, name in enumerate(ChannelMessage._fields)}


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
    """Parse and validate one message frame; raise ProtocolError saying exactly what is wrong.

    A `batch` frame is `unknown_type` here, as for a peer that did not negotiate it."""
    message = _fast_text(frame)
    return _validate(_parse(frame)) if message is None else message


def decode_frame(frame: str | bytes, *, batch: bool) -> Frame:
    """Parse and validate one data-channel frame: a message frame, or (when `batch`: this
    connection negotiated the extension) a batch frame. Without `batch` a batch frame is
    `unknown_type`, as for an older peer.

    A batch frame is valid as a whole or not at all: the first invalid part decides the
    error (for a message in it the text says which, `messages[i]: ...`), and nothing of
    it is returned.
    """
    message = _fast_text(frame)
    if message is not None:
        return _new_tuple(Frame, ((message,), ()))
    if batch:
        acked_ids = _fast_acks(frame)
        if acked_ids is not None:
            return _new_tuple(Frame, ((), acked_ids))
    obj = _parse(frame)
    if batch and obj.get("type") == BATCH:
        return _validate_batch(obj)
    return _new_tuple(Frame, ((_validate(obj),), ()))


def _parse(frame: str | bytes) -> dict[str, Any]:
    """Steps 1 and 2 of docs/protocol.md §6: the size, then a JSON object."""
    check_frame_size(len(frame) if isinstance(frame, bytes) else _utf8_len(frame))
    try:
        # Frames are UTF-8: json.loads would also guess UTF-16/32 from bytes.
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        try:
            # The scanner alone, for a frame with no surrounding whitespace (every frame
            # the reference peer writes); anything else takes the full decoder's path.
            obj, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            obj = _JSON.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "frame must be a JSON object")
    return obj


def _not_json(constant: str) -> None:
    # json.loads accepts NaN, Infinity and -Infinity by default; RFC 8259 does not.
    raise ValueError(f"{constant} is not a JSON value (RFC 8259)")


_JSON = json.JSONDecoder(parse_constant=_not_json)
"""One decoder for every frame: json.loads(..., parse_constant=...) builds a new one per
call, a third of the cost of parsing a small frame."""
_SCAN = _JSON.scan_once


def encode(message: ChannelMessage, *, checked: bool = False) -> str:
    """Serialize a message; refuses anything `decode` would reject, so bad frames never leave.

    `checked=True` skips validation, for a message this process built from parts it has
    validated already (the send path, where it counts).

    The output is exactly `json.dumps(obj, ensure_ascii=False, separators=(",", ":"))` of
    the frame's object, built from a per-type template instead: every message crosses
    this function, and a valid identifier, integer or enum value never needs escaping,
    so only the free text and the id lists are rendered one by one.
    """
    template = _TEMPLATES[message.type]
    values = template.fields(message)
    if not checked or None in values:  # a missing field, even in a checked message
        _check_message(message)
    if template.renders:
        values = list(values)
        for index, render in template.renders:
            values[index] = render(values[index])
        values = tuple(values)
    frame = template.text % values
    check_frame_size(_utf8_len(frame))
    return frame


def _check_message(message: ChannelMessage) -> None:
    """Raise what `decode` would raise for the frame of this message."""
    schema = SCHEMA[message.type]
    extra = [f for f in _OPTIONAL_FIELDS if f not in schema and getattr(message, f) is not None]
    if extra:
        raise ProtocolError(
            "unknown_field", f"{message.type} message has unknown field(s) {extra}", message.id
        )
    obj: dict[str, Any] = {"type": message.type.value}
    for name in schema:
        value = getattr(message, name)
        if value is not None:
            obj[name] = list(value) if isinstance(value, tuple) else value
    _validate(obj)  # one set of rules for both directions


def _id_list(values: tuple[str, ...]) -> str:
    # Identifiers: their characters never need a JSON escape.
    return '["' + '","'.join(values) + '"]'


class _Template(NamedTuple):
    text: str
    """The frame, with a %-conversion per field."""
    fields: Callable[[ChannelMessage], tuple[Any, ...]]
    """The message's values of those fields, in order."""
    renders: tuple[tuple[int, Callable[[Any], str]], ...]
    """(position in those values, function writing it as JSON) for the values that need
    one: free text goes through JSON's own string escaper; the others fit the template
    as they are (%s of an identifier or enum value between quotes, %d of an integer,
    which is what json.dumps writes)."""


def _template(message_type: MessageType) -> _Template:
    conversions = {_identifier: '"%s"', _non_negative_int: "%d"}
    renders = {_body: _json_string, _emoji: _json_string, _acked_ids: _id_list}
    parts, positions, rendered = [f'{{"type":"{message_type.value}"'], [], []
    for index, (name, check) in enumerate(SCHEMA[message_type].items()):
        parts.append(f',"{name}":' + conversions.get(check, "%s" if check in renders else '"%s"'))
        positions.append(_FIELD_INDEX[name])
        if check in renders:
            rendered.append((index, renders[check]))
    return _Template("".join(parts) + "}", itemgetter(*positions), tuple(rendered))


_TEMPLATES = {t: _template(t) for t in MessageType}


def _utf8_len(text: str) -> int:
    # isascii() is O(1) on CPython's compact strings, and most frames are ASCII.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def frame_size(message: ChannelMessage) -> int:
    """The message's frame size in bytes; raises `too_big` when the frame is over the limit."""
    return _utf8_len(encode(message, checked=True))


def check_frame_size(size: int) -> None:
    """Raise `too_big` when a frame of `size` UTF-8 bytes is over the limit."""
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(
            "too_big", f"frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit"
        )


def _validate(obj: dict[str, Any]) -> ChannelMessage:
    raw_id = obj.get("id")
    message_id = raw_id if isinstance(raw_id, str) else None
    if "type" not in obj:
        raise ProtocolError("missing_field", "field 'type' is missing", message_id)
    raw_type = obj["type"]
    mtype = _TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if mtype is None:
        raise ProtocolError("unknown_type", f"unknown message type {raw_type!r}", message_id)
    checks = _CHECKS[mtype]
    values = [mtype, *_UNSET]
    for name, index, check in checks:
        if name not in obj:
            raise ProtocolError(
                "missing_field", f"{mtype} message is missing field {name!r}", message_id
            )
        value = obj[name]
        # The two commonest checks inline (a call costs more than the check); anything
        # else, and anything failing them, goes through the field's checker.
        if check is _identifier:
            if value.__class__ is str and _IDENTIFIER_MATCH(value):
                values[index] = value
                continue
        elif check is _non_negative_int and value.__class__ is int and value >= 0:
            values[index] = value
            continue
        try:
            values[index] = check(name, value)
        except ProtocolError as exc:
            exc.message_id = message_id
            raise
    if len(obj) != len(checks) + 1:
        extra = sorted(set(obj) - set(SCHEMA[mtype]) - {"type"})
        raise ProtocolError(
            "unknown_field", f"{mtype} message has unknown field(s) {extra}", message_id
        )
    if mtype in RELIABLE_TYPES and values[_BASE] > values[_SEQ]:
        raise ProtocolError("bad_field", "field 'base' must not exceed 'seq'", message_id)
    return _make_message(values)


_TYPES = {t.value: t for t in MessageType}
"""`type` values to types: a dict lookup, where calling the enum costs a microsecond."""

_CHECKS = {
    t: tuple((name, _FIELD_INDEX[name], check) for name, check in fields.items())
    for t, fields in SCHEMA.items()
}
"""Per type, each field in schema order with its position in a `ChannelMessage`."""
_UNSET = (None,) * (len(ChannelMessage._fields) - 1)
_SEQ, _BASE = _FIELD_INDEX["seq"], _FIELD_INDEX["base"]
_make_message = ChannelMessage._make
"""Builds the tuple from positions: a keyword call of the NamedTuple costs as much as
validating three fields."""
_new_tuple = tuple.__new__
"""Builds a NamedTuple from all its values without its Python-level `__new__`."""


# ---- the batch extension (docs/protocol.md §4.8, §13) ----


class Frame(NamedTuple):
    """One data-channel frame, decoded (`decode_frame`)."""

    messages: tuple[ChannelMessage, ...]
    """The frame's messages, in order: one for a message frame."""
    acked_ids: tuple[str, ...] = ()
    """Ids a batch frame acks by itself; they count as an `ack` frame listing them,
    handled before the messages."""


_BATCH_START = '{"type":"batch"'
_BATCH_END = "}"
_MESSAGES_START = ',"messages":['
_ACKS_START = ',"acked_ids":['
_LIST_END = "]"
_ONE_ACK = f'{_BATCH_START}{_ACKS_START}"%s"{_LIST_END}{_BATCH_END}'

MIN_BATCH_BYTES = 1024
"""The least `FrameBatcher.max_bytes`: a batch of one ack (97 bytes at most) always fits,
and a smaller batch would save nothing (one SCTP packet carries about 1,160 bytes)."""


def _validate_batch(obj: dict[str, Any]) -> Frame:
    has_messages, has_acks = "messages" in obj, "acked_ids" in obj
    if not (has_messages or has_acks):
        raise ProtocolError("missing_field", "batch frame has neither 'messages' nor 'acked_ids'")
    messages = []
    if has_messages:
        elements = obj["messages"]
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_BATCH_MESSAGES:
            raise _bad("messages", f"must be a list of 1-{MAX_BATCH_MESSAGES} message frames")
        for index, element in enumerate(elements):
            if not isinstance(element, dict):
                raise _bad(f"messages[{index}]", "must be a JSON object (a message frame)")
            try:
                messages.append(_validate(element))
            except ProtocolError as exc:
                raise ProtocolError(exc.code, f"messages[{index}]: {exc}", exc.message_id) from None
    acked_ids = _acked_ids("acked_ids", obj["acked_ids"]) if has_acks else ()
    if len(obj) != 1 + has_messages + has_acks:
        extra = sorted(set(obj) - {"type", "messages", "acked_ids"})
        raise ProtocolError("unknown_field", f"batch frame has unknown field(s) {extra}")
    return Frame(tuple(messages), acked_ids)


def encode_batch(frames: Sequence[str] = (), acked_ids: Sequence[str] = ()) -> str:
    """One batch frame carrying `frames` in order (message frames made by `encode`: the
    batch joins their text as it is) and acking `acked_ids` (valid message ids). Raises
    ProtocolError when its receiver would refuse it: `missing_field` for neither,
    `bad_field` for more than MAX_BATCH_MESSAGES frames or MAX_ACKED_IDS ids, `too_big`
    over MAX_FRAME_BYTES."""
    if not frames and len(acked_ids) == 1:
        # What acks a lone message: the commonest batch, far within every limit.
        return _ONE_ACK % acked_ids[0]
    parts = [_BATCH_START]
    if frames:
        if len(frames) > MAX_BATCH_MESSAGES:
            raise _bad("messages", f"must be a list of 1-{MAX_BATCH_MESSAGES} message frames")
        parts += (_MESSAGES_START, ",".join(frames), _LIST_END)
    if acked_ids:
        if len(acked_ids) > MAX_ACKED_IDS:
            raise _bad("acked_ids", f"must be a list of 1-{MAX_ACKED_IDS} message ids")
        parts += (_ACKS_START, '"', '","'.join(acked_ids), '"', _LIST_END)
    if len(parts) == 1:
        raise ProtocolError("missing_field", "batch frame has neither 'messages' nor 'acked_ids'")
    parts.append(_BATCH_END)
    batch = "".join(parts)
    check_frame_size(_utf8_len(batch))
    return batch


# ---- fast paths: the frames every message exchange is made of ----
# A text frame and a batch frame of acks alone, exactly as `encode` and `encode_batch`
# write them with values valid as they are, are matched whole by one regular expression
# instead of being parsed into a dict and validated field by field, at less than half the
# cost. Anything else (other types, other key orders, whitespace, escapes in a string,
# an integer of 20 digits or more, any invalid value) is left to the full decoder: both
# paths return the same message for the same frame, and errors come from the full one
# (tests/test_protocol_fast_paths.py).

_ID_GROUP = f'"({_IDENTIFIER.pattern})"'
_INT_GROUP = "(0|[1-9][0-9]{0,18})"
"""A JSON integer that is not negative and has at most 19 digits (int() refuses very
long digit strings; those take the full decoder, which says so)."""
_PLAIN_STRING_GROUP = r'"([^"\\\x00-\x1f]*)"'
"""A JSON string without escapes: strict JSON allows any character there but the quote,
the backslash and the control characters, which `encode` escapes."""


def _text_frame_pattern() -> re.Pattern[str]:
    """The TEXT template of `encode` (docs/protocol.md §4.1), each value a group."""
    pattern = re.escape(_TEMPLATES[MessageType.TEXT].text)
    for conversion, group in (('"%s"', _ID_GROUP), ("%d", _INT_GROUP), ("%s", _PLAIN_STRING_GROUP)):
        pattern = pattern.replace(re.escape(conversion), group)
    return re.compile(pattern)


_TEXT_FRAME = _text_frame_pattern()
_TEXT = MessageType.TEXT
_AFTER_BODY = (None,) * (len(ChannelMessage._fields) - 1 - _FIELD_INDEX["body"])
"""The fields of a text message after its body: all None."""


def _fast_text(frame: str | bytes) -> ChannelMessage | None:
    """The message of a text frame as `encode` writes it, if it is valid; else None."""
    match = _TEXT_FRAME.fullmatch(frame) if frame.__class__ is str else None
    if match is None:
        return None
    message_id, timestamp, sender, conversation, epoch, seq, base, body = match.groups()
    seq, base = int(seq), int(base)
    try:
        # With a body within its limit, the frame is far within MAX_FRAME_BYTES.
        if base > seq or len(body.encode()) > MAX_BODY_BYTES:
            return None
    except UnicodeEncodeError:  # an unpaired surrogate: `bad_string`
        return None
    values = (_TEXT, message_id, int(timestamp), sender, conversation, epoch, seq, base, body)
    return _new_tuple(ChannelMessage, values + _AFTER_BODY)


_ACKS_FRAME = re.compile(
    re.escape(_BATCH_START + _ACKS_START + '"')
    + f'({_IDENTIFIER.pattern}(?:","{_IDENTIFIER.pattern})*)'
    + re.escape('"' + _LIST_END + _BATCH_END)
)


def _fast_acks(frame: str | bytes) -> tuple[str, ...] | None:
    """The ids of a batch frame of acks alone as `encode_batch` writes it, if it is
    valid; else None."""
    match = _ACKS_FRAME.fullmatch(frame) if frame.__class__ is str else None
    if match is None:
        return None
    acked_ids = tuple(match[1].split('","'))
    return acked_ids if len(acked_ids) <= MAX_ACKED_IDS else None


class FrameBatcher:
    """Packs message frames and acks into as few data-channel frames as possible.

    Pure bookkeeping for a connection that negotiated `batch`: the caller decides when
    frames and acks are held (there is a backlog) and when the held ones go out (`take`).
    Message frames keep their order. What is held together never exceeds `max_bytes` nor
    MAX_BATCH_MESSAGES frames or MAX_ACKED_IDS ids; `add` and `add_ack` hand back what
    was held when the new part does not fit with it. A message frame held alone goes
    out as itself (it may be up to MAX_FRAME_BYTES); anything else as one batch frame.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES):
        if not MIN_BATCH_BYTES <= max_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_bytes must be in {MIN_BATCH_BYTES}..{MAX_FRAME_BYTES}")
        self.max_bytes = max_bytes
        self._frames: list[str] = []
        self._acks: list[str] = []
        self._frame_bytes = 0
        """Bytes of the held frames, each with the comma or bracket after it."""
        self._ack_bytes = 0
        """Bytes of the held ids, each with its quotes and the comma or bracket after it."""

    def __bool__(self) -> bool:
        """Whether anything is held."""
        return bool(self._frames or self._acks)

    def add(self, frame: str) -> str | None:
        """Hold `frame`, a message frame made by `encode`. Returns what to send first when
        it does not fit with what is already held."""
        size = _utf8_len(frame) + 1
        out = None
        if len(self._frames) == MAX_BATCH_MESSAGES or (
            self and self._size(self._frame_bytes + size, self._ack_bytes) > self.max_bytes
        ):
            out = self.take()
        self._frames.append(frame)
        self._frame_bytes += size
        return out

    def add_ack(self, message_id: str) -> str | None:
        """Hold an ack of `message_id` (a valid message id). Returns what to send first
        when it does not fit with what is already held."""
        size = len(message_id) + 3
        out = None
        if len(self._acks) == MAX_ACKED_IDS or (
            self and self._size(self._frame_bytes, self._ack_bytes + size) > self.max_bytes
        ):
            out = self.take()
        self._acks.append(message_id)
        self._ack_bytes += size
        return out

    def take(self) -> str | None:
        """Everything held, as one data-channel frame (None when nothing is held)."""
        frames, acks = self._frames, self._acks
        self._frames, self._acks = [], []
        self._frame_bytes = self._ack_bytes = 0
        if len(frames) == 1 and not acks:
            return frames[0]
        return encode_batch(frames, acks) if frames or acks else None

    @staticmethod
    def _size(frame_bytes: int, ack_bytes: int) -> int:
        """The batch frame's size for held parts of these sizes."""
        size = len(_BATCH_START) + len(_BATCH_END)
        if frame_bytes:
            size += len(_MESSAGES_START) + frame_bytes
        if ack_bytes:
            size += len(_ACKS_START) + ack_bytes
        return size


# ---- announcing extensions in the SDP (docs/protocol.md §13) ----

_SDP_FEATURES_PREFIX = f"a={SDP_FEATURES_ATTRIBUTE}:"
_FEATURE = re.compile(r"[a-z0-9-]{1,32}")


def announce_features(sdp: str, features: Iterable[str] = FEATURES) -> str:
    """`sdp` (an offer or answer) announcing `features`: one session-level line
    `a=peerlab-features:<feature> <feature>...` just before the first media section,
    replacing any such line already there. No features: no line."""
    features = sorted(set(features))
    for feature in features:
        if not _FEATURE.fullmatch(feature):
            raise ValueError(f"not a feature name: {feature!r}")
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    media = next((i for i, line in enumerate(lines) if line.startswith("m=")), None)
    if media is None:
        # No media section: the session part runs to the end (after its final newline).
        media = len(lines) - 1 if lines[-1] == "" else len(lines)
    session = [line for line in lines[:media] if not line.startswith(_SDP_FEATURES_PREFIX)]
    if features:
        session.append(_SDP_FEATURES_PREFIX + " ".join(features))
    return eol.join(session + lines[media:])


def sdp_features(sdp: str) -> frozenset[str]:
    """The features an offer or answer announces (none for an older peer's SDP): the
    names on its session-level `a=peerlab-features` lines; anything else is ignored."""
    found = set()
    for line in sdp.splitlines():
        if line.startswith("m="):
            break
        if line.startswith(_SDP_FEATURES_PREFIX):
            found.update(
                f for f in line[len(_SDP_FEATURES_PREFIX) :].split() if _FEATURE.fullmatch(f)
            )
    return frozenset(found)
