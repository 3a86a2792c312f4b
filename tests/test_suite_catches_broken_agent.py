"""The suite must be able to fail: with an agent that never acks, a scenario fails and
its message names the missing acks. Needs Docker and the images (`make suite-check`)."""

from __future__ import annotations

import pytest

from scenarios.cli import BROKEN_AGENTS
from scenarios.runner import run_scenario

pytestmark = pytest.mark.containers


async def test_an_agent_that_never_acks_fails_two_peers_naming_the_acks(tmp_path):
    outcome = await run_scenario(
        "two_peers", tmp_path, env={"PEERLAB_PEER_MODULE": BROKEN_AGENTS["no-acks"]}
    )
    assert not outcome.passed
    assert "peer1 → peer2: 5 of 5 messages were never acked: text " in outcome.error
    assert "peer2 → peer1: 5 of 5 messages were never acked: text " in outcome.error
    # The evidence is kept: event logs of both agents show the messages that arrived.
    assert outcome.folder is not None and (outcome.folder / "events" / "peer2.jsonl").exists()


async def test_an_agent_that_delivers_retransmitted_copies_fails_the_lossy_path(tmp_path):
    outcome = await run_scenario(
        "lossy_data_path",
        tmp_path,
        env={"PEERLAB_PEER_MODULE": BROKEN_AGENTS["double-delivery"]},
    )
    assert not outcome.passed
    assert "messages were delivered more than once: text " in outcome.error, outcome.error
