"""A peer changes network mid-conversation (Wi-Fi → cellular: a new LAN, a new router, a
new address): the link is rebuilt and nothing sent either way is lost or duplicated."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 7  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {
    "lans": {
        "wifi": {"nat": "port-restricted", "hairpin": True},
        "cellular": {"nat": "symmetric"},
    },
    "peers": {"peer1": "wifi"},
}


async def run(lab: Lab) -> None:
    await lab.connect("peer1", "peer2")
    pairs = [("peer1", "peer2"), ("peer2", "peer1")]
    async with lab.keep_sending(pairs, "handover", interval=0.1):
        await asyncio.sleep(1.0)
        mark = (await lab.agents["peer2"].state())["last_event"]
        await lab.faults.move("peer1", "cellular")
        (event,) = await lab.agents["peer2"].wait(
            "state", peer="peer1", new="connected", since=mark, timeout=60
        )
        lab.progress(f"peer2 ↔ peer1 rebuilt over {event.get('candidate_pair')}")
        await asyncio.sleep(1.0)
    await lab.assert_delivered(pairs, timeout=60)
    await lab.assert_same_history("peer1", "peer2", "handover")
