"""`IceOptions`: which ICE servers a link hands aiortc (STUN only without TURN); how long a
channel may take to open once ICE has found a path (`open_deadline`), and how long the
next reconnection attempt waits for ICE and DTLS (`next_open_timeout`)."""

from __future__ import annotations

import pytest

from peerlab.peer.connection import IceOptions, IceServer, next_open_timeout, open_deadline

SERVERS = [
    IceServer(("stun:stun:3478",)),
    IceServer(("turn:toxiproxy:13478?transport=tcp", "stun:alt:3478"), "user", "secret"),
]


def test_by_default_every_server_is_used():
    assert [s.urls for s in IceOptions().servers(SERVERS)] == [
        ["stun:stun:3478"],
        ["turn:toxiproxy:13478?transport=tcp", "stun:alt:3478"],
    ]


def test_without_turn_only_stun_urls_remain_and_keep_their_credentials():
    servers = IceOptions(turn=False).servers(SERVERS)
    assert [(s.urls, s.username) for s in servers] == [
        (["stun:stun:3478"], None),
        (["stun:alt:3478"], "user"),
    ]


def test_relay_only_without_turn_is_refused():
    with pytest.raises(ValueError, match="relay_only needs TURN"):
        IceOptions(relay_only=True, turn=False)


@pytest.mark.parametrize(
    ("state", "path_found_timeout", "expected"),
    [
        ("connecting", 15.0, 4.0),  # ICE searching, or DTLS stalled: a fresh attempt
        ("new", 15.0, 4.0),
        ("failed", 15.0, 4.0),
        ("connected", 15.0, 15.0),  # ICE and DTLS through: SCTP and the open get time
        ("connected", None, 4.0),  # no longer wait asked for
        ("connected", 3.0, 4.0),  # never shorter than already waited
    ],
)
def test_a_channel_gets_longer_to_open_only_once_ice_and_dtls_are_through(
    state, path_found_timeout, expected
):
    assert open_deadline(4.0, path_found_timeout, state) == expected


@pytest.mark.parametrize(
    ("ice_state", "current", "expected"),
    [
        ("checking", 4.0, 4.0),  # no path yet (a partition): short attempts find it sooner
        ("failed", 4.0, 4.0),
        ("completed", 4.0, 8.0),  # a path, but DTLS too slow for it: twice as long
        ("completed", 8.0, 15.0),  # never beyond an attempt's ceiling
        ("completed", 15.0, 15.0),
    ],
)
def test_a_reconnection_waits_longer_only_after_an_attempt_that_found_a_path(
    ice_state, current, expected
):
    assert next_open_timeout(current, ice_state, 15.0) == expected
