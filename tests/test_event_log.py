"""The event log file never loses history silently (docs/event-log.md).

Each test damages a real log file the way a crash or a stray writer does, then resumes it
with EventLog (or a whole Agent) and checks exactly which events survive, their seqs, that
the damage is reported once with its line, and that a second restart still sees everything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.events import Damage, EventLog, EventLogError, message_to_json
from peerlab.peer.protocol import ChannelMessage, MessageType, encode

DELIVERIES = 300


def _text(seq: int, epoch: str = "e1", body: int | None = None) -> ChannelMessage:
    return ChannelMessage(
        MessageType.TEXT,
        f"m{seq if body is None else body}",
        1_700_000_000_000,
        "alice",
        conversation="c",
        epoch=epoch,
        seq=seq,
        base=0,
        body=f"#{seq if body is None else body}",
    )


def _write_log(path: Path, deliveries: int = DELIVERIES) -> None:
    """A log as an agent leaves it: started, `deliveries` deliveries, stopped."""
    log = EventLog("bob", path)
    log.record("started")
    for seq in range(deliveries):
        log.record("delivered", peer="alice", message=message_to_json(_text(seq)))
    log.record("stopped")
    log.close()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def _edit(path: Path, number: int, line: bytes | None = None, *, insert: bytes | None = None):
    """Replace line `number` (from 1) by `line`, or insert `insert` before it."""
    lines = _lines(path)
    if insert is not None:
        lines.insert(number - 1, insert)
    else:
        lines[number - 1] = line
    path.write_bytes(b"\n".join(lines))


def _resume(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[EventLog, str]:
    """Reopen the log; return it and what it said on stderr."""
    capsys.readouterr()
    log = EventLog("bob", path)
    return log, capsys.readouterr().err


def _seqs(log: EventLog) -> list[int]:
    return [e["seq"] for e in log.since(0)]


def _delivered(log: EventLog) -> list[str]:
    return [e["message"]["id"] for e in log.since(0, {"kind": "delivered"})]


def _assert_reported_once(err: str, log: EventLog, line: int, reason: str) -> None:
    assert err.count("\n") == 1, err  # one summary line, however much damage
    assert f"line {line}: {reason}" in err
    assert [d.line for d in log.damaged] == [line]
    assert log.damaged[0].reason.startswith(reason)


def test_a_garbage_line_in_the_middle_hides_none_of_the_events_after_it(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path)
    _edit(path, 13, insert=b"Traceback (most recent call last):")

    log, err = _resume(path, capsys)
    assert _seqs(log) == list(range(1, DELIVERIES + 3))
    assert _delivered(log) == [f"m{n}" for n in range(DELIVERIES)]
    _assert_reported_once(err, log, 13, "not JSON: Expecting value (column 1)")
    # Numbering continues after the newest event, which the next restart sees too.
    assert log.record("started")["seq"] == DELIVERIES + 3
    log.close()

    again, err = _resume(path, capsys)
    assert _seqs(again) == list(range(1, DELIVERIES + 4))
    _assert_reported_once(err, again, 13, "not JSON")


def test_a_lost_record_leaves_a_gap_in_seq_that_since_steps_over(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=20)
    _edit(path, 13, b'{"seq": 13, "t_mono": 1.5, "ag')

    log, err = _resume(path, capsys)
    assert _seqs(log) == [*range(1, 13), *range(14, 23)]
    _assert_reported_once(err, log, 13, "not JSON: Unterminated string")
    assert [e["seq"] for e in log.since(12)][:2] == [14, 15]
    assert log.since(13) == log.since(12)
    assert log.since(22) == []
    assert log.last_seq == 22


def test_a_cut_last_line_stays_a_line_of_its_own_and_new_events_follow_it(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=53)
    cut = b'{"seq": 56, "t_mono": 12.5, "t_wall": 1700000000.1, "agent": "bob", "kind": "deliv'
    with path.open("ab") as f:
        f.write(cut)  # killed mid-write

    log, err = _resume(path, capsys)
    assert _seqs(log) == list(range(1, 56))
    _assert_reported_once(err, log, 56, "cut short (the file's last line, no newline): not JSON")
    # The unreadable record's seq is free again: new events continue after the last kept.
    assert [log.record("restarted")["seq"] for _ in range(3)] == [56, 57, 58]
    log.close()
    assert _lines(path)[55] == cut
    assert json.loads(_lines(path)[56])["seq"] == 56

    again, err = _resume(path, capsys)
    assert _seqs(again) == list(range(1, 59))
    assert [e["kind"] for e in again.since(55)] == ["restarted"] * 3
    _assert_reported_once(err, again, 56, "not JSON")


def test_a_nul_filled_tail_is_skipped_and_new_events_follow_it(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=87)
    with path.open("ab") as f:
        f.write(b"\0" * 4096)  # the size a crash committed, without the data

    log, err = _resume(path, capsys)
    assert _seqs(log) == list(range(1, 90))
    _assert_reported_once(err, log, 90, "cut short (the file's last line, no newline): NUL bytes")
    assert log.damaged[0].reason.endswith("NUL bytes: 4096 of its 4096 bytes")
    assert log.record("started")["seq"] == 90
    log.close()

    again, err = _resume(path, capsys)
    assert _seqs(again) == list(range(1, 91))
    assert again.since(89)[0]["kind"] == "started"
    _assert_reported_once(err, again, 90, "NUL bytes")


def test_an_invalid_utf8_byte_loses_only_its_own_record(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=10)
    line = _lines(path)[4]
    column = line.index(b'"#3"') + 2
    _edit(path, 5, line[: column - 1] + b"\xff" + line[column:])

    log, err = _resume(path, capsys)
    assert _seqs(log) == [1, 2, 3, 4, *range(6, 13)]
    assert "m3" not in _delivered(log)
    _assert_reported_once(err, log, 5, f"not UTF-8: byte 0xff at column {column}")


def test_records_out_of_order_leave_the_longest_increasing_run(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=8)  # seqs 1..10
    lines = _lines(path)
    lines[3] = lines[3].replace(b'{"seq": 4,', b'{"seq": 999,')  # a corrupted digit
    lines.insert(6, lines[5])  # seq 6 written twice
    path.write_bytes(b"\n".join(lines))

    log, err = _resume(path, capsys)
    assert _seqs(log) == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert log.damaged == (Damage(4, "seq 999 out of order"), Damage(7, "seq 6 out of order"))
    assert err.count("\n") == 1
    assert "skipped 2 damaged record(s)" in err
    assert log.record("started")["seq"] == 11


def _longest_increasing_length(seqs: list[int]) -> int:
    best = [1] * len(seqs)  # best[i]: the longest increasing run ending at i (O(n²))
    for i in range(len(seqs)):
        for j in range(i):
            if seqs[j] < seqs[i]:
                best[i] = max(best[i], best[j] + 1)
    return max(best, default=0)


@given(st.lists(st.integers(1, 30), max_size=40))
def test_records_out_of_order_cost_as_few_records_as_possible(seqs):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bob.jsonl"
        path.write_text(
            "".join(
                json.dumps({"seq": s, "kind": "x", "line": n}) + "\n" for n, s in enumerate(seqs, 1)
            )
        )
        with contextlib.redirect_stderr(io.StringIO()):
            log = EventLog("bob", path)
        log.close()
    kept = log.since(0)
    assert all(a["seq"] < b["seq"] and a["line"] < b["line"] for a, b in pairwise(kept))
    assert len(kept) == _longest_increasing_length(seqs)
    skipped = [d.line for d in log.damaged]
    assert sorted([e["line"] for e in kept] + skipped) == list(range(1, len(seqs) + 1))


def test_records_that_are_json_but_not_events_are_skipped(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=1)  # seqs 1..3
    with path.open("ab") as f:
        f.write(b'[1, 2]\n{"seq": "4", "kind": "x"}\n{"seq": 4}\n\n{"seq": 4, "kind": "x"}\n')

    log, _ = _resume(path, capsys)
    assert _seqs(log) == [1, 2, 3, 4]
    assert [(d.line, d.reason) for d in log.damaged] == [
        (4, "not a JSON object"),
        (5, "no valid seq: '4' is not a positive integer"),
        (6, "no kind"),
    ]  # the blank line 7 holds no event: not damage


def test_much_damage_makes_one_warning_that_counts_it_all(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=3)
    with path.open("ab") as f:
        f.write(b"garbage\n" * 25)

    log, err = _resume(path, capsys)
    assert len(log.damaged) == 25
    assert err.count("\n") == 1
    assert "skipped 25 damaged record(s), kept the 5 others" in err
    assert "line 15: not JSON" in err and "line 16:" not in err
    assert err.rstrip().endswith("; and 15 more")


async def test_a_restarted_agent_keeps_every_delivery_after_a_cut_line(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=53)
    with path.open("ab") as f:
        f.write(b'{"seq": 56, "kind": "deliv')

    bob = Agent(AgentConfig("bob", "r", "ws://127.0.0.1:9", "token", event_log=path))
    channel = bob.manager.channel("alice")
    # alice restarted too: a new stream (epoch) carries the rest of the conversation.
    for seq in range(DELIVERIES - 53):
        channel._on_frame(encode(_text(seq, epoch="e2", body=53 + seq)))
    last = bob.events.last_seq
    bob.events.close()

    restarted = Agent(AgentConfig("bob", "r", "ws://127.0.0.1:9", "token", event_log=path))
    entries = restarted.history("alice", "c")["entries"]
    assert [e["body"] for e in entries] == [f"#{n}" for n in range(DELIVERIES)]
    assert len(_delivered(restarted.events)) == DELIVERIES
    assert _seqs(restarted.events) == list(range(1, last + 1))
    assert [d.line for d in restarted.events.damaged] == [56]
    restarted.events.close()


def test_a_new_log_is_for_its_owner_only_whatever_the_umask(tmp_path):
    path = tmp_path / "logs" / "bob.jsonl"
    previous = os.umask(0)
    try:
        EventLog("bob", path).close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_log_keeps_its_mode(tmp_path):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=1)
    path.chmod(0o640)
    EventLog("bob", path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_symlink_at_the_path_is_refused_and_its_target_untouched(tmp_path, target_exists):
    target = tmp_path / "elsewhere"
    if target_exists:
        target.write_text("precious\n")
    link = tmp_path / "bob.jsonl"
    link.symlink_to(target)

    with pytest.raises(EventLogError, match=f"event log {link}: is a symbolic link"):
        EventLog("bob", link)
    if target_exists:
        assert target.read_text() == "precious\n"
    else:
        assert not target.exists()


def test_a_directory_at_the_path_is_refused(tmp_path):
    with pytest.raises(EventLogError, match=f"event log {tmp_path}: is a directory"):
        EventLog("bob", tmp_path)


def test_a_fifo_at_the_path_is_refused(tmp_path):
    fifo = tmp_path / "bob.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(EventLogError, match="is not a regular file"):
        EventLog("bob", fifo)


def test_the_agent_refuses_to_start_with_an_unusable_event_log(tmp_path):
    link = tmp_path / "bob.jsonl"
    link.symlink_to(tmp_path / "elsewhere")
    command = [sys.executable, "-m", "peerlab.peer", "--id", "bob", "--secret", "s"]
    done = subprocess.run(
        [*command, "--event-log", str(link), "--control-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == f"peer bob: event log {link}: is a symbolic link; " + (
        "an event log is never opened through one (give a file's path)\n"
    )


def test_a_file_in_the_way_of_the_folder_is_refused(tmp_path):
    (tmp_path / "logs").write_text("")
    path = tmp_path / "logs" / "bob.jsonl"
    with pytest.raises(EventLogError, match=f"event log {path}: its folder cannot be created"):
        EventLog("bob", path)


def test_a_whole_last_record_without_its_newline_is_kept_and_not_reported(tmp_path, capsys):
    path = tmp_path / "bob.jsonl"
    _write_log(path, deliveries=1)  # seqs 1..3
    path.write_bytes(path.read_bytes().rstrip(b"\n"))

    log, err = _resume(path, capsys)
    assert (_seqs(log), log.damaged, err) == ([1, 2, 3], (), "")
    log.record("started")
    log.close()
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_the_log_is_handed_to_the_configured_owner(tmp_path):
    # The lab's agents run as root; the harness reading their files may not.
    if os.geteuid() != 0:
        pytest.skip("only root can hand a file to another user")
    path = tmp_path / "peer1.jsonl"
    EventLog("peer1", path, owner=(4321, 8765)).close()
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (4321, 8765)
    assert stat.S_IMODE(info.st_mode) == 0o600
