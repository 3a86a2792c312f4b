"""Two peers, one of them behind a symmetric NAT, exchange every message type both ways
(text, edit, reaction, delete, typing): each reliable message is acked and delivered
exactly once, and both ends show the same conversation.

A Python scenario outside PeerLab's package: `peerlab run examples/scenarios/every_message_type.py`.
The contract: this docstring, PEERS, optional TOPOLOGY and ENV, and `async def run(lab)`.
"""

from __future__ import annotations

PEERS = 2
TOPOLOGY = {"peers": {"peer2": {"nat": "symmetric"}}}


async def run(lab) -> None:
    await lab.connect("peer1", "peer2")
    for a, b in (("peer1", "peer2"), ("peer2", "peer1")):
        await lab.send_every_type(a, b, conversation=f"{a}-says")
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")])
    for conversation in ("peer1-says", "peer2-says"):
        await lab.assert_same_history("peer1", "peer2", conversation)
