"""A 10 s partition between two peers behind NATs while both keep sending: both report
the other disconnected within 3 s, the link is back within 5 s of the heal (on a shaped
network, a profile's, plus round trips of the path: RECONNECT_LIMIT), and nothing
is lost or duplicated; then three 1 s cuts (flapping) lose nothing either. The link is
direct only (no TURN): with a relay the agents would route around the partition, which
is no partition at all."""

from __future__ import annotations

import asyncio
import time

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 26  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "port-restricted"}, "peer2": {"nat": "full-cone"}}}
PARTITION_S = 10.0
DETECTION_LIMIT = 3.0
RECONNECT_LIMIT = 5.0
"""On the default network. On a shaped one (a profile), detection may take one more
round trip of the path (the last heartbeat was on its way) and reconnection
RECONNECT_ROUND_TRIPS more: offer and answer through signaling, STUN, ICE checks, DTLS,
SCTP and the channel's open each take one or two. Under `satellite` (1.24 s added
between the two peers) reconnection took 8.0 and 11.1 s."""
RECONNECT_ROUND_TRIPS = 10
FLAP_DOWN_S = 1.0


async def run(lab: Lab) -> None:
    await lab.connect("peer1", "peer2", turn=False)
    pairs = [("peer1", "peer2"), ("peer2", "peer1")]
    round_trip = lab.faults.added_round_trip_s("peer1", "peer2")
    detection_limit = DETECTION_LIMIT + round_trip
    reconnect_limit = RECONNECT_LIMIT + RECONNECT_ROUND_TRIPS * round_trip
    async with lab.keep_sending(pairs, "partitioned", interval=0.1):
        await asyncio.sleep(1.0)
        marks = {name: (await lab.agents[name].state())["last_event"] for name in lab.peers}
        cut = await lab.faults.partition("peer1", "peer2")
        started = cut.applied_at
        for a, b in pairs:
            (event,) = await lab.agents[a].wait(
                "state", peer=b, new="disconnected", since=marks[a], timeout=10
            )
            took = event["t_wall"] - started
            lab.progress(f"{a} reported {b} disconnected after {took:.2f}s")
            assert took <= detection_limit, (
                f"{a} took {took:.2f}s to report {b} disconnected (limit {detection_limit:g}s)"
            )
        await asyncio.sleep(PARTITION_S - (time.time() - started))
        marks = {name: (await lab.agents[name].state())["last_event"] for name in lab.peers}
        await lab.faults.clear(cut)
        healed = time.time()
        for a, b in pairs:
            (event,) = await lab.agents[a].wait(
                "state", peer=b, new="connected", since=marks[a], timeout=30
            )
            took = event["t_wall"] - healed
            lab.progress(f"{a} ↔ {b} connected again {took:.2f}s after the heal")
            assert took <= reconnect_limit, (
                f"{a} took {took:.2f}s after the heal to reconnect to {b} "
                f"(limit {reconnect_limit:g}s)"
            )
        # Cuts shorter than the heartbeat timeout: nothing reported, nothing lost.
        await lab.faults.flap("peer1", "peer2", down_s=FLAP_DOWN_S, up_s=2.0, cycles=3)
        await asyncio.sleep(1.0)
    await lab.assert_delivered(pairs, timeout=60)
    await lab.assert_same_history("peer1", "peer2", "partitioned")
