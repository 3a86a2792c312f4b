"""peer1's NAT forgets its mappings mid-conversation and maps it to a new public address
(as a carrier-grade NAT may): the link recovers and nothing is lost or duplicated."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 10  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "port-restricted"}}}


async def run(lab: Lab) -> None:
    await lab.connect("peer1", "peer2")
    pairs = [("peer1", "peer2"), ("peer2", "peer1")]
    async with lab.keep_sending(pairs, "rebound", interval=0.1):
        await asyncio.sleep(1.0)
        mark = (await lab.agents["peer2"].state())["last_event"]
        await lab.faults.rebind("peer1")
        (event,) = await lab.agents["peer2"].wait(
            "state", peer="peer1", new="connected", since=mark, timeout=60
        )
        lab.progress(f"peer2 ↔ peer1 connected again over {event.get('candidate_pair')}")
        await asyncio.sleep(1.0)
    await lab.assert_delivered(pairs, timeout=60)
    await lab.assert_same_history("peer1", "peer2", "rebound")
