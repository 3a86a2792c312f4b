"""The link lifecycle's transition table (peer/state.py) and the manager's use of it."""

from __future__ import annotations

import itertools

import pytest

from peerlab.peer.manager import PeerConnectionManager
from peerlab.peer.signaling_client import SignalingClient
from peerlab.peer.state import (
    TRANSITIONS,
    IllegalTransition,
    P2PConnectionState,
    check_transition,
)

S = P2PConnectionState

# What the agent does, as (from, to): each must be allowed.
LIFECYCLE = [
    (S.NEW, S.CONNECTING),  # connect, or the remote's offer
    (S.CONNECTING, S.CONNECTED),  # the channel opened
    (S.CONNECTED, S.DISCONNECTED),  # heartbeats stopped
    (S.DISCONNECTED, S.CONNECTED),  # they came back
    (S.DISCONNECTED, S.FAILED),  # they did not, within failed_after
    (S.FAILED, S.CONNECTING),  # offering again
    (S.CONNECTING, S.FAILED),  # an attempt that failed
    (S.CONNECTED, S.CONNECTING),  # a fresh offer on a live link
    (S.CONNECTED, S.CLOSED),  # disconnect, or the remote's bye
    (S.CLOSED, S.CONNECTING),  # asked for again
    (S.NEW, S.CLOSED),  # disconnect before any attempt
]


@pytest.mark.parametrize(("old", "new"), LIFECYCLE, ids=lambda s: s.value)
def test_what_the_agent_does_is_allowed(old, new):
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.NEW, S.CONNECTED), (S.FAILED, S.CONNECTED), (S.CLOSED, S.CONNECTED), (S.CLOSED, S.FAILED)],
    ids=lambda s: s.value,
)
def test_a_shortcut_is_refused_naming_what_is_allowed(old, new):
    with pytest.raises(IllegalTransition, match=f"cannot go from {old} to {new}"):
        check_transition(old, new)


def test_the_table_covers_every_state_and_staying_is_not_a_transition():
    assert set(TRANSITIONS) == set(S)
    for state in S:
        check_transition(state, state)
        assert state not in TRANSITIONS[state]
    allowed = {(a, b) for a, b in itertools.product(S, S) if b in TRANSITIONS[a]}
    assert set(LIFECYCLE) <= allowed


async def test_the_manager_refuses_an_illegal_transition():
    manager = PeerConnectionManager(
        "alice", SignalingClient("ws://127.0.0.1:9", "r", "alice", "t"), epoch="e1"
    )
    link = manager._link("bob")
    with pytest.raises(IllegalTransition):
        manager._set_state(link, S.CONNECTED)
    assert manager.state("bob") is S.NEW
