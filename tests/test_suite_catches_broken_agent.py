"""The suite must be able to fail: with an agent that never acks, a scenario fails and
its message names the missing acks; with one that delivers retransmitted copies twice,
the lossy path fails naming them. The history checker, run after every scenario, finds
the same anomalies on its own (check.json). Needs Docker and the images
(`make suite-check`)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from peerlab.scenarios import catalog
from peerlab.scenarios.cli import BROKEN_AGENTS
from peerlab.scenarios.plans import two_peers as two_peers_plan
from peerlab.scenarios.runner import run_scenario

pytestmark = pytest.mark.containers

RELIABLE = {"text", "edit", "delete", "reaction"}


@pytest.mark.containers(stack_s=14)
async def test_an_agent_that_never_acks_fails_two_peers_naming_the_acks(tmp_path):
    # It waits out the plan's ACK_WAIT for acks that never come: a body that long, for the
    # order in which waiting stacks start (stack_slots.stack_weight).
    two_peers = catalog.load("two_peers")
    two_peers = dataclasses.replace(two_peers, body_s=two_peers_plan.ACK_WAIT)
    outcome = await run_scenario(
        two_peers, tmp_path, env={"PEERLAB_PEER_MODULE": BROKEN_AGENTS["no-acks"]}
    )
    assert not outcome.passed
    assert "peer1 → peer2: 5 of 5 messages were never acked: text " in outcome.error
    assert "peer2 → peer1: 5 of 5 messages were never acked: text " in outcome.error
    # The evidence is kept: event logs of both agents show the messages that arrived.
    assert outcome.folder is not None and (outcome.folder / "events" / "peer2.jsonl").exists()
    verdict = json.loads((outcome.folder / "check.json").read_text())
    assert verdict["valid"] is False and verdict["counts"]["never_acked"] == 10, verdict


@pytest.mark.containers(stack_s=35)
async def test_an_agent_that_delivers_retransmitted_copies_fails_the_lossy_path(tmp_path):
    outcome = await run_scenario(
        catalog.load("lossy_data_path"),
        tmp_path,
        env={"PEERLAB_PEER_MODULE": BROKEN_AGENTS["double-delivery"]},
    )
    assert not outcome.passed
    # Which messages the loss makes it resend, and so which come first, varies by run.
    duplicated_first = r"messages were delivered more than once: (text|edit|delete|reaction) "
    assert re.search(duplicated_first, outcome.error), outcome.error
    assert outcome.folder is not None
    verdict = json.loads((outcome.folder / "check.json").read_text())
    assert verdict["valid"] is False and verdict["counts"]["duplicated"] > 0, verdict
    duplicated = verdict["anomalies"]["duplicated"][0]
    assert duplicated["type"] in RELIABLE and "delivered" in duplicated["detail"], duplicated
