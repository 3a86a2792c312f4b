"""Tests for peer/protocol.py: the JSON codec and its validation rules.

Every frame a peer may send must round-trip; every malformed frame must be refused with a
stable `code` and a message naming what was wrong; `encode` must refuse what `decode`
would refuse. docs/protocol.md's example frames are checked here too, so the document
cannot drift from the code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.peer.protocol import (
    BATCH,
    MAX_ACKED_IDS,
    MAX_BODY_BYTES,
    MAX_EMOJI_CHARS,
    MAX_FRAME_BYTES,
    SCHEMA,
    ChannelMessage,
    MessageType,
    ProtocolError,
    ReactionAction,
    TypingState,
    decode,
    decode_frame,
    encode,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

_SEQUENCED = {"conversation": "general", "epoch": "ep-7f3a", "seq": 3, "base": 2}

EXAMPLES: dict[MessageType, ChannelMessage] = {
    MessageType.TEXT: ChannelMessage(
        MessageType.TEXT, "msg-1", 1_700_000_000_000, "alice", body="hello ☃", **_SEQUENCED
    ),
    MessageType.EDIT: ChannelMessage(
        MessageType.EDIT,
        "msg-2",
        1_700_000_000_001,
        "alice",
        target="msg-1",
        body="hi",
        **_SEQUENCED,
    ),
    MessageType.DELETE: ChannelMessage(
        MessageType.DELETE, "msg-3", 1_700_000_000_002, "alice", target="msg-1", **_SEQUENCED
    ),
    MessageType.REACTION: ChannelMessage(
        MessageType.REACTION,
        "msg-4",
        1_700_000_000_003,
        "alice",
        target="msg-1",
        emoji="👍",
        action=ReactionAction.ADD,
        **_SEQUENCED,
    ),
    MessageType.TYPING: ChannelMessage(
        MessageType.TYPING,
        "typ-1",
        1_700_000_000_004,
        "alice",
        conversation="general",
        state=TypingState.STARTED,
    ),
    MessageType.ACK: ChannelMessage(
        MessageType.ACK, "ack-1", 1_700_000_000_005, "bob", acked_ids=("msg-1", "msg-2")
    ),
    MessageType.HEARTBEAT: ChannelMessage(MessageType.HEARTBEAT, "hb-1", 1_700_000_000_006, "bob"),
}


def wire(mtype: MessageType) -> dict[str, Any]:
    """A valid frame of `mtype` as a JSON object, ready to be broken by a test."""
    return json.loads(encode(EXAMPLES[mtype]))


def _replace(message: ChannelMessage, **changes: Any) -> ChannelMessage:
    return message._replace(**changes)


def rejected(frame: str | bytes | dict[str, Any], code: str) -> ProtocolError:
    if isinstance(frame, dict):
        frame = json.dumps(frame, ensure_ascii=False)
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == code, str(info.value)
    return info.value


# ---- round trips ----


def test_every_type_has_an_example():
    assert set(EXAMPLES) == set(MessageType) == set(SCHEMA)


@pytest.mark.parametrize("mtype", list(MessageType))
def test_round_trip_text_and_bytes(mtype):
    message = EXAMPLES[mtype]
    frame = encode(message)
    assert decode(frame) == message
    assert decode(frame.encode("utf-8")) == message


@pytest.mark.parametrize("mtype", list(MessageType))
def test_encoded_frame_has_exactly_the_schema_fields(mtype):
    assert set(json.loads(encode(EXAMPLES[mtype]))) == {"type", *SCHEMA[mtype]}


def test_reliable_types():
    assert {t for t in MessageType if EXAMPLES[t].reliable} == {
        MessageType.TEXT,
        MessageType.EDIT,
        MessageType.DELETE,
        MessageType.REACTION,
    }


def test_encode_is_compact_utf8_json():
    frame = encode(EXAMPLES[MessageType.TEXT])
    assert "☃" in frame  # not \u-escaped
    assert ", " not in frame and ": " not in frame


def test_limits_are_inclusive():
    body = "é" * (MAX_BODY_BYTES // 2)  # 2 bytes each: exactly MAX_BODY_BYTES
    message = ChannelMessage(MessageType.TEXT, "m", 0, "p", body=body, **_SEQUENCED)
    assert decode(encode(message)).body == body
    emoji = "x" * MAX_EMOJI_CHARS
    reaction = _replace(EXAMPLES[MessageType.REACTION], emoji=emoji)
    assert decode(encode(reaction)).emoji == emoji
    ids = tuple(f"m{i}" for i in range(MAX_ACKED_IDS))
    ack = _replace(EXAMPLES[MessageType.ACK], acked_ids=ids)
    assert decode(encode(ack)).acked_ids == ids
    long_id = "a" * 64
    assert decode(encode(_replace(EXAMPLES[MessageType.HEARTBEAT], id=long_id))).id == long_id


def test_base_equal_to_seq_and_zero_values_are_valid():
    message = _replace(EXAMPLES[MessageType.TEXT], seq=0, base=0, timestamp=0, body="")
    assert decode(encode(message)) == message


# ---- malformed frames ----


@pytest.mark.parametrize("frame", ["", "{", "not json", '{"type": "heartbeat",}', b"\xff\xfe\xfd"])
def test_invalid_json(frame):
    assert "JSON" in str(rejected(frame, "bad_json"))


@pytest.mark.parametrize("frame", ["[]", '[{"type": "heartbeat"}]', '"text"', "42", "null", "true"])
def test_non_object_json(frame):
    assert "object" in str(rejected(frame, "bad_json"))


def test_missing_type():
    obj = wire(MessageType.HEARTBEAT)
    del obj["type"]
    error = rejected(obj, "missing_field")
    assert "'type'" in str(error)
    assert error.message_id == "hb-1"


@pytest.mark.parametrize("value", ["chat", "TEXT", "", None, 1, ["text"], {"t": 1}])
def test_unknown_type(value):
    obj = {**wire(MessageType.HEARTBEAT), "type": value}
    assert repr(value) in str(rejected(obj, "unknown_type"))


@pytest.mark.parametrize(
    ("mtype", "field"), [(t, f) for t, fields in SCHEMA.items() for f in fields]
)
def test_missing_required_field(mtype, field):
    obj = wire(mtype)
    del obj[field]
    error = rejected(obj, "missing_field")
    assert repr(field) in str(error)
    assert str(mtype) in str(error)


BAD_IDENTIFIERS = ["", "has space", "a" * 65, "é", "a/b", "a\tb", 7, None, ["a"], True]


@pytest.mark.parametrize("value", BAD_IDENTIFIERS)
@pytest.mark.parametrize(
    ("mtype", "field"),
    [
        (MessageType.HEARTBEAT, "id"),
        (MessageType.HEARTBEAT, "sender"),
        (MessageType.TEXT, "conversation"),
        (MessageType.TEXT, "epoch"),
        (MessageType.EDIT, "target"),
        (MessageType.TYPING, "conversation"),
    ],
)
def test_bad_identifier(mtype, field, value):
    obj = {**wire(mtype), field: value}
    assert repr(field) in str(rejected(obj, "bad_field"))


@pytest.mark.parametrize("value", ["3", True, False, -1, 1.5, 3.0, None, [3]])
@pytest.mark.parametrize(
    ("mtype", "field"),
    [
        (MessageType.HEARTBEAT, "timestamp"),
        (MessageType.TEXT, "seq"),
        (MessageType.TEXT, "base"),
    ],
)
def test_bad_integer(mtype, field, value):
    obj = {**wire(mtype), field: value}
    if field == "seq":
        obj["base"] = 0  # so that only `seq` is wrong
    error = rejected(obj, "bad_field")
    assert repr(field) in str(error)
    assert "integer" in str(error)


@pytest.mark.parametrize("value", [5, None, ["hi"], {"text": "hi"}])
@pytest.mark.parametrize("mtype", [MessageType.TEXT, MessageType.EDIT])
def test_body_must_be_a_string(mtype, value):
    assert "'body'" in str(rejected({**wire(mtype), "body": value}, "bad_field"))


@pytest.mark.parametrize("value", ["", "x" * (MAX_EMOJI_CHARS + 1), 1, None])
def test_bad_emoji(value):
    obj = {**wire(MessageType.REACTION), "emoji": value}
    assert "'emoji'" in str(rejected(obj, "bad_field"))


@pytest.mark.parametrize("value", ["like", "ADD", "", None, 1, ["add"]])
def test_bad_reaction_action(value):
    error = rejected({**wire(MessageType.REACTION), "action": value}, "bad_field")
    assert "'action'" in str(error) and "'add'" in str(error) and "'remove'" in str(error)


@pytest.mark.parametrize("value", ["typing", "Started", "", None, 0])
def test_bad_typing_state(value):
    error = rejected({**wire(MessageType.TYPING), "state": value}, "bad_field")
    assert "'state'" in str(error) and "'started'" in str(error) and "'stopped'" in str(error)


@pytest.mark.parametrize(
    "value",
    [[], [f"m{i}" for i in range(MAX_ACKED_IDS + 1)], "msg-1", {"msg-1": True}, None, 3],
)
def test_bad_acked_ids(value):
    error = rejected({**wire(MessageType.ACK), "acked_ids": value}, "bad_field")
    assert "'acked_ids'" in str(error)


@pytest.mark.parametrize("bad", ["", "has space", "a" * 65, 5, None])
def test_bad_id_inside_acked_ids(bad):
    error = rejected({**wire(MessageType.ACK), "acked_ids": ["ok", bad]}, "bad_field")
    assert "'acked_ids[1]'" in str(error)


@pytest.mark.parametrize("mtype", list(MessageType))
def test_unknown_extra_field(mtype):
    error = rejected({**wire(mtype), "version": 2}, "unknown_field")
    assert "'version'" in str(error)


def test_field_of_another_type_is_unknown():
    obj = {**wire(MessageType.HEARTBEAT), "body": "hi"}
    assert "'body'" in str(rejected(obj, "unknown_field"))


def test_base_above_seq():
    obj = {**wire(MessageType.TEXT), "seq": 2, "base": 3}
    error = rejected(obj, "bad_field")
    assert "'base'" in str(error) and "'seq'" in str(error)
    assert error.message_id == "msg-1"


def test_oversized_frame():
    obj = {**wire(MessageType.TEXT), "body": "x" * MAX_FRAME_BYTES}
    frame = json.dumps(obj)
    assert "frame" in str(rejected(frame, "too_big"))
    assert "frame" in str(rejected(frame.encode(), "too_big"))


def test_frame_size_is_counted_in_utf8_bytes():
    # 30 000 characters but 90 000 bytes: over the frame limit.
    frame = json.dumps({**wire(MessageType.TEXT), "body": "☃" * 30_000}, ensure_ascii=False)
    assert len(frame) < MAX_FRAME_BYTES < len(frame.encode())
    rejected(frame, "too_big")


def test_oversized_body():
    obj = {**wire(MessageType.EDIT), "body": "é" * (MAX_BODY_BYTES // 2) + "x"}
    error = rejected(obj, "too_big")
    assert "'body'" in str(error) and str(MAX_BODY_BYTES) in str(error)


def test_error_carries_message_id_when_readable():
    assert rejected({**wire(MessageType.TEXT), "seq": -1}, "bad_field").message_id == "msg-1"
    assert rejected({**wire(MessageType.TEXT), "id": 5}, "bad_field").message_id is None


# ---- encode refuses what decode would reject ----


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (_replace(EXAMPLES[MessageType.TEXT], body=None), "missing_field"),
        (_replace(EXAMPLES[MessageType.TEXT], seq=None), "missing_field"),
        (_replace(EXAMPLES[MessageType.TEXT], seq=-1, base=0), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], seq=1, base=2), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], timestamp=True), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], timestamp=1.5), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], id="has space"), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], sender="a" * 65), "bad_field"),
        (_replace(EXAMPLES[MessageType.TEXT], body="x" * (MAX_BODY_BYTES + 1)), "too_big"),
        (_replace(EXAMPLES[MessageType.REACTION], action="like"), "bad_field"),
        (_replace(EXAMPLES[MessageType.REACTION], emoji=""), "bad_field"),
        (_replace(EXAMPLES[MessageType.TYPING], state="typing"), "bad_field"),
        (_replace(EXAMPLES[MessageType.ACK], acked_ids=()), "bad_field"),
        (_replace(EXAMPLES[MessageType.ACK], acked_ids=("ok", "not ok")), "bad_field"),
        (
            _replace(
                EXAMPLES[MessageType.ACK], acked_ids=tuple(map(str, range(MAX_ACKED_IDS + 1)))
            ),
            "bad_field",
        ),
    ],
)
def test_encode_refuses_invalid_message(message, code):
    with pytest.raises(ProtocolError) as info:
        encode(message)
    assert info.value.code == code


def test_encode_refuses_frame_over_limit_even_with_body_within_limit():
    # Control characters are escaped as \u00XX: 6 frame bytes per body byte.
    body = "\x01" * MAX_BODY_BYTES
    with pytest.raises(ProtocolError) as info:
        encode(_replace(EXAMPLES[MessageType.TEXT], body=body))
    assert info.value.code == "too_big"
    assert "frame" in str(info.value)


# ---- found bugs (these fail until peer/protocol.py is fixed) ----


def test_identifier_with_trailing_newline_is_rejected():
    # `_IDENTIFIER.match` with `$` also matches just before a trailing "\n".
    rejected({**wire(MessageType.HEARTBEAT), "id": "hb-1\n"}, "bad_field")
    with pytest.raises(ProtocolError):
        encode(_replace(EXAMPLES[MessageType.HEARTBEAT], sender="bob\n"))


def test_deeply_nested_json_is_a_protocol_error():
    # 20 000 bytes, well within the frame limit; json.loads raises RecursionError.
    rejected("[" * 20_000, "bad_json")


def test_a_lone_surrogate_escape_is_refused_as_bad_string():
    # A JSON escape for a lone surrogate decodes to a str that has no UTF-8 encoding;
    # encode would emit it raw, and the data channel could not send the frame.
    frame = json.dumps({**wire(MessageType.TEXT), "body": "\ud800"})
    assert "'body'" in str(rejected(frame, "bad_string"))


# ---- property-based ----

identifiers = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _decode_or_protocol_error(frame: str | bytes) -> None:
    try:
        decode(frame)
    except ProtocolError as error:
        assert error.code in {
            "bad_json",
            "unknown_type",
            "missing_field",
            "bad_field",
            "unknown_field",
            "bad_string",
            "too_big",
        }


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_decode_arbitrary_text_or_bytes_raises_only_protocol_error(frame):
    _decode_or_protocol_error(frame)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "body", "seq", "x"]) | st.text(max_size=8),
        json_values,
        max_size=8,
    )
)
def test_decode_arbitrary_json_object_raises_only_protocol_error(obj):
    _decode_or_protocol_error(json.dumps(obj))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(MessageType)).flatmap(
        lambda t: st.tuples(st.just(t), st.sampled_from(sorted(SCHEMA[t])))
    ),
    json_values,
)
def test_decode_valid_frame_with_one_field_replaced(type_and_field, value):
    """Near-valid frames reach every validator: a valid frame with one field set to anything."""
    mtype, field = type_and_field
    _decode_or_protocol_error(json.dumps({**wire(mtype), field: value}))


def _sequenced(draw: st.DrawFn) -> dict[str, Any]:
    seq = draw(st.integers(min_value=0, max_value=2**53))
    return {
        "conversation": draw(identifiers),
        "epoch": draw(identifiers),
        "seq": seq,
        "base": draw(st.integers(min_value=0, max_value=seq)),
    }


@st.composite
def valid_messages(draw: st.DrawFn) -> ChannelMessage:
    mtype = draw(st.sampled_from(list(MessageType)))
    common = {
        "type": mtype,
        "id": draw(identifiers),
        "timestamp": draw(st.integers(min_value=0, max_value=2**53)),
        "sender": draw(identifiers),
    }
    body = st.text(max_size=200)
    emoji = st.text(min_size=1, max_size=MAX_EMOJI_CHARS)
    match mtype:
        case MessageType.TEXT:
            extra = {**_sequenced(draw), "body": draw(body)}
        case MessageType.EDIT:
            extra = {**_sequenced(draw), "target": draw(identifiers), "body": draw(body)}
        case MessageType.DELETE:
            extra = {**_sequenced(draw), "target": draw(identifiers)}
        case MessageType.REACTION:
            extra = {
                **_sequenced(draw),
                "target": draw(identifiers),
                "emoji": draw(emoji),
                "action": draw(st.sampled_from(list(ReactionAction))),
            }
        case MessageType.TYPING:
            extra = {
                "conversation": draw(identifiers),
                "state": draw(st.sampled_from(list(TypingState))),
            }
        case MessageType.ACK:
            extra = {"acked_ids": tuple(draw(st.lists(identifiers, min_size=1, max_size=20)))}
        case MessageType.HEARTBEAT:
            extra = {}
    return ChannelMessage(**common, **extra)


@settings(max_examples=300, deadline=None)
@given(valid_messages())
def test_round_trip_property(message):
    frame = encode(message)
    assert decode(frame) == message
    assert decode(frame.encode("utf-8")) == message
    assert encode(decode(frame)) == frame


def _as_json(message: ChannelMessage) -> str:
    """The frame as json.dumps writes it: what `encode` builds by hand must equal it."""
    obj = {"type": message.type.value}
    for name in SCHEMA[message.type]:
        value = getattr(message, name)
        obj[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(valid_messages())
def test_encode_writes_exactly_what_json_dumps_writes(message):
    assert encode(message) == encode(message, checked=True) == _as_json(message)


def test_encode_escapes_free_text_as_json_does():
    body = 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f ☃ \u2028 👍'
    message = _replace(EXAMPLES[MessageType.TEXT], body=body)
    assert encode(message) == _as_json(message)
    assert decode(encode(message)).body == body


def test_a_checked_message_missing_a_field_is_still_refused():
    with pytest.raises(ProtocolError) as info:
        encode(_replace(EXAMPLES[MessageType.TEXT], body=None), checked=True)
    assert info.value.code == "missing_field"


# ---- docs/protocol.md stays valid ----

_JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def test_every_json_example_in_the_protocol_doc_decodes():
    blocks = _JSON_BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert blocks, "docs/protocol.md has no ```json examples"
    types = set()
    for block in blocks:
        frame = block.strip()
        decoded = decode_frame(frame, batch=True)
        types.add(json.loads(frame)["type"])
        types.update(m.type.value for m in decoded.messages)
    expected = {t.value for t in MessageType} | {BATCH}
    assert types == expected, f"no example for {expected - types}"
