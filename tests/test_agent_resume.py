"""A restarted agent continues its event log's numbering (what it resends or re-acks is the
store's: tests/test_agent_store.py)."""

from __future__ import annotations

from peerlab.peer.events import EventLog


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
