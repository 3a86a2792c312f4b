"""Tests for the `batch` extension of peer/protocol.py (docs/protocol.md §4.8, §13).

A batch frame carries several message frames and acks in one data-channel message; two
ends use it only when both announced it in their SDP. Packing must keep every message,
in order, and never build a frame its receiver would refuse; decoding an invalid batch
must give the documented error and nothing of the batch; an older peer must be able to
take an SDP that carries the announcement.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import given, settings
from hypothesis import strategies as st
from test_protocol import EXAMPLES, identifiers, valid_messages

from peerlab.peer.protocol import (
    BATCH,
    FEATURES,
    MAX_ACKED_IDS,
    MAX_BATCH_MESSAGES,
    MAX_FRAME_BYTES,
    MIN_BATCH_BYTES,
    ChannelMessage,
    Frame,
    FrameBatcher,
    MessageType,
    ProtocolError,
    announce_features,
    decode,
    decode_frame,
    encode,
    encode_batch,
    sdp_features,
)

TEXT = EXAMPLES[MessageType.TEXT]
ACK_ID = "5f2b1c0e8a9d4e7f9b3a6c1d2e4f5a6b"


def _texts(count: int, body: str = "hello") -> list[ChannelMessage]:
    return [TEXT._replace(id=f"m{i}", seq=i, base=0, body=body) for i in range(count)]


def batch_of(*messages: ChannelMessage, **fields: Any) -> str:
    """A batch frame as a JSON text, with `fields` added or replacing its own."""
    obj: dict[str, Any] = {"type": BATCH}
    if messages:
        obj["messages"] = [json.loads(encode(m)) for m in messages]
    obj.update(fields)
    return json.dumps(obj, ensure_ascii=False)


def refused(frame: str | bytes, code: str, *, batch: bool = True) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame, batch=batch)
    assert info.value.code == code, str(info.value)
    return info.value


def packed(parts: list[str | tuple[str]], max_bytes: int = MAX_FRAME_BYTES) -> list[str]:
    """What a FrameBatcher sends for `parts`: message frames, and 1-tuples of acked ids."""
    batcher = FrameBatcher(max_bytes)
    out = []
    for part in parts:
        sent = batcher.add_ack(part[0]) if isinstance(part, tuple) else batcher.add(part)
        if sent is not None:
            out.append(sent)
    last = batcher.take()
    assert not batcher and batcher.take() is None
    return out + ([last] if last is not None else [])


def _size(frame: str) -> int:
    return len(frame.encode("utf-8"))


def text_of_size(size: int, message_id: str = "big") -> ChannelMessage:
    """A text whose frame is `size` bytes: a control character escapes to 6 frame bytes
    (`\\u0001`) for 1 body byte, which lets a body within 32 KiB fill a 64 KiB frame."""
    message = TEXT._replace(id=message_id, body="")
    room = size - _size(encode(message))
    escapes = max(0, -(-(room - 32_768) // 5))
    return message._replace(body="\x01" * escapes + "x" * (room - 6 * escapes))


# ---- decoding ----


def test_a_batch_decodes_to_its_messages_in_order_and_its_acks():
    messages = [*_texts(3), EXAMPLES[MessageType.REACTION], EXAMPLES[MessageType.ACK]]
    frame = encode_batch([encode(m) for m in messages], [ACK_ID, "m-2"])
    assert decode_frame(frame, batch=True) == Frame(tuple(messages), (ACK_ID, "m-2"))
    assert decode_frame(frame.encode("utf-8"), batch=True) == Frame(
        tuple(messages), (ACK_ID, "m-2")
    )


def test_a_batch_may_carry_only_messages_or_only_acks():
    assert decode_frame(batch_of(TEXT), batch=True) == Frame((TEXT,))
    assert decode_frame(batch_of(acked_ids=[ACK_ID]), batch=True) == Frame((), (ACK_ID,))


def test_a_message_frame_decodes_to_itself_with_or_without_the_extension():
    frame = encode(TEXT)
    assert decode_frame(frame, batch=True) == decode_frame(frame, batch=False) == Frame((TEXT,))


def test_without_the_extension_a_batch_is_an_unknown_type_as_for_an_older_peer():
    frame = batch_of(TEXT, TEXT._replace(id="m9", seq=9))
    refused(frame, "unknown_type", batch=False)
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == "unknown_type"


def test_the_limits_of_a_batch_are_inclusive():
    frames = [encode(m) for m in _texts(MAX_BATCH_MESSAGES, body="")]
    ids = [f"a{i}" for i in range(MAX_ACKED_IDS)]
    decoded = decode_frame(encode_batch(frames, ids), batch=True)
    assert len(decoded.messages) == MAX_BATCH_MESSAGES and len(decoded.acked_ids) == MAX_ACKED_IDS


def test_a_batch_of_exactly_the_frame_limit_is_accepted_and_one_byte_more_is_not():
    overhead = _size(encode_batch([encode(TEXT)])) - _size(encode(TEXT))
    fits = text_of_size(MAX_FRAME_BYTES - overhead)
    frame = encode_batch([encode(fits)])
    assert _size(frame) == MAX_FRAME_BYTES
    assert decode_frame(frame, batch=True).messages == (fits,)
    over = frame[:-2] + " ]}"  # whitespace is valid JSON: only the size is wrong
    assert "frame of 65537 bytes" in str(refused(over, "too_big"))
    with pytest.raises(ProtocolError) as info:
        encode_batch([encode(fits)], ["a"])
    assert info.value.code == "too_big"


# ---- invalid batches: docs/protocol.md §6, the batch steps ----


@pytest.mark.parametrize("frame", ['{"type":"batch","messages":[', b'{"type":"batch"\xff}'])
def test_a_batch_that_is_not_json_is_bad_json(frame):
    refused(frame, "bad_json")


def test_a_batch_with_neither_messages_nor_acks_is_missing_a_field():
    assert "'messages'" in str(refused('{"type":"batch"}', "missing_field"))


@pytest.mark.parametrize(
    "value", [[], {}, "m", None, 3, [json.loads(encode(TEXT))] * (MAX_BATCH_MESSAGES + 1)]
)
def test_messages_must_be_a_list_of_1_to_256_frames(value):
    assert "'messages'" in str(refused(batch_of(messages=value), "bad_field"))


@pytest.mark.parametrize("element", ["text", 5, None, [1], True])
def test_each_element_must_be_an_object(element):
    frame = batch_of(TEXT, messages=[json.loads(encode(TEXT)), element])
    assert "'messages[1]'" in str(refused(frame, "bad_field"))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"seq": None}, "bad_field"),
        ({"seq": -1}, "bad_field"),
        ({"base": 9, "seq": 3}, "bad_field"),
        ({"type": "batch"}, "unknown_type"),  # no batch inside a batch
        ({"type": "chat"}, "unknown_type"),
        ({"extra": 1}, "unknown_field"),
        ({"body": "\ud800"}, "bad_string"),
        ({"body": "x" * 32_769}, "too_big"),
    ],
)
def test_an_invalid_message_refuses_the_whole_batch_with_its_own_code(change, code):
    good, bad = json.loads(encode(TEXT)), {**json.loads(encode(TEXT)), "id": "bad-1", **change}
    error = refused(batch_of(messages=[good, bad], acked_ids=[ACK_ID]), code)
    assert str(error).startswith("messages[1]: ")
    assert error.message_id == "bad-1"


def test_a_message_missing_a_field_refuses_the_batch():
    bad = json.loads(encode(TEXT))
    del bad["epoch"]
    assert "'epoch'" in str(refused(batch_of(messages=[bad]), "missing_field"))


def test_the_first_invalid_part_decides():
    first = {**json.loads(encode(TEXT)), "seq": "3"}
    second = {**json.loads(encode(TEXT)), "extra": 1}
    error = refused(batch_of(messages=[first, second], acked_ids=[]), "bad_field")
    assert str(error).startswith("messages[0]: ")
    # messages before acked_ids, both before unknown fields
    refused(batch_of(TEXT, acked_ids=[], extra=1), "bad_field")
    refused(batch_of(TEXT, acked_ids=[ACK_ID], extra=1), "unknown_field")


@pytest.mark.parametrize(
    "value", [[], "x", [""], ["has space"], [5], ["a,b"], [f"i{i}" for i in range(257)]]
)
def test_acked_ids_must_be_1_to_256_message_ids(value):
    assert "acked_ids" in str(refused(batch_of(acked_ids=value), "bad_field"))


def test_a_batch_has_no_other_field():
    error = refused(batch_of(TEXT, sender="alice"), "unknown_field")
    assert "sender" in str(error)


# ---- encoding ----


def test_encode_batch_keeps_each_frame_as_it_is():
    frames = [encode(m) for m in _texts(2)]
    assert encode_batch(frames) == '{"type":"batch","messages":[' + ",".join(frames) + "]}"
    assert encode_batch(acked_ids=["a", "b"]) == '{"type":"batch","acked_ids":["a","b"]}'


@pytest.mark.parametrize(
    ("frames", "ids", "code"),
    [
        ([], [], "missing_field"),
        ([encode(TEXT)] * (MAX_BATCH_MESSAGES + 1), [], "bad_field"),
        ([], ["a"] * (MAX_ACKED_IDS + 1), "bad_field"),
        ([encode(TEXT._replace(body="x" * 32_000))] * 3, [], "too_big"),
    ],
)
def test_encode_batch_refuses_what_a_receiver_would(frames, ids, code):
    with pytest.raises(ProtocolError) as info:
        encode_batch(frames, ids)
    assert info.value.code == code


# ---- packing: FrameBatcher ----


def test_a_frame_held_alone_goes_out_as_itself():
    frame = encode(TEXT)
    assert packed([frame]) == [frame]
    assert decode(packed([frame])[0]) == TEXT


def test_nothing_held_gives_nothing():
    assert packed([]) == []


def test_acks_alone_or_with_one_message_go_out_as_a_batch():
    assert packed([(ACK_ID,)]) == ['{"type":"batch","acked_ids":["' + ACK_ID + '"]}']
    (frame,) = packed([encode(TEXT), (ACK_ID,)])
    assert decode_frame(frame, batch=True) == Frame((TEXT,), (ACK_ID,))


def test_a_full_batch_goes_out_when_the_next_message_does_not_fit():
    frames = [encode(m) for m in _texts(MAX_BATCH_MESSAGES + 1, body="")]
    out = packed(frames)
    assert [len(decode_frame(f, batch=True).messages) for f in out] == [MAX_BATCH_MESSAGES, 1]
    ids = [(f"a{i}",) for i in range(MAX_ACKED_IDS + 1)]
    assert [len(decode_frame(f, batch=True).acked_ids) for f in packed(ids)] == [256, 1]


def test_a_frame_too_big_to_share_goes_alone_even_between_acks():
    huge = text_of_size(MAX_FRAME_BYTES - 10, "huge")
    big = text_of_size(40_000)
    out = packed([(ACK_ID,), encode(huge), ("a2",), encode(big), encode(big)])
    assert [decode_frame(f, batch=True) for f in out] == [
        Frame((), (ACK_ID,)),
        Frame((huge,)),
        Frame((big,), ("a2",)),
        Frame((big,)),
    ]
    assert out[1] == encode(huge) and out[3] == encode(big)


@pytest.mark.parametrize("max_bytes", [MIN_BATCH_BYTES - 1, MAX_FRAME_BYTES + 1])
def test_the_batch_size_is_bounded_by_the_frame_limit(max_bytes):
    with pytest.raises(ValueError):
        FrameBatcher(max_bytes)


messages_and_acks = st.lists(
    valid_messages().map(encode) | identifiers.map(lambda i: (i,)), max_size=60
)
sizes = st.sampled_from([MIN_BATCH_BYTES, 4096, 16_384, MAX_FRAME_BYTES]) | st.integers(
    MIN_BATCH_BYTES, MAX_FRAME_BYTES
)


@settings(max_examples=200, deadline=None)
@given(messages_and_acks, sizes)
def test_packing_keeps_every_message_in_order_and_every_ack(parts, max_bytes):
    out = packed(parts, max_bytes)
    messages, acks = [], []
    for frame in out:
        decoded = decode_frame(frame, batch=True)
        messages += decoded.messages
        acks += decoded.acked_ids
    assert messages == [decode(p) for p in parts if isinstance(p, str)]
    assert sorted(acks) == sorted(p[0] for p in parts if isinstance(p, tuple))


@settings(max_examples=200, deadline=None)
@given(messages_and_acks, sizes)
def test_a_batch_never_exceeds_the_limit(parts, max_bytes):
    for frame in packed(parts, max_bytes):
        decoded = decode_frame(frame, batch=True)
        if json.loads(frame)["type"] == BATCH:
            assert _size(frame) <= max_bytes
            assert len(decoded.messages) <= MAX_BATCH_MESSAGES
            assert len(decoded.acked_ids) <= MAX_ACKED_IDS
        else:  # a message frame alone, as encode made it
            assert _size(frame) <= MAX_FRAME_BYTES


def _batch_size(frames: list[str], ids: list[str]) -> int:
    try:
        return _size(encode_batch(frames, ids))
    except ProtocolError as error:
        assert error.code == "too_big"
        return MAX_FRAME_BYTES + 1


@settings(max_examples=200, deadline=None)
@given(messages_and_acks, sizes)
def test_a_batch_goes_out_only_when_the_next_part_does_not_fit(parts, max_bytes):
    """Greedy packing: as few frames as possible, for parts kept in their order."""
    batcher = FrameBatcher(max_bytes)
    held: tuple[list[str], list[str]] = ([], [])
    for part in parts:
        is_ack = isinstance(part, tuple)
        sent = batcher.add_ack(part[0]) if is_ack else batcher.add(part)
        if sent is not None:
            frames, ids = held[0], held[1]
            if is_ack:
                ids = [*ids, part[0]]
            else:
                frames = [*frames, part]
            assert (
                len(frames) > MAX_BATCH_MESSAGES
                or len(ids) > MAX_ACKED_IDS
                or _batch_size(frames, ids) > max_bytes
            )
            held = ([], [])
        (held[1] if is_ack else held[0]).append(part[0] if is_ack else part)


# ---- announcing the extension in the SDP (§13) ----

OFFER = (
    "v=0\r\no=- 3921 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:0\r\na=sctp-port:5000\r\n"
)


def test_the_announcement_is_a_session_level_line_before_the_first_media_section():
    announced = announce_features(OFFER)
    assert announced == OFFER.replace(
        "a=group:BUNDLE 0\r\n", "a=group:BUNDLE 0\r\na=peerlab-features:batch\r\n"
    )
    assert sdp_features(announced) == FEATURES == {BATCH}


def test_an_older_peers_sdp_announces_nothing():
    assert sdp_features(OFFER) == frozenset()


def test_announcing_again_replaces_and_nothing_removes():
    twice = announce_features(announce_features(OFFER, ["batch", "zip"]), ["batch"])
    assert twice.count("peerlab-features") == 1 and sdp_features(twice) == {"batch"}
    assert announce_features(twice, []) == OFFER


def test_only_the_session_level_counts_and_unknown_names_are_kept_for_the_caller():
    media_level = OFFER + "a=peerlab-features:batch\r\n"
    assert sdp_features(media_level) == frozenset()
    odd = OFFER.replace("t=0 0\r\n", "t=0 0\r\na=peerlab-features:zip  Batch v2 batch\r\n")
    assert sdp_features(odd) == {"zip", "v2", "batch"}  # "Batch" is not a feature name
    assert FEATURES & sdp_features(odd) == {BATCH}


def test_an_sdp_with_lf_line_ends_or_no_media_section_keeps_its_form():
    lf = OFFER.replace("\r\n", "\n")
    assert announce_features(lf) == lf.replace(
        "a=group:BUNDLE 0\n", "a=group:BUNDLE 0\na=peerlab-features:batch\n"
    )
    session_only = "v=0\r\ns=-\r\nt=0 0\r\n"
    assert announce_features(session_only) == session_only + "a=peerlab-features:batch\r\n"


@pytest.mark.parametrize("name", ["", "Batch", "has space", "x" * 33, "a:b"])
def test_a_feature_name_is_lowercase_letters_digits_and_dashes(name):
    with pytest.raises(ValueError):
        announce_features(OFFER, [name])


@given(st.sets(st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True), max_size=5))
def test_what_is_announced_is_what_is_read(features):
    assert sdp_features(announce_features(OFFER, features)) == features


async def test_an_older_peer_answers_an_offer_that_announces_and_the_link_opens():
    """An aiortc peer that knows nothing of the extension (the reference peer before it
    passed SDP through as aiortc made it) takes an offer carrying the line, answers
    without one, and the data channel opens: the newer offerer then sends no batch, and
    the older answerer never sees one."""
    offerer, answerer = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in "ab")
    try:
        channel = offerer.createDataChannel("peerlab", ordered=True)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await offerer.setLocalDescription(await offerer.createOffer())
        offer = announce_features(offerer.localDescription.sdp)
        await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await answerer.setLocalDescription(await answerer.createAnswer())
        answer = answerer.localDescription.sdp
        assert sdp_features(offer) == {BATCH} and sdp_features(answer) == frozenset()
        assert FEATURES & sdp_features(answer) == frozenset()
        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(10):
            await opened.wait()
    finally:
        await offerer.close()
        await answerer.close()
