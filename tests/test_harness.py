"""The harness's pure parts: delivery checks, the extra-peers override, JUnit and summary,
what a failed link without TURN says."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from peerlab.scenarios.agent_client import AgentError
from peerlab.scenarios.checks import assert_delivered, delivery_report
from peerlab.scenarios.history import History
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.runner import Outcome, _phases, summary_table, write_junit
from peerlab.scenarios.stack import extra_peers_override, peer_names
from peerlab.scenarios.topology import parse_topology


def _message(i: int, conversation: str = "c", type: str = "text") -> dict:
    return {
        "type": type,
        "id": f"{conversation}{i:02d}" + "x" * 10,
        "conversation": conversation,
        "seq": i,
        "sender": "peer1",
    }


def _events(kind: str, peer: str, messages: list[dict]) -> list[dict]:
    return [{"kind": kind, "peer": peer, "message": m} for m in messages]


def _sides(sent, acked, delivered):
    sender = _events("sent", "peer2", sent) + _events("acked", "peer2", acked)
    receiver = _events("delivered", "peer1", delivered)
    return delivery_report(sender, receiver, "peer1", "peer2")


def test_a_clean_exchange_passes():
    messages = [_message(i) for i in range(5)]
    report = _sides(messages, messages, messages)
    assert report.ok and report.problems() == []
    assert_delivered([report])


def test_missing_acks_are_named():
    messages = [_message(i) for i in range(5)]
    report = _sides(messages, messages[:2], messages)
    with pytest.raises(AssertionError) as failure:
        assert_delivered([report])
    text = str(failure.value)
    assert "peer1 → peer2: 3 of 5 messages were never acked" in text
    assert "text c02xxxxx… (conversation c, seq 2)" in text
    assert "c01" not in text


def test_lost_duplicated_reordered_and_invented_deliveries_are_each_reported():
    sent = [_message(i) for i in range(4)]
    invented = _message(9)
    delivered = [sent[1], sent[0], sent[0], sent[3], invented]
    report = _sides(sent, sent, delivered)
    assert [m["seq"] for m in report.undelivered] == [2]
    assert [m["seq"] for m in report.duplicated] == [0]
    assert report.out_of_order == ["c"]
    assert report.unexpected == [invented]
    assert len(report.problems()) == 4


def test_typing_and_other_links_do_not_count():
    messages = [_message(0)]
    typing = _message(1, type="typing")
    sender = (
        _events("sent", "peer2", [*messages, typing])
        + _events("acked", "peer2", messages)
        + _events("sent", "peer3", [_message(5)])
    )
    receiver = _events("delivered", "peer1", messages)
    assert delivery_report(sender, receiver, "peer1", "peer2").ok


def test_order_is_per_conversation():
    a0, b0, a1 = _message(0, "a"), _message(0, "b"), _message(1, "a")
    assert _sides([a0, b0, a1], [a0, b0, a1], [b0, a0, a1]).ok


def test_long_problem_lists_are_shortened():
    messages = [_message(i) for i in range(12)]
    (line,) = _sides(messages, [], messages).problems(limit=3)
    assert line.endswith("and 9 more")


def test_extra_peers_extend_peer1_with_their_own_ids():
    assert peer_names(5) == ["peer1", "peer2", "peer3", "peer4", "peer5"]
    override = extra_peers_override(5)
    assert "peer3:" not in override
    for name in ("peer4", "peer5"):
        assert f"  {name}:\n    extends: {{file: " in override
        assert f"environment: {{PEER_ID: {name}}}" in override


def test_the_wait_for_a_stack_slot_counts_in_no_phase():
    phases = _phases({"queued": 5.0, "start": 2.0, "teardown": 1.0}, total=20.0)
    assert phases == {"seconds": 15.0, "start_s": 2.0, "body_s": 12.0, "teardown_s": 1.0}


def test_junit_and_summary_report_failures_with_their_evidence(tmp_path):
    outcomes = [
        Outcome("two_peers", True, 20.0, 2, 10, 10, 1, connect_p50_ms=41.6, connect_p95_ms=88.0),
        Outcome(
            "peer_killed",
            False,
            30.0,
            3,
            50,
            40,
            3,
            error="AssertionError: 10 never acked",
            details="Traceback ...",
            folder=tmp_path / "peer_killed",
        ),
    ]
    path = tmp_path / "junit.xml"
    write_junit(outcomes, path)
    suite = ET.parse(path).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failed = suite.find("testcase[@name='peer_killed']/failure")
    assert failed.get("message") == "AssertionError: 10 never acked"
    assert str(tmp_path / "peer_killed") in failed.text
    table = summary_table(outcomes)
    assert "two_peers           pass" in table and "peer_killed         FAIL" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:4]}
    assert rows["two_peers"][-2:] == ["42ms", "88ms"]
    assert rows["peer_killed"][-2:] == ["-", "-"]
    assert f"evidence kept in {tmp_path / 'peer_killed'}" in table


def test_junit_has_a_case_per_scenario_and_profile_each_linking_its_report(tmp_path):
    outcomes = []
    for profile in ("lan", "4g", "satellite"):
        folder = tmp_path / f"chat@{profile}"
        folder.mkdir()
        (folder / "report.html").write_text("<html></html>")
        outcomes.append(Outcome(f"chat@{profile}", profile != "satellite", 9.0, 2, 5, 5, 1,
                                error="" if profile != "satellite" else "AssertionError: x",
                                folder=folder))  # fmt: skip
    path = tmp_path / "junit.xml"
    write_junit(outcomes, path)
    cases = ET.parse(path).getroot().findall("testcase")
    assert [c.get("name") for c in cases] == ["chat@lan", "chat@4g", "chat@satellite"]
    for case, outcome in zip(cases, outcomes, strict=True):
        # A passing run's folder is kept as its bundle: every case links its report.
        report = (outcome.folder / "report.html").resolve()
        assert f"[[ATTACHMENT|{report}]]" in case.find("system-out").text


class _RefusingAgent:
    def __init__(self):
        self.options: dict[str, dict] = {}

    async def link_options(self, remote: str, **options):
        self.options[remote] = options

    async def connect(self, remote: str, **options):
        raise AgentError(f"peer1: could not connect to {remote} within 30s")


async def test_a_link_without_turn_between_nats_that_cannot_connect_fails_at_once_saying_why(
    tmp_path,
):
    topology = parse_topology(
        {"peers": {"peer1": {"nat": "port-restricted"}, "peer2": {"nat": "symmetric"}}},
        ["peer1", "peer2", "peer3"],
    )
    history = History(tmp_path / "history.jsonl")
    agents = {name: _RefusingAgent() for name in ("peer1", "peer3")}
    lab = SimpleNamespace(agents=agents, topology=topology, history=history)
    with pytest.raises(AgentError) as caught:
        await Lab.connect(lab, "peer1", "peer2", turn=False)
    assert str(caught.value) == (
        "peer1 ↔ peer2 asked without TURN, but peer1 (port-restricted) and peer2 (symmetric) "
        "cannot connect without a TURN relay (RFC 4787; the NAT table in docs/stack.md)"
    )
    for remote, options in (("peer2", {}), ("peer3", {"turn": False})):  # TURN; no NAT
        with pytest.raises(AgentError) as caught:
            await Lab.connect(lab, "peer1", remote, **options)
        assert str(caught.value) == f"peer1: could not connect to {remote} within 30s"
    # Without TURN is the link's: the far end offers no relay either.
    assert agents["peer3"].options == {"peer1": {"turn": False}}
    # The attempts the agent made are workload operations in the run's history.
    assert [(e["process"], e["type"], e["f"], e["value"]["to"]) for e in history.entries] == [
        ("peer1", "invoke", "connect", "peer2"),
        ("peer1", "fail", "connect", "peer2"),
        ("peer1", "invoke", "connect", "peer3"),
        ("peer1", "fail", "connect", "peer3"),
    ]
