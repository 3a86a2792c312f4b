"""Recording an event (peer/events.py): what an event says, whenever it is read.

The message path records events as they happen and turns them into JSON-ready dicts only
when they are read (or at once when they go to a file): either way an event reads the
same, key for key, and the file holds the same line. A link's events are stamped with
the instant its logic decided them (`at`), on both clocks.
"""

from __future__ import annotations

import json
from pathlib import Path

from peerlab.peer.events import EventLog, message_to_json
from peerlab.peer.protocol import ChannelMessage, MessageType

MONO, WALL = 500.0, 1_764_100_000.0
MESSAGE = ChannelMessage(
    MessageType.TEXT, "m1", 1_764_100_000_000, "alice", "c", "e1", 0, 0, body="hi ☃"
)


def clocks(log_path: Path | None = None) -> tuple[EventLog, list[float]]:
    """A log whose two clocks stand still until the test moves them (both at once)."""
    offset = [0.0]
    log = EventLog(
        "bob",
        log_path,
        clock=lambda: MONO + offset[0],
        wall_clock=lambda: WALL + offset[0],
    )
    return log, offset


def expected(seq: int, t_mono: float, t_wall: float) -> dict:
    return {
        "seq": seq,
        "t_mono": t_mono,
        "t_wall": t_wall,
        "agent": "bob",
        "kind": "delivered",
        "peer": "alice",
        "message": message_to_json(MESSAGE),
    }


def test_an_event_is_stamped_when_it_is_recorded_by_default():
    log, offset = clocks()
    offset[0] = 0.25
    log.record_fields("delivered", {"peer": "alice", "message": MESSAGE})
    assert log.since(0) == [expected(1, MONO + 0.25, WALL + 0.25)]


def test_an_event_decided_earlier_is_stamped_at_that_instant_on_both_clocks():
    log, offset = clocks()
    offset[0] = 0.003  # recorded 3 ms after the link's logic decided it
    log.record_fields("delivered", {"peer": "alice", "message": MESSAGE}, at=MONO)
    assert log.since(0) == [expected(1, MONO, WALL)]


def test_an_event_reads_the_same_whether_read_at_once_or_later():
    early, _ = clocks()
    late, _ = clocks()
    for log in (early, late):
        log.record_fields("delivered", {"peer": "alice", "message": MESSAGE})
    first = early.since(0)
    for log in (early, late):
        log.record("stopped")
    assert early.since(0) == late.since(0)
    assert first == early.since(0)[:1]
    assert list(first[0]) == ["seq", "t_mono", "t_wall", "agent", "kind", "peer", "message"]


def test_the_file_holds_each_event_as_its_json_line(tmp_path):
    path = tmp_path / "bob.jsonl"
    log, offset = clocks(path)
    offset[0] = 0.0000004  # rounded to the microsecond in the file as in memory
    log.record_fields("delivered", {"peer": "alice", "message": MESSAGE})
    log.close()
    line = path.read_text(encoding="utf-8")
    assert line == json.dumps(expected(1, MONO, WALL), ensure_ascii=False) + "\n"
