"""A corporate firewall that lets only TCP out (UDP blocked, proven by the NAT check):
peer1 still reaches peer2 through TURN over TCP, with relay candidates, and every
message is delivered."""

from __future__ import annotations

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 6  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "udp-blocked"}, "peer2": {"nat": "port-restricted"}}}


async def run(lab: Lab) -> None:
    await lab.connect("peer1", "peer2", timeout=60)
    pair = (await lab.agents["peer1"].state())["links"]["peer2"]["candidate_pair"]
    assert pair and pair["local"]["type"] == "relay", (
        f"peer1 (UDP blocked) is not on a TURN relay: {pair}"
    )
    lab.progress(f"peer1 relayed: {pair['local']['address']} ↔ {pair['remote']['type']}")
    for a, b in (("peer1", "peer2"), ("peer2", "peer1")):
        await lab.send_every_type(a, b, "firewalled")
        await lab.send_texts(a, b, "firewalled", 20)
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")], timeout=60)
    await lab.assert_same_history("peer1", "peer2", "firewalled")
