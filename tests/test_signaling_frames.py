"""Parsing and validation of signaling frames (signaling.frames), without sockets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from peerlab.signaling import frames
from peerlab.signaling.auth import ice_servers_for, make_token, turn_credentials, verify_token
from peerlab.signaling.frames import (
    FrameError,
    Ping,
    Register,
    Relay,
    encode,
    error_frame,
    parse_frame,
    relayed_frame,
)

TOKEN = "0" * 64


def parse(obj: Any, registered_as: str | None = "alice") -> frames.ClientFrame:
    return parse_frame(json.dumps(obj), registered_as)


def rejected(message: str | bytes, registered_as: str | None = "alice") -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_frame(message, registered_as)
    return info.value


def rejected_obj(obj: Any, registered_as: str | None = "alice") -> FrameError:
    return rejected(json.dumps(obj), registered_as)


OFFER = {"type": "offer", "to": "bob", "sdp": "v=0\r\n", "session": "s1"}
ANSWER = {"type": "answer", "to": "bob", "sdp": "v=0\r\n", "session": "s1"}
CANDIDATE = {
    "type": "candidate",
    "to": "bob",
    "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0"},
    "session": "s1",
}


# Valid frames.


def test_register():
    frame = parse({"type": "register", "room": "lab-1", "peer": "a.b_C", "token": TOKEN}, None)
    assert frame == Register(room="lab-1", peer="a.b_C", token=TOKEN)


def test_ping_after_register():
    assert parse({"type": "ping"}) == Ping()


@pytest.mark.parametrize(
    "obj",
    [
        OFFER,
        ANSWER,
        CANDIDATE,
        {**CANDIDATE, "candidate": None},
        {"type": "bye", "to": "bob"},
        {"type": "bye", "to": "bob", "session": "s1", "reason": "done"},
        {**OFFER, "from": "alice"},
    ],
)
def test_relay_frames(obj):
    frame = parse(obj)
    assert frame == Relay(type=obj["type"], to="bob", frame=obj)


def test_relayed_frame_removes_to_and_sets_from():
    relay = parse({**OFFER, "from": "alice"})
    assert isinstance(relay, Relay)
    out = relayed_frame(relay, "alice")
    assert out == {"type": "offer", "sdp": "v=0\r\n", "session": "s1", "from": "alice"}


def test_sdp_at_the_limit_is_accepted():
    assert parse({**OFFER, "sdp": "x" * frames.MAX_SDP_BYTES})


# Rejections, one per error code produced by pure validation.


@pytest.mark.parametrize(
    "message", ["{", "", "[1, 2]", '"offer"', "null", "1", "[" * 100_000, b'{"type":"ping"}']
)
def test_bad_json(message):
    error = rejected(message)
    assert error.code == "bad_json"
    assert error.ref is None


def test_missing_type():
    error = rejected_obj({"to": "bob"})
    assert (error.code, error.ref) == ("missing_field", None)
    assert "'type'" in error.message


@pytest.mark.parametrize("kind", [1, None, ["offer"], {"x": 1}])
def test_type_not_a_string(kind):
    error = rejected_obj({"type": kind})
    assert (error.code, error.ref) == ("bad_field", None)
    assert "'type'" in error.message


@pytest.mark.parametrize("kind", ["hello", "OFFER", "registered", "error", ""])
def test_unknown_type(kind):
    error = rejected_obj({"type": kind})
    assert (error.code, error.ref) == ("unknown_type", kind)


@pytest.mark.parametrize("obj", [OFFER, CANDIDATE, {"type": "ping"}, {"type": "bye"}])
def test_not_registered(obj):
    error = rejected_obj(obj, registered_as=None)
    assert (error.code, error.ref) == ("not_registered", obj["type"])


def test_already_registered():
    error = rejected_obj({"type": "register", "room": "r", "peer": "p", "token": TOKEN})
    assert (error.code, error.ref) == ("already_registered", "register")


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "register", "peer": "p", "token": TOKEN}, "room"),
        ({"type": "register", "room": "r", "token": TOKEN}, "peer"),
        ({"type": "register", "room": "r", "peer": "p"}, "token"),
        ({"type": "offer", "sdp": "v=0", "session": "s"}, "to"),
        ({"type": "offer", "to": "bob", "session": "s"}, "sdp"),
        ({"type": "answer", "to": "bob", "sdp": "v=0"}, "session"),
        ({"type": "candidate", "to": "bob", "session": "s"}, "candidate"),
        ({"type": "candidate", "to": "bob", "candidate": None}, "session"),
        ({"type": "bye"}, "to"),
    ],
)
def test_missing_field(obj, field):
    registered_as = None if obj["type"] == "register" else "alice"
    error = rejected_obj(obj, registered_as)
    assert (error.code, error.ref) == ("missing_field", obj["type"])
    assert repr(field) in error.message


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "register", "room": "a b", "peer": "p", "token": TOKEN}, "room"),
        ({"type": "register", "room": "r", "peer": "x" * 65, "token": TOKEN}, "peer"),
        ({"type": "register", "room": "r", "peer": "", "token": TOKEN}, "peer"),
        ({"type": "register", "room": "r", "peer": "p\n", "token": TOKEN}, "peer"),
        ({"type": "register", "room": "r", "peer": "é", "token": TOKEN}, "peer"),
        ({"type": "register", "room": "r", "peer": "p", "token": 5}, "token"),
        ({"type": "register", "room": 7, "peer": "p", "token": TOKEN}, "room"),
        ({**OFFER, "to": "bob/../x"}, "to"),
        ({**OFFER, "to": None}, "to"),
        ({**OFFER, "sdp": {"sdp": "v=0"}}, "sdp"),
        ({**ANSWER, "session": 1}, "session"),
        ({**CANDIDATE, "candidate": "candidate:1 1 udp"}, "candidate"),
        ({**CANDIDATE, "candidate": []}, "candidate"),
        ({"type": "bye", "to": "bob", "reason": 3}, "reason"),
        ({"type": "bye", "to": "bob", "session": None}, "session"),
        ({**OFFER, "from": "mallory"}, "from"),
        ({**OFFER, "from": None}, "from"),
    ],
)
def test_bad_field(obj, field):
    registered_as = None if obj["type"] == "register" else "alice"
    error = rejected_obj(obj, registered_as)
    assert (error.code, error.ref) == ("bad_field", obj["type"])
    assert repr(field) in error.message


def test_sdp_over_64_kib_is_too_big():
    error = rejected_obj({**OFFER, "sdp": "x" * (frames.MAX_SDP_BYTES + 1)})
    assert (error.code, error.ref) == ("too_big", "offer")
    # The limit is in UTF-8 bytes, not characters.
    error = rejected_obj({**ANSWER, "sdp": "é" * (frames.MAX_SDP_BYTES // 2 + 1)})
    assert error.code == "too_big"


def test_error_frame_shape():
    error = rejected_obj({**OFFER, "to": 5})
    assert error.to_frame() == {
        "type": "error",
        "code": "bad_field",
        "message": error.message,
        "ref": "offer",
    }
    assert error_frame("bad_json", "m") == {
        "type": "error",
        "code": "bad_json",
        "message": "m",
        "ref": None,
    }


# What the server must not relay: not I-JSON, not Unicode text, unknown fields, to itself.


@pytest.mark.parametrize(
    "message",
    [
        '{"type":"candidate","to":"bob","session":"s","candidate":{"sdpMLineIndex":NaN}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":Infinity}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":-Infinity}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":1e400}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":-1e400}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":9007199254740992}}',
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":1' + "0" * 5000 + "}}",
        '{"type":"candidate","to":"bob","session":"s","candidate":{"x":-1' + "0" * 5000 + "}}",
        '{"type":"ping","type":"ping"}',
        '{"type":"bye","to":"bob","to":"carol"}',
    ],
)
def test_not_i_json_is_bad_json(message):
    error = rejected(message)
    assert (error.code, error.ref) == ("bad_json", None)
    # A clean message, not the interpreter's (int's 4300-digit limit is never reached).
    assert "4300" not in error.message and len(error.message) < 200


def test_numbers_within_i_json_are_accepted():
    candidate = {"sdpMLineIndex": 2**53 - 1, "a": -(2**53 - 1), "b": -0.5, "c": 1e308}
    relay = parse({**CANDIDATE, "candidate": candidate})
    assert isinstance(relay, Relay)
    assert json.loads(encode(relayed_frame(relay, "alice")))["candidate"] == candidate


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({**OFFER, "sdp": "v=0\ud800"}, "sdp"),
        ({**ANSWER, "sdp": "\udfff"}, "sdp"),
        ({**OFFER, "session": "s\udc00"}, "session"),
        ({"type": "bye", "to": "bob", "reason": "\ud83d"}, "reason"),
        ({**CANDIDATE, "candidate": {"candidate": "a\ud800"}}, "candidate"),
        ({**CANDIDATE, "candidate": {"\ud800": "key"}}, "candidate"),
        ({**CANDIDATE, "candidate": {"a": [{"b": ["\udbff"]}]}}, "candidate"),
        ({"type": "register", "room": "r", "peer": "p", "token": "\ud800"}, "token"),
    ],
)
def test_lone_surrogates_are_rejected(obj, field):
    registered_as = None if obj["type"] == "register" else "alice"
    error = rejected_obj(obj, registered_as)
    assert (error.code, error.ref) == ("bad_field", obj["type"])
    assert repr(field) in error.message


def test_a_lone_surrogate_type_is_not_echoed_back():
    error = rejected('{"type":"\\ud800"}')
    assert (error.code, error.ref) == ("bad_field", None)


def test_surrogate_pairs_are_text_and_relayed_as_ascii():
    relay = parse_frame('{"type":"offer","to":"bob","sdp":"\\ud83d\\ude00 é","session":"s"}', "a")
    assert isinstance(relay, Relay)
    text = encode(relayed_frame(relay, "alice"))
    assert text.isascii()
    assert json.loads(text)["sdp"] == "\U0001f600 é"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "register", "room": "r", "peer": "p", "token": TOKEN, "admin": True}, "admin"),
        ({"type": "ping", "id": 1}, "id"),
        ({**OFFER, "extra": [1, 2]}, "extra"),
        ({**ANSWER, "candidate": None}, "candidate"),
        ({**CANDIDATE, "sdp": "v=0"}, "sdp"),
        ({**CANDIDATE, "reason": "x"}, "reason"),
        ({"type": "bye", "to": "bob", "sdp": "v=0"}, "sdp"),
        ({"type": "bye", "to": "bob", "To": "carol"}, "To"),
    ],
)
def test_unknown_fields_are_rejected(obj, field):
    registered_as = None if obj["type"] == "register" else "alice"
    error = rejected_obj(obj, registered_as)
    assert (error.code, error.ref) == ("unknown_field", obj["type"])
    assert repr(field) in error.message


def test_unknown_fields_come_after_registration_state_and_before_fields():
    error = rejected_obj({"type": "offer", "extra": 1}, registered_as=None)
    assert error.code == "not_registered"
    error = rejected_obj({"type": "offer", "extra": 1})  # "to", "sdp"... missing too
    assert error.code == "unknown_field"


@pytest.mark.parametrize(
    "obj",
    [
        {**OFFER, "to": "alice"},
        {**ANSWER, "to": "alice"},
        {**CANDIDATE, "to": "alice"},
        {"type": "bye", "to": "alice"},
    ],
)
def test_relay_to_oneself_is_rejected(obj):
    error = rejected_obj(obj, registered_as="alice")
    assert (error.code, error.ref) == ("bad_field", obj["type"])
    assert "'to'" in error.message


def test_candidate_nesting_is_bounded():
    deep: Any = "x"
    for _ in range(frames.MAX_CANDIDATE_DEPTH - 1):
        deep = [deep]
    assert parse({**CANDIDATE, "candidate": {"a": deep}})  # exactly the limit
    error = rejected_obj({**CANDIDATE, "candidate": {"a": [deep]}})
    assert (error.code, error.ref) == ("bad_field", "candidate")
    # Nested about as deep as the JSON decoder allows: rejected, never a RecursionError.
    nested = "[" * 900 + "]" * 900
    error = rejected(
        '{"type":"candidate","to":"bob","session":"s","candidate":{"a":' + nested + "}}"
    )
    assert error.code in ("bad_field", "bad_json")


def test_every_error_code_is_in_the_doc_table():
    codes = {
        value
        for name, value in vars(frames).items()
        if name.isupper() and isinstance(value, str) and value.islower() and "_" in value
    }
    assert "unknown_field" in codes and "bad_json" in codes
    text = DOC.read_text()
    for code in codes:
        assert f"| `{code}` |" in text, code


# docs/signaling-protocol.md must not drift from the code.

DOC = Path(__file__).resolve().parent.parent / "docs" / "signaling-protocol.md"


def doc_examples(section: str) -> list[dict[str, Any]]:
    """JSON examples of the section whose title starts with ``section``."""
    text = DOC.read_text()
    (body,) = [part for part in text.split("\n## ") if part.startswith(section)]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", body, re.S)]


def test_doc_client_frame_examples_are_accepted():
    examples = doc_examples("4. Client")
    assert {frame["type"] for frame in examples} == set(frames.CLIENT_TYPES)
    for example in examples:
        registered_as = None if example["type"] == "register" else "alice"
        if example.get("to") == "alice":
            registered_as = "bob"  # the sender is never the target
        frame = parse_frame(json.dumps(example), registered_as)
        if isinstance(frame, Register):
            assert verify_token("peerlab-secret", frame.room, frame.peer, frame.token)


def test_doc_server_frame_examples():
    examples = doc_examples("5. Server")
    assert {frame["type"] for frame in examples} == {
        "registered",
        "presence",
        "offer",
        "pong",
        "error",
    }
    for example in examples:
        if example["type"] == "registered":
            urls = [url for entry in example["ice_servers"] for url in entry["urls"]]
            assert example["ice_servers"] == ice_servers_for(
                example["peer"], urls, "turn-secret", 3600, 1_700_000_000
            )
        if example["type"] == "error":
            assert example["code"] in DOC.read_text()


def test_doc_worked_examples():
    text = DOC.read_text()
    assert make_token("peerlab-secret", "lobby", "alice") in text
    username, credential = turn_credentials("turn-secret", "alice", 3600, 1_700_000_000)
    assert f"username `{username}`" in text
    assert f"credential `{credential}`" in text
