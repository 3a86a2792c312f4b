"""`IceOptions`: which ICE servers a link hands aiortc (STUN only without TURN)."""

from __future__ import annotations

import pytest

from peerlab.peer.connection import IceOptions, IceServer

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
