"""PeerLab scenarios as ordinary pytest tests in your own repository.

    pytest                                   # the profile each marker names (or none)
    pytest --peerlab-profile lan,wifi,4g     # every test under each profile

`lab` is PeerLab's fixture: a fresh stack per test, torn down afterwards, the history
checker run over every agent's event log (an invalid history fails the test), and the
results folder results/<run>/<test>/ with its report written.
"""

import asyncio

import pytest


@pytest.mark.peerlab(peers=3, topology={"peers": {"peer1": {"nat": "port-restricted"}}})
async def test_group_chat_survives_a_short_cut(lab):
    # Direct only: with a TURN relay to fall back on, the link would route around the cut.
    await lab.connect("peer1", "peer2", turn=False)
    await lab.connect("peer1", "peer3")
    for receiver in ("peer2", "peer3"):
        await lab.send_every_type("peer1", receiver, conversation="team")
    # A one-second cut of peer1 ↔ peer2 (proven before it returns), with messages sent
    # into it: they must arrive once it heals, exactly once and in order.
    cut = await lab.faults.partition("peer1", "peer2")
    await lab.send_texts("peer1", "peer2", "team", count=5)
    await asyncio.sleep(1.0)
    await lab.faults.clear(cut)
    await lab.send_texts("peer2", "peer1", "team", count=10)
    await lab.assert_delivered([("peer1", "peer2"), ("peer1", "peer3"), ("peer2", "peer1")])
    await lab.assert_same_history("peer1", "peer2", "team")
