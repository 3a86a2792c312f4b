"""Two peers connect through the signaling server (STUN configured), exchange every message
type both ways; every non-typing message is acked, delivered once and in order, typing
arrives and is never acked, and both ends show the same conversation."""

from __future__ import annotations

from peerlab.scenarios.lab import Lab

PEERS = 2
ACK_WAIT = 10.0
"""Nothing degrades this path: acks are back within milliseconds, and a lost one is sent
again after the agent's 1 s retransmission timeout, so 10 s is ten of them. An agent that
never acks (`make suite-check`) fails after this long."""


async def run(lab: Lab) -> None:
    state = await lab.agents["peer1"].state()
    assert state["signaling"]["registered"], f"peer1 not registered: {state}"
    ice = (await lab.agents["peer1"].events(kind="signaling", event="registered"))[-1]
    assert any(url.startswith("stun:") for urls in ice["ice_servers"] for url in urls), (
        f"no STUN server handed out: {ice['ice_servers']}"
    )

    await lab.connect("peer1", "peer2")
    await lab.send_every_type("peer1", "peer2", "chat")
    await lab.send_every_type("peer2", "peer1", "chat")
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")], timeout=ACK_WAIT)

    for receiver, sender in (("peer2", "peer1"), ("peer1", "peer2")):
        typing = await lab.agents[receiver].wait(
            "received", peer=sender, **{"message.type": "typing"}
        )
        assert typing[0]["message"]["state"] == "started"
    acked_types = {
        e["message"]["type"]
        for name in ("peer1", "peer2")
        for e in await lab.agents[name].events(kind="acked")
    }
    assert "typing" not in acked_types, "a typing indicator was acked"

    history = await lab.assert_same_history("peer1", "peer2", "chat")
    for sender in ("peer1", "peer2"):
        first, second = [e for e in history["entries"] if e["sender"] == sender]
        assert first["body"].endswith("(edited)") and first["edits"] == 1, first
        assert first["reactions"] == {"👍": [sender]}, first
        assert second["deleted"], second
