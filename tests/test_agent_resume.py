"""A restarted agent resumes from its event log: numbering, histories, no re-delivery."""

from __future__ import annotations

import json

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.events import EventLog, message_to_json
from peerlab.peer.protocol import ChannelMessage, MessageType, encode


def _text(seq: int, body: str) -> ChannelMessage:
    return ChannelMessage(
        MessageType.TEXT,
        f"m{seq}",
        1_700_000_000_000,
        "alice",
        conversation="c",
        epoch="e1",
        seq=seq,
        base=0,
        body=body,
    )


def test_event_log_resumes_numbering_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "bob.jsonl"
    first = EventLog("bob", path)
    first.record("started")
    first.record("sent", peer="alice")
    first.close()
    with path.open("a") as f:
        f.write('{"seq": 3, "kind": "deliv')  # the process was killed mid-write

    second = EventLog("bob", path)
    assert [e["seq"] for e in second.since(0)] == [1, 2]
    assert second.record("started")["seq"] == 3


async def test_restarted_agent_reacks_instead_of_redelivering(tmp_path):
    path = tmp_path / "bob.jsonl"
    log = EventLog("bob", path)
    for seq in range(3):
        log.record("delivered", peer="alice", message=message_to_json(_text(seq, f"#{seq}")))
    log.close()

    bob = Agent(AgentConfig("bob", "r", "ws://127.0.0.1:9", "token", event_log=path))
    channel = bob.manager.channel("alice")
    mark = bob.events.last_seq
    # alice never saw the ack of #2 and sends it again, then the next one.
    channel._on_frame(encode(_text(2, "#2")))
    channel._on_frame(encode(_text(3, "#3")))

    kinds = [
        (e["kind"], e["message"]["id"])
        for e in bob.events.since(mark)
        if e["kind"] in ("delivered", "duplicate")
    ]
    assert kinds == [("duplicate", "m2"), ("delivered", "m3")]
    assert bob.events.since(mark, {"kind": "duplicate"})[0]["reacked"] is True
    history = bob.history("alice", "c")["entries"]
    assert [e["body"] for e in history] == ["#0", "#1", "#2", "#3"]
    bob.events.close()
    assert json.loads(path.read_text().splitlines()[-1])["message"]["id"] == "m3"
