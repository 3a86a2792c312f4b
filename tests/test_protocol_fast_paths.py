"""The decoder's fast paths (peer/protocol.py): the frames every exchange is made of — a
text frame, a batch frame of acks alone — are matched whole by a regular expression
instead of being parsed and validated field by field.

They must be invisible: for any frame at all, `decode` and `decode_frame` return what the
full decoder returns (the same message, with values of the same types) or raise the same
error. The property tests below draw the frames `encode` writes, then break them one
character at a time where the fast paths decide (quotes, escapes, digits, limits), and
compare both paths. The last tests check that the fast paths are taken at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.peer import protocol
from peerlab.peer.protocol import (
    BATCH,
    MAX_ACKED_IDS,
    MAX_BODY_BYTES,
    ChannelMessage,
    Frame,
    MessageType,
    ProtocolError,
    decode,
    decode_frame,
    encode,
    encode_batch,
)

identifiers = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
integers = st.integers(min_value=0, max_value=10**20) | st.sampled_from([0, 9, 10, 10**19 - 1])
bodies = st.text(max_size=60) | st.sampled_from(["", "a" * MAX_BODY_BYTES, "é" * 16_384])
EDITS = '"\\{}[],:0123456789-. aZ\x00\x1f\x7f☃\ud800'
"""Characters a broken frame gets: JSON syntax, digits, escapes, controls, a surrogate."""


def full_decode(frame: str | bytes, batch: bool) -> Frame:
    """The full decoder alone: steps 1 and 2 of docs/protocol.md §6, then each field."""
    obj = protocol._parse(frame)
    if batch and obj.get("type") == BATCH:
        return protocol._validate_batch(obj)
    return Frame((protocol._validate(obj),))


def outcome(decoder: Any, *args: Any, **kwargs: Any) -> Any:
    """What a decoder makes of a frame: its result with each value's type, or its error."""
    try:
        frame = decoder(*args, **kwargs)
    except ProtocolError as error:
        return ("refused", error.code, str(error), error.message_id)
    messages = frame.messages if isinstance(frame, Frame) else (frame,)
    typed = [[(value, type(value)) for value in message] for message in messages]
    return typed, getattr(frame, "acked_ids", None)


@st.composite
def text_frames(draw: st.DrawFn) -> str:
    seq = draw(integers)
    message = ChannelMessage(
        MessageType.TEXT,
        draw(identifiers),
        draw(integers),
        draw(identifiers),
        conversation=draw(identifiers),
        epoch=draw(identifiers),
        seq=seq,
        base=draw(st.integers(min_value=0, max_value=seq) | integers),
        body=draw(bodies),
    )
    try:
        return encode(message)
    except ProtocolError:  # base > seq, or a body with a surrogate: write it as it would be
        return protocol._TEMPLATES[MessageType.TEXT].text % (
            *message[1:8],
            protocol._json_string(message.body),
        )


@st.composite
def ack_frames(draw: st.DrawFn) -> str:
    ids = draw(st.lists(identifiers, min_size=1, max_size=MAX_ACKED_IDS + 2))
    return protocol._ONE_ACK.replace('"%s"', '"' + '","'.join(ids) + '"')


@st.composite
def broken(draw: st.DrawFn, frames: st.SearchStrategy[str]) -> str:
    """A frame with up to three characters inserted, deleted or replaced."""
    frame = draw(frames)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(frame)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(EDITS))
        if edit == "insert":
            frame = frame[:at] + char + frame[at:]
        else:
            frame = frame[:at] + (char if edit == "replace" else "") + frame[at + 1 :]
    return frame


@settings(max_examples=1000, deadline=None)
@given(broken(text_frames() | ack_frames()), st.booleans())
def test_a_frame_decodes_as_the_full_decoder_decodes_it(frame, batch):
    expected = outcome(full_decode, frame, batch)
    assert outcome(decode_frame, frame, batch=batch) == expected
    full_message = outcome(lambda f: protocol._validate(protocol._parse(f)), frame)
    assert outcome(decode, frame) == full_message


@settings(max_examples=300, deadline=None)
@given(text_frames())
def test_as_bytes_a_frame_decodes_as_the_full_decoder_decodes_it(frame):
    try:
        data = frame.encode()
    except UnicodeEncodeError:
        return  # a surrogate has no UTF-8 form: no such bytes arrive
    assert outcome(decode_frame, data, batch=True) == outcome(full_decode, data, True)


_TEXT = (
    '{"type":"text","id":"m1","timestamp":1764100000000,"sender":"alice",'
    '"conversation":"c","epoch":"e","seq":%s,"base":%s,"body":%s}'
)


@pytest.mark.parametrize(
    "frame",
    [
        _TEXT % ("3", "2", '"hi"'),
        _TEXT % ("03", "2", '"hi"'),  # a leading zero: not JSON
        _TEXT % ("3", "-0", '"hi"'),
        _TEXT % ("3", "2.0", '"hi"'),
        _TEXT % ("3", "1e0", '"hi"'),
        _TEXT % ("2", "3", '"hi"'),  # base above seq
        _TEXT % ("9" * 19, "9" * 19, '"hi"'),
        _TEXT % ("1" + "0" * 19, "0", '"hi"'),  # 20 digits: the full decoder's
        _TEXT % ("1" + "0" * 5000, "0", '"hi"'),  # past int()'s digit limit
        _TEXT % ("3", "2", '"a\\nb"'),  # an escape
        _TEXT % ("3", "2", '"a\\"b"'),
        _TEXT % ("3", "2", '"a\\\\b"'),
        _TEXT % ("3", "2", '"a\tb"'),  # a raw control character: not JSON
        _TEXT % ("3", "2", '"\\ud800"'),  # an escaped lone surrogate
        _TEXT % ("3", "2", '"\ud800"'),  # a raw one
        _TEXT % ("3", "2", '"\x7f \u2028 ☃"'),  # no escape needed
        _TEXT % ("3", "2", '"' + "a" * MAX_BODY_BYTES + '"'),
        _TEXT % ("3", "2", '"' + "a" * (MAX_BODY_BYTES + 1) + '"'),
        _TEXT % ("3", "2", '"' + "é" * (MAX_BODY_BYTES // 2 + 1) + '"'),
        _TEXT.replace('"m1"', '"' + "m" * 65 + '"') % ("3", "2", '"hi"'),
        _TEXT.replace('"alice"', '"al ice"') % ("3", "2", '"hi"'),
        " " + _TEXT % ("3", "2", '"hi"'),
        _TEXT % ("3", "2", '"hi"') + "\n",
        _TEXT % ("3", "2", '"'),  # the body's quote, unclosed
        _TEXT % ("3", "2", '"hi'),
        _TEXT % ("3", "2", '"hi"}"'),
        protocol._ONE_ACK % "m1",
        protocol._ONE_ACK % 'm1","m2',
        protocol._ONE_ACK % "m 1",
        protocol._ONE_ACK.replace('"%s"', ""),
    ],
)
def test_edge_frames_decode_as_the_full_decoder_decodes_them(frame):
    for batch in (False, True):
        assert outcome(decode_frame, frame, batch=batch) == outcome(full_decode, frame, batch)


def test_the_frames_of_a_message_exchange_take_the_fast_paths():
    message = decode(
        encode(ChannelMessage(MessageType.TEXT, "m1", 1, "alice", "c", "e", 3, 2, "hé"))
    )
    assert protocol._fast_text(encode(message)) == message
    for count in (1, 2, MAX_ACKED_IDS):
        ids = tuple(f"id{i}" for i in range(count))
        assert protocol._fast_acks(encode_batch(acked_ids=ids)) == ids


def test_what_the_fast_paths_leave_goes_to_the_full_decoder():
    text = encode(ChannelMessage(MessageType.TEXT, "m1", 1, "alice", "c", "e", 3, 2, 'a "quote"'))
    assert protocol._fast_text(text) is None  # an escape in the body
    assert decode(text).body == 'a "quote"'
    too_many = tuple(f"id{i}" for i in range(MAX_ACKED_IDS + 1))
    frame = protocol._ONE_ACK.replace('"%s"', '"' + '","'.join(too_many) + '"')
    assert protocol._fast_acks(frame) is None
    assert outcome(decode_frame, frame, batch=True)[1] == "bad_field"
