"""20 % random loss both ways plus reordering on the UDP data path (peer1's router), and
two 1 s one-way cuts of the ack path: every message is still delivered exactly once and
in order, and the agents' own retransmissions show in the event logs. An agent that
delivers a retransmitted duplicate twice fails here (make suite-check runs that agent)."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 31  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "port-restricted"}}}
ENV = {"RETRANSMIT_AFTER": "0.3"}
"""An eager retransmission timer, so that copies of delivered messages (whose ack was
lost or late) really cross the path: the receiver must drop every one."""
BURSTS, BURST_SIZE, BURST_GAP = 60, 5, 0.35
"""Messages go in bursts with quiet gaps: a loss at a burst's tail (the last message or
its SACK) leaves SCTP waiting for its own retransmission timeout (1 s and more), so the
agent's 0.3 s timer fires first and a copy crosses the path, dozens of times a run. A
steady stream would have SCTP repair nearly every loss within a round trip."""
FAULTS = {"loss": 0.2, "reorder": 0.1, "reorder_gap_ms": 30}


async def _bursts(lab: Lab, a: str, b: str) -> None:
    await lab.send_every_type(a, b, "lossy")
    for _ in range(BURSTS):
        await lab.send_texts(a, b, "lossy", BURST_SIZE)
        await asyncio.sleep(BURST_GAP)


async def _ack_path_cuts(lab: Lab) -> None:
    """Two 1 s cuts of the path from peer2 to peer1 alone, in the middle of the bursts:
    peer1's messages still arrive but their acks do not, so its 0.3 s timer sends copies
    of delivered messages — however kind the random losses were in this run. Shorter
    than the heartbeat timeout: nobody reports a disconnection."""
    await asyncio.sleep(3.0)
    await lab.faults.flap("peer1", "peer2", down_s=1.0, up_s=4.0, cycles=2, direction="b->a")


async def run(lab: Lab) -> None:
    # The direct path only, as the faults are on it: under loss a relay (TURN over TCP,
    # which the ack-path cuts do not touch) could win ICE's race, seen under `lossy`.
    await lab.connect("peer1", "peer2", turn=False)
    await lab.faults.shape("peer1", "both", **FAULTS)
    pairs = [("peer1", "peer2"), ("peer2", "peer1")]
    await asyncio.gather(*(_bursts(lab, a, b) for a, b in pairs), _ack_path_cuts(lab))
    await lab.assert_delivered(pairs, timeout=120)
    await lab.assert_same_history("peer1", "peer2", "lossy")
    retransmitted = {
        name: len(await lab.agents[name].events(kind="retransmitted")) for name in lab.peers
    }
    duplicates = {name: len(await lab.agents[name].events(kind="duplicate")) for name in lab.peers}
    lab.progress(f"retransmissions {retransmitted}, copies dropped by receivers {duplicates}")
    assert sum(retransmitted.values()) > 0 and sum(duplicates.values()) > 0, (
        "under 20 % loss no retransmitted copy reached a receiver, so this run could not "
        f"have caught a double delivery (retransmissions {retransmitted}, copies {duplicates})"
    )
