"""Admission of connections: caps overall and per source address (pure).

Every accepted TCP connection holds a :class:`Slot` until it is closed. A slot
starts *pending* (the opening handshake: the HTTP request has not been answered
yet) and becomes *open* when its WebSocket upgrade is admitted. Pending slots
are capped so that connections which never send a request cannot use up the
process's file descriptors; open slots are capped overall and per source
address, and a refused upgrade is answered with an HTTP status (see
``docs/signaling-protocol.md`` §6).
"""

from __future__ import annotations

import ipaddress
from enum import Enum

# Why an upgrade was refused: the server's open connections, or the address's.
SERVER_FULL = "server_full"
ADDRESS_FULL = "address_full"


def address_key(host: str) -> str:
    """What the per-address caps count by: an IPv4 address, or an IPv6 /64.

    One IPv6 host commonly owns a whole /64, so counting single IPv6 addresses
    would not cap it. An IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a Unix socket): counted as is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _State(Enum):
    PENDING = "pending"
    OPEN = "open"
    DONE = "done"


class ConnectionLimits:
    """Counts of pending and open connections, overall and per address.

    ``max_per_address`` caps an address's open connections and, separately, its
    pending ones: one address can then fill neither the server nor the pending
    pool that ``/healthz`` and new clients need.
    """

    def __init__(self, max_connections: int, max_per_address: int, max_handshakes: int) -> None:
        if min(max_connections, max_per_address, max_handshakes) < 1:
            raise ValueError("every connection limit must be >= 1")
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.max_handshakes = max_handshakes
        self._pending: dict[str, int] = {}
        self._open: dict[str, int] = {}
        self.pending = 0
        self.open = 0

    def accept(self, address: str) -> Slot | None:
        """A TCP connection from ``address`` was accepted; ``None``: close it at once."""
        if self.pending >= self.max_handshakes:
            return None
        if self._pending.get(address, 0) >= self.max_per_address:
            return None
        self.pending += 1
        _increment(self._pending, address)
        return Slot(self, address)

    def _admit(self, address: str) -> str | None:
        self._leave_pending(address)
        if self.open >= self.max_connections:
            return SERVER_FULL
        if self._open.get(address, 0) >= self.max_per_address:
            return ADDRESS_FULL
        self.open += 1
        _increment(self._open, address)
        return None

    def _leave_pending(self, address: str) -> None:
        self.pending -= 1
        _decrement(self._pending, address)

    def _close(self, address: str) -> None:
        self.open -= 1
        _decrement(self._open, address)


class Slot:
    """One TCP connection's place in :class:`ConnectionLimits`, from accept to close."""

    def __init__(self, limits: ConnectionLimits, address: str) -> None:
        self._limits = limits
        self.address = address
        self._state = _State.PENDING

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    def admit(self) -> str | None:
        """End the handshake: ``None`` if the connection may open, else why not.

        A refused connection no longer counts: it is answered and closed at once.
        """
        if self._state is not _State.PENDING:
            raise RuntimeError(f"admit() on a {self._state.value} slot")
        refusal = self._limits._admit(self.address)
        self._state = _State.DONE if refusal else _State.OPEN
        return refusal

    def release(self) -> None:
        """The connection is closed. Idempotent."""
        if self._state is _State.PENDING:
            self._limits._leave_pending(self.address)
        elif self._state is _State.OPEN:
            self._limits._close(self.address)
        self._state = _State.DONE


def _increment(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _decrement(counts: dict[str, int], key: str) -> None:
    # Keys at zero are removed: the table only holds addresses that are connected.
    if counts[key] == 1:
        del counts[key]
    else:
        counts[key] -= 1
