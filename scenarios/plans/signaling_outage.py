"""A signaling outage mid-conversation (the Toxiproxy proxy disabled): the peers see the
signaling server go, their existing link keeps delivering; after the proxy is enabled
again they re-register and a new peer joins and connects."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.lab import Lab

PEERS = 3
BODY_S = 5  # seconds its body takes in `make test`: runs start longest first


async def run(lab: Lab) -> None:
    newcomer = lab.peers[-1]
    await lab.stack.compose("stop", newcomer, timeout=60)  # it joins after the outage
    await lab.connect("peer1", "peer2")
    await lab.send_texts("peer1", "peer2", "before", 5)

    await lab.toxiproxy.set_enabled("signaling", False)
    lab.progress("signaling proxy disabled")
    for name in ("peer1", "peer2"):
        await lab.agents[name].wait("signaling", event="disconnected", timeout=10)
    lab.progress("both peers lost the signaling server")
    await lab.send_texts("peer1", "peer2", "during", 10, pause=0.05)
    await lab.send_texts("peer2", "peer1", "during", 10, pause=0.05)
    await lab.send_every_type("peer1", "peer2", "during")
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")])
    for name in ("peer1", "peer2"):
        health = await lab.agents[name].health()
        assert not health["registered"], f"{name} still registered during the outage"
    lab.progress("the peer link kept delivering during the outage")

    await lab.toxiproxy.set_enabled("signaling", True)
    lab.progress("signaling proxy enabled")
    await asyncio.gather(*(lab.wait_registered(n) for n in ("peer1", "peer2")))
    await lab.start([newcomer])
    await lab.connect(newcomer, "peer1")
    await lab.send_every_type(newcomer, "peer1", "after")
    await lab.send_every_type("peer1", newcomer, "after")
    await lab.assert_delivered(
        [("peer1", "peer2"), ("peer2", "peer1"), (newcomer, "peer1"), ("peer1", newcomer)]
    )
    await lab.assert_same_history("peer1", newcomer, "after")
