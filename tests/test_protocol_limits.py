"""The frame-size limit at its exact boundary, from both sides; strict JSON; peer ids.

docs/protocol.md §5 allows a frame of up to MAX_FRAME_BYTES: such a frame must be accepted by
`decode` and producible by the send path, and one byte more must be refused by both (`too_big`),
the sender refusing it before it reaches the wire. A receiver that refused a valid reliable
frame would never ack it, and the sender would resend it forever.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fake_data_channel import FakeDataChannel

from peerlab.peer.message_channel import MessageChannel
from peerlab.peer.protocol import (
    MAX_BODY_BYTES,
    MAX_FRAME_BYTES,
    ChannelMessage,
    MessageType,
    ProtocolError,
    check_peer_id,
    decode,
    encode,
)
from peerlab.peer.reliability import Outbox
from peerlab.signaling.frames import IDENTIFIER

EPOCH = "9f86d081884c7d65"
NOW_S = 1_764_100_000.0


def _text(body: str = "", **fields: Any) -> ChannelMessage:
    values = {
        "type": MessageType.TEXT,
        "id": "0" * 32,  # as long as the reference peer's ids
        "timestamp": int(NOW_S * 1000),
        "sender": "alice",
        "conversation": "c",
        "epoch": EPOCH,
        "seq": 0,
        "base": 0,
        "body": body,
    }
    return ChannelMessage(**{**values, **fields})


def _size(frame: str) -> int:
    return len(frame.encode("utf-8"))


def body_for(frame_bytes: int, **fields: Any) -> str:
    """A body within MAX_BODY_BYTES whose text frame (with `fields`) is `frame_bytes` long.

    Control characters take 6 frame bytes (`\\u0001`) for 1 body byte: with enough of them a
    body under 32 KiB fills a 64 KiB frame, which is where the receiver used to refuse."""
    room = frame_bytes - _size(encode(_text(**fields)))
    escapes = max(0, math.ceil((room - MAX_BODY_BYTES) / 5))
    body = "\x01" * escapes + "x" * (room - 6 * escapes)
    assert len(body.encode("utf-8")) <= MAX_BODY_BYTES
    return body


def refused(frame: str | bytes, code: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == code, str(info.value)
    return info.value


# ---- the receiver: decode ----


def test_decode_accepts_a_frame_of_exactly_the_limit_whose_body_is_under_32_kib():
    frame = encode(_text(body_for(MAX_FRAME_BYTES)))
    assert _size(frame) == MAX_FRAME_BYTES
    assert decode(frame).body == body_for(MAX_FRAME_BYTES)
    assert decode(frame.encode("utf-8")).body == body_for(MAX_FRAME_BYTES)


@pytest.mark.parametrize("frame_bytes", [64_700, 65_000, 65_500, MAX_FRAME_BYTES])
def test_decode_accepts_large_frames_below_the_limit(frame_bytes):
    # These were refused: "would take over 64512 bytes of the frame once JSON-escaped".
    frame = encode(_text(body_for(frame_bytes)))
    assert _size(frame) == frame_bytes
    assert decode(frame).body == body_for(frame_bytes)


def test_decode_refuses_one_byte_over_the_limit():
    frame = encode(_text(body_for(MAX_FRAME_BYTES - 1))).replace('"seq":0', '"seq":0 ', 1)
    assert _size(frame) == MAX_FRAME_BYTES  # whitespace counts: still within
    decode(frame)
    over = frame.replace('"seq":0 ', '"seq":0  ', 1)
    assert _size(over) == MAX_FRAME_BYTES + 1
    error = refused(over, "too_big")
    assert str(error) == f"frame of {MAX_FRAME_BYTES + 1} bytes is over the 65536-byte limit"
    refused(over.encode("utf-8"), "too_big")


# ---- the sender: encode and the send path ----


def test_encode_produces_a_frame_of_exactly_the_limit_and_refuses_one_byte_more():
    assert _size(encode(_text(body_for(MAX_FRAME_BYTES)))) == MAX_FRAME_BYTES
    with pytest.raises(ProtocolError) as info:
        encode(_text(body_for(MAX_FRAME_BYTES) + "x"))
    assert info.value.code == "too_big"


@pytest.fixture
async def channel():
    """A MessageChannel attached to a fake open data channel, with a fixed wall clock."""
    events: list[str] = []
    message_channel = MessageChannel(
        "alice",
        "bob",
        epoch=EPOCH,
        observer=lambda kind, fields, at: events.append(kind),
        wall_clock=lambda: NOW_S,
    )
    data_channel = FakeDataChannel()
    message_channel.attach(data_channel, lambda alive: None)
    yield message_channel, data_channel, events
    message_channel.detach()


def _texts(frames: list[str]) -> list[str]:
    return [f for f in frames if json.loads(f)["type"] == "text"]


async def test_send_text_puts_a_frame_of_exactly_the_limit_on_the_wire(channel):
    message_channel, data_channel, _ = channel
    body = body_for(MAX_FRAME_BYTES)
    message = message_channel.send_text("c", body)
    [frame] = _texts(data_channel.frames)
    assert _size(frame) == MAX_FRAME_BYTES
    assert decode(frame) == message


async def test_send_text_refuses_one_byte_more_before_it_reaches_the_wire(channel):
    message_channel, data_channel, events = channel
    with pytest.raises(ProtocolError) as info:
        message_channel.send_text("c", body_for(MAX_FRAME_BYTES) + "x")
    assert info.value.code == "too_big"
    assert str(info.value) == f"frame of {MAX_FRAME_BYTES + 1} bytes is over the 65536-byte limit"
    assert _texts(data_channel.frames) == [] and "sent" not in events
    assert message_channel.unacked == []
    # Nothing was numbered: the next message is still seq 0.
    assert message_channel.send_text("c", "next").seq == 0


def test_outbox_refuses_a_frame_that_a_retransmission_would_push_over_the_limit():
    # seq 10 sent with base 0 is one byte shorter than its retransmission with base 10.
    outbox = Outbox(EPOCH)
    for i in range(10):
        outbox.send(_text("x", id=f"m{i}"), 0.0)
    tight = body_for(MAX_FRAME_BYTES, seq=10, base=0)
    with pytest.raises(ProtocolError) as info:
        outbox.send(_text(tight), 0.0)
    assert info.value.code == "too_big"
    fits = body_for(MAX_FRAME_BYTES, seq=10, base=10)
    first = outbox.send(_text(fits), 0.0)
    assert (first.seq, first.base) == (10, 0)
    assert _size(encode(first)) == MAX_FRAME_BYTES - 1
    outbox.on_ack([f"m{i}" for i in range(10)], 0.5)
    [resent] = outbox.on_reconnect(1.0)
    assert resent.base == 10
    assert _size(encode(resent)) == MAX_FRAME_BYTES
    assert decode(encode(resent)) == resent


# ---- strict JSON (RFC 8259) and unpaired surrogates ----


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["timestamp", "seq", "x"])
def test_nan_and_infinity_are_not_json(constant, field):
    # json.dumps writes float("nan") as NaN, float("inf") as Infinity: what a lax peer sends.
    frame = json.dumps({**json.loads(encode(_text("hi"))), field: float(constant)})
    assert f":{constant}" in frame.replace(" ", "")
    assert constant in str(refused(frame, "bad_json"))


@pytest.mark.parametrize("field", ["body", "emoji"])
def test_an_unpaired_surrogate_in_free_text_is_bad_string(field):
    reaction = ChannelMessage(
        MessageType.REACTION,
        "r1",
        0,
        "alice",
        conversation="c",
        epoch=EPOCH,
        seq=0,
        base=0,
        target="m1",
        emoji="+",
        action="add",
    )
    obj = json.loads(encode(_text("hi") if field == "body" else reaction))
    frame = json.dumps({**obj, field: "ok \ud800"})  # ASCII: the surrogate as `\ud800`
    assert "\\ud800" in frame
    error = refused(frame, "bad_string")
    assert repr(field) in str(error)
    assert error.message_id == obj["id"]
    with pytest.raises(ProtocolError) as info:
        encode(_text("\udfff"))
    assert info.value.code == "bad_string"


def test_a_surrogate_pair_escape_is_one_valid_character():
    frame = json.dumps(json.loads(encode(_text("hi"))) | {"body": "\U0001f600"})
    assert "\\ud83d\\ude00" in frame
    assert decode(frame).body == "\U0001f600"


# ---- peer ids: the signaling server's rule ----


@pytest.mark.parametrize("peer", ["a", "peer-1", "Zed_2.b", "x" * 64])
def test_peer_ids_the_server_registers_are_valid(peer):
    assert IDENTIFIER.fullmatch(peer)
    assert check_peer_id("peer", peer) == peer


@pytest.mark.parametrize("peer", ["a:b", "", "x" * 65, "has space", "é", "bob\n", 7, None])
def test_peer_ids_the_server_refuses_are_invalid(peer):
    assert not (isinstance(peer, str) and IDENTIFIER.fullmatch(peer))
    with pytest.raises(ProtocolError) as info:
        check_peer_id("peer", peer)
    assert info.value.code == "bad_field"
    assert "'peer'" in str(info.value)


@pytest.mark.parametrize("field", ["state", "action"])
def test_a_deeply_nested_enum_field_is_bad_field_not_a_recursion_error(field):
    # Found by the fuzz campaign (docs/fuzz.md, decoder case 192048): the enum's own error
    # message repr'd the list one stack level deeper than json.loads had reached.
    kind = "typing" if field == "state" else "reaction"
    frame = {"type": kind, "id": "a", "timestamp": 1, "sender": "s", "conversation": "c"}
    if kind == "reaction":
        frame |= {"epoch": "e", "seq": 0, "base": 0, "target": "t", "emoji": "x"}
    text = json.dumps({**frame, field: "@"})
    for depth in range(900, 1000):
        nested = text.replace('"@"', "[" * depth + "0" + "]" * depth)
        with pytest.raises(ProtocolError) as info:
            decode(nested)
        assert info.value.code in ("bad_field", "bad_json"), info.value
