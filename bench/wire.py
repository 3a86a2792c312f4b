"""What one end of a benchmark put on the wire: the datagrams and bytes it sent.

aiortc bundles no SCTP chunks: every SCTP packet, a DATA chunk or a SACK, is one DTLS
record in one UDP datagram, so datagrams sent per message count the data packets and
the acknowledgements (SACKs) an end sends, and bytes include every header down to UDP's
payload. Both ends share the counters of their connection's DTLS transport.
"""

from __future__ import annotations

from typing import Any


def sent(pc: Any) -> tuple[int, int] | None:
    """(datagrams, bytes) the RTCPeerConnection's DTLS transport has sent so far; None
    without a connection, or if aiortc moved its counters (they are only reachable
    through a private method: `getStats()` reports transports only for media)."""
    try:
        report = pc.sctp.transport._get_stats()
    except AttributeError:
        return None
    for stats in report.values():
        if stats.type == "transport":
            return stats.packetsSent, stats.bytesSent
    return None


def since(before: tuple[int, int] | None, after: tuple[int, int] | None) -> tuple[int, int] | None:
    """What was sent between two readings of `sent`."""
    if before is None or after is None:
        return None
    return after[0] - before[0], after[1] - before[1]
