"""The lifecycle of one peer link, and the rule that resolves offer glare. Pure."""

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


def wins_glare(local_id: str, remote_id: str) -> bool:
    """When both peers sent an offer at once, the one with the smaller id keeps its offer.

    Both sides evaluate the same comparison, so exactly one of them backs off and answers.
    """
    if local_id == remote_id:
        raise ValueError("a peer cannot connect to itself")
    return local_id < remote_id
