"""The lifecycle of one peer link (its states and the transitions between them), and the
rule that resolves offer glare. Pure."""

from __future__ import annotations

from enum import StrEnum


class P2PConnectionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    """The data channel went silent (heartbeat timeout); the link may still come back."""
    FAILED = "failed"
    """The connection is gone; the manager is replacing it with a fresh one."""
    CLOSED = "closed"
    """Closed on purpose, by either side; nothing will reconnect it."""


_S = P2PConnectionState

TRANSITIONS: dict[P2PConnectionState, frozenset[P2PConnectionState]] = {
    _S.NEW: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.FAILED, _S.CLOSED}),
    # A fresh offer is answered on a live link too (docs/protocol.md §11): back to CONNECTING.
    _S.CONNECTED: frozenset({_S.DISCONNECTED, _S.FAILED, _S.CONNECTING, _S.CLOSED}),
    _S.DISCONNECTED: frozenset({_S.CONNECTED, _S.FAILED, _S.CONNECTING, _S.CLOSED}),
    _S.FAILED: frozenset({_S.CONNECTING, _S.CLOSED}),
    # A closed link starts again when either side asks (a connect, or the remote's offer).
    _S.CLOSED: frozenset({_S.CONNECTING}),
}
"""The states a link may go to from each state; staying in a state is not a transition."""


class IllegalTransition(RuntimeError):
    """A link was asked to change state in a way the lifecycle does not allow: a bug."""


def check_transition(old: P2PConnectionState, new: P2PConnectionState) -> None:
    """Refuse a change of state that TRANSITIONS does not list."""
    if new is not old and new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old]))
        raise IllegalTransition(f"a link cannot go from {old} to {new} (from {old}: {allowed})")


def wins_glare(local_id: str, remote_id: str) -> bool:
    """When both peers sent an offer at once, the one with the smaller id keeps its offer.

    Both sides evaluate the same comparison, so exactly one of them backs off and answers.
    """
    if local_id == remote_id:
        raise ValueError("a peer cannot connect to itself")
    return local_id < remote_id
