"""PeerLab scenarios as ordinary pytest tests in your own repository.

    pytest                                   # the profile each marker names (or none)
    pytest --peerlab-profile lan,wifi,4g     # every test under each profile

`lab` is PeerLab's fixture: a fresh stack per test, torn down afterwards, the history
checker run over every agent's event log (an invalid history fails the test), and the
results folder results/<run>/<test>/ with its report written.
"""

import pytest


@pytest.mark.peerlab(peers=3)
async def test_group_chat_survives_a_short_cut(lab):
    await lab.connect("peer1", "peer2")
    await lab.connect("peer1", "peer3")
    for receiver in ("peer2", "peer3"):
        await lab.send_every_type("peer1", receiver, conversation="team")
    await lab.send_texts("peer2", "peer1", "team", count=10)
    await lab.assert_delivered([("peer1", "peer2"), ("peer1", "peer3"), ("peer2", "peer1")])
    await lab.assert_same_history("peer1", "peer2", "team")
