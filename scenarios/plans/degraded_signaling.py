"""The signaling path degraded (Toxiproxy, through the fault vocabulary): first latency
with jitter, then a bandwidth limit. Peers still connect (visibly slower: the toxics
took effect) and deliver all."""

from __future__ import annotations

import time

from peerlab.scenarios.lab import Lab

PEERS = 3
LATENCY_MS = 400
JITTER_MS = 100
RATE_KBIT = 64
"""8 KB/s; an offer's SDP is about 1 KB."""


async def _timed_connect(lab: Lab, a: str, b: str) -> float:
    started = time.monotonic()
    await lab.connect(a, b, timeout=60)
    return time.monotonic() - started


async def run(lab: Lab) -> None:
    lag = await lab.faults.shape("signaling", "both", delay_ms=LATENCY_MS, jitter_ms=JITTER_MS)
    took = await _timed_connect(lab, "peer1", "peer2")
    # The offer and the answer each cross two toxic streams (sender's up, receiver's down).
    floor = 2 * 2 * (LATENCY_MS - JITTER_MS) / 1000
    assert took >= floor, f"connect took {took:.2f}s under latency; expected at least {floor}s"
    lab.progress(f"peer1 ↔ peer2 connected in {took:.2f}s under latency")
    await lab.send_every_type("peer1", "peer2", "slow")
    await lab.send_every_type("peer2", "peer1", "slow")

    await lab.faults.clear(lag)
    await lab.faults.shape("signaling", "both", rate_kbit=RATE_KBIT)
    took = await _timed_connect(lab, "peer3", "peer1")
    lab.progress(f"peer3 ↔ peer1 connected in {took:.2f}s under a bandwidth limit")
    took = await _timed_connect(lab, "peer3", "peer2")
    lab.progress(f"peer3 ↔ peer2 connected in {took:.2f}s under a bandwidth limit")
    for a, b in (("peer3", "peer1"), ("peer3", "peer2"), ("peer1", "peer3")):
        await lab.send_every_type(a, b, "narrow")

    await lab.assert_delivered(
        [
            ("peer1", "peer2"),
            ("peer2", "peer1"),
            ("peer3", "peer1"),
            ("peer3", "peer2"),
            ("peer1", "peer3"),
        ]
    )
    await lab.assert_same_history("peer1", "peer2", "slow")
    await lab.assert_same_history("peer1", "peer3", "narrow")
