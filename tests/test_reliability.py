"""Tests for peer/reliability.py: the Outbox/Inbox reliable-delivery state machine.

Example tests pin each rule of the scheme; the property tests run one Outbox and one Inbox
over a simulated channel (frames go through the real codec) under an adversarial schedule
drawn by hypothesis (loss, duplication, reordering in both directions, reconnects, receiver
restarts, clock advances), then a fair phase, and check the delivery guarantees.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.peer.__main__ import config_from_args, parse_args
from peerlab.peer.message_channel import ChannelConfig, MessageChannel
from peerlab.peer.protocol import (
    MAX_ACKED_IDS,
    ChannelMessage,
    MessageType,
    ReactionAction,
    decode,
    encode,
)
from peerlab.peer.reliability import Inbox, Outbox, OutboxFull, Receipt


def text(message_id: str, conversation: str = "c", body: str = "hi") -> ChannelMessage:
    return ChannelMessage(
        MessageType.TEXT, message_id, 0, "alice", conversation=conversation, body=body
    )


def ids(messages) -> list[str]:
    return [m.id for m in messages]


# ---- Outbox ----


def test_send_numbers_each_conversation_from_zero_within_the_epoch():
    outbox = Outbox("ep1")
    sent = [
        outbox.send(text(f"m{i}", conversation), 0.0)
        for i, conversation in enumerate(["a", "b", "a", "a", "b"])
    ]
    assert [(m.conversation, m.seq) for m in sent] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("a", 2),
        ("b", 1),
    ]
    assert {m.epoch for m in sent} == {"ep1"}
    assert [m.base for m in sent] == [0, 0, 0, 0, 0]  # nothing acked yet
    assert ids(outbox.unacked) == ["m0", "m1", "m2", "m3", "m4"]


def test_on_ack_reports_only_first_acks_and_ignores_unknown_ids():
    outbox = Outbox("ep1")
    for i in range(3):
        outbox.send(text(f"m{i}"), 0.0)
    assert ids(outbox.on_ack(["m1", "nope"], 0.0)) == ["m1"]
    assert outbox.on_ack(["m1"], 0.0) == []
    assert ids(outbox.unacked) == ["m0", "m2"]


def test_base_is_the_lowest_unacked_seq_of_the_conversation():
    outbox = Outbox("ep1")
    for i in range(3):
        outbox.send(text(f"a{i}", "a"), 0.0)
    outbox.send(text("b0", "b"), 0.0)
    outbox.on_ack(["a0", "a1"], 0.0)
    assert outbox.send(text("a3", "a"), 0.0).base == 2
    assert outbox.send(text("b1", "b"), 0.0).base == 0  # other conversations unaffected
    outbox.on_ack(["a2"], 0.0)
    assert [(m.id, m.base) for m in outbox.on_reconnect(0.0)] == [("b0", 0), ("a3", 3), ("b1", 0)]


def test_retransmits_after_timeout_only_and_restarts_the_timer():
    outbox = Outbox("ep1")
    outbox.send(text("m0"), 10.0)
    outbox.send(text("m1"), 10.4)
    assert outbox.next_deadline() == 11.0
    assert outbox.due(10.99) == []
    assert ids(outbox.due(11.0)) == ["m0"]  # m1 is not a timeout old yet
    assert outbox.transmissions("m0") == 2
    # The round at 11.0 brought no ack: the timer restarted with the timeout doubled.
    assert outbox.rto == 2.0
    assert outbox.next_deadline() == 13.0
    assert outbox.due(11.4) == []
    assert outbox.due(12.99) == []
    assert ids(outbox.due(13.0)) == ["m0", "m1"]
    assert outbox.rto == 4.0
    # Progress, but no round trip measured (m0 was resent): the doubled timeout stays
    # (Karn); a fresh channel starts it afresh.
    outbox.on_ack(["m0"], 13.1)
    assert outbox.rto == 4.0
    assert ids(outbox.on_reconnect(13.1)) == ["m1"]
    assert outbox.rto == 1.0
    outbox.on_ack(["m1"], 13.1)
    assert outbox.due(100.0) == []
    assert outbox.next_deadline() is None
    assert outbox.transmissions("m0") == 0


def test_acks_arriving_hold_back_retransmission_of_a_busy_channel():
    """A long send queue delays acks without losing anything: as long as acks keep
    coming, nothing is resent, however old the oldest unacked message is."""
    outbox = Outbox("ep1")
    for i in range(10):
        outbox.send(text(f"m{i}"), 0.0)
    for i in range(9):
        now = 0.9 * (i + 1)
        assert outbox.due(now) == []
        outbox.on_ack([f"m{i}"], now)
    # The timeout followed the ack round trips, which grew to 8.1 s with the queue.
    assert outbox.rto > 8.1
    deadline = outbox.next_deadline()
    assert deadline == 8.1 + outbox.rto
    assert outbox.due(deadline - 0.01) == []
    assert ids(outbox.due(deadline)) == ["m9"]  # acks stopped for a whole timeout


def test_the_timeout_tracks_the_ack_round_trip_but_never_goes_below_the_minimum():
    outbox = Outbox("ep1", retransmit_after=0.5)
    for i in range(20):
        outbox.send(text(f"m{i}"), float(i))
        outbox.on_ack([f"m{i}"], i + 0.01)  # 10 ms round trips
    assert outbox.rto == 0.5
    for i in range(20, 40):
        outbox.send(text(f"m{i}"), float(i))
        outbox.on_ack([f"m{i}"], i + 3.0)  # the channel got slow: 3 s round trips
    assert 3.0 < outbox.rto < 6.0


def test_a_path_slower_than_the_minimum_timeout_is_measured_not_resent_for_ever():
    """Seen over TURN/TCP across a satellite link (1.3 s round trips, 1 s minimum): every
    message was resent once, its ack (of a resent message) never sampled, and that ack
    reset the doubled timeout, so the next message went the same way."""
    outbox = Outbox("ep1", retransmit_after=1.0)
    resent = 0
    now = 0.0
    for i in range(10):
        outbox.send(text(f"m{i}"), now)
        deadline = now + 1.3
        while (at := outbox.next_deadline()) is not None and at <= deadline:
            resent += len(outbox.due(at))
        outbox.on_ack([f"m{i}"], deadline)
        now = deadline
    assert resent == 1  # the first message's, before any round trip was measured
    assert outbox.rto > 1.3


def test_due_at_next_deadline_returns_the_message():
    """Bug: `next_deadline()` is `last_sent + retransmit_after`, but `due` tests
    `now - last_sent >= retransmit_after`; in floats (3.453 + 1.0) - 3.453 < 1.0."""
    outbox = Outbox("ep1")
    outbox.send(text("m0"), 3.453)
    assert ids(outbox.due(outbox.next_deadline())) == ["m0"]


def test_retransmit_timeout_is_configurable():
    outbox = Outbox("ep1", retransmit_after=0.25)
    outbox.send(text("m0"), 0.0)
    assert outbox.due(0.24) == []
    assert ids(outbox.due(0.25)) == ["m0"]


def test_reconnect_resends_every_unacked_message_in_send_order():
    outbox = Outbox("ep1")
    for i, conversation in enumerate(["a", "b", "a", "b", "a"]):
        outbox.send(text(f"m{i}", conversation), 0.0)
    outbox.on_ack(["m2"], 0.0)
    resent = outbox.on_reconnect(0.3)
    assert ids(resent) == ["m0", "m1", "m3", "m4"]
    assert all(outbox.transmissions(i) == 2 for i in ids(resent))
    # Resending restarts the timers.
    assert outbox.due(1.2) == []
    assert ids(outbox.due(1.3)) == ["m0", "m1", "m3", "m4"]


def test_reconnect_with_nothing_unacked_sends_nothing():
    outbox = Outbox("ep1")
    outbox.send(text("m0"), 0.0)
    outbox.on_ack(["m0"], 0.0)
    assert outbox.on_reconnect(1.0) == []


# ---- Outbox bounds ----


def frame_bytes(message: ChannelMessage) -> int:
    """What the outbox counts for a message: its frame at its longest (`base` = `seq`)."""
    return len(encode(message._replace(base=message.seq)).encode("utf-8"))


def test_outbox_counts_the_bytes_of_unacked_frames_and_acks_free_them():
    outbox = Outbox("ep1")
    sent = [outbox.send(text(f"m{i}", body="é" * (100 * i)), 0.0) for i in range(12)]
    sizes = [frame_bytes(m) for m in sent]
    assert outbox.unacked_bytes == sum(sizes)
    outbox.on_ack(["m3", "m11", "nope"], 0.1)
    assert outbox.unacked_bytes == sum(sizes) - sizes[3] - sizes[11]
    outbox.on_ack(["m3"], 0.2)  # a second ack frees nothing more
    assert outbox.unacked_bytes == sum(sizes) - sizes[3] - sizes[11]
    outbox.on_ack([f"m{i}" for i in range(12)], 0.3)
    assert outbox.unacked_bytes == 0 and outbox.unacked == []


def test_a_full_outbox_by_count_refuses_without_losing_or_numbering_anything():
    outbox = Outbox("ep1", max_messages=3)
    for i in range(3):
        outbox.send(text(f"m{i}"), 0.0)
    held = outbox.unacked_bytes
    with pytest.raises(OutboxFull, match="3 unacked messages"):
        outbox.send(text("m3"), 0.0)
    assert ids(outbox.unacked) == ["m0", "m1", "m2"] and outbox.unacked_bytes == held
    outbox.on_ack(["m0"], 0.1)
    assert outbox.send(text("m3"), 0.2).seq == 3  # the refused one took no seq
    assert ids(outbox.on_reconnect(0.3)) == ["m1", "m2", "m3"]


def test_a_full_outbox_by_bytes_refuses_until_acks_free_room():
    big = frame_bytes(Outbox("ep1").send(text("m0", body="x" * 1000), 0.0))
    exact = Outbox("ep1", max_bytes=3 * big)  # the bound is inclusive
    for i in range(3):
        exact.send(text(f"m{i}", body="x" * 1000), 0.0)
    assert exact.unacked_bytes == 3 * big
    outbox = Outbox("ep1", max_bytes=3 * big - 1)
    outbox.send(text("m0", body="x" * 1000), 0.0)
    outbox.send(text("m1", body="x" * 1000), 0.0)
    with pytest.raises(OutboxFull, match=f"{2 * big} bytes"):
        outbox.send(text("m2", body="x" * 1000), 0.0)
    assert ids(outbox.unacked) == ["m0", "m1"] and outbox.unacked_bytes == 2 * big
    outbox.on_ack(["m0"], 0.1)
    assert outbox.send(text("m2", body="x" * 1000), 0.2).seq == 2


def test_the_default_bound_stops_600_large_messages_to_an_absent_peer():
    # Found bug: 600 x 30 KB to a peer that never acks were all kept (19.7 MB, never freed).
    outbox = Outbox("ep1")
    assert (outbox.max_messages, outbox.max_bytes) == (10_000, 16 * 1024 * 1024)
    accepted = 0
    with pytest.raises(OutboxFull):
        for i in range(600):
            outbox.send(text(f"m{i}", body="x" * 30_000), 0.0)
            accepted += 1
    assert 500 < accepted < 600
    assert outbox.unacked_bytes <= 16 * 1024 * 1024
    assert len(outbox.unacked) == accepted


def test_the_default_count_bound_does_not_bite_a_bulk_sender():
    # The benchmark sends 5 000 messages of 200 bytes as fast as the channel takes them.
    outbox = Outbox("ep1")
    for i in range(5_000):
        outbox.send(text(f"m{i}", body="x" * 200), 0.0)
    assert len(outbox.unacked) == 5_000


def test_the_bounds_are_set_by_flags_or_environment_and_reach_the_outbox(monkeypatch):
    monkeypatch.setenv("OUTBOX_MAX_BYTES", "4096")
    args = parse_args(["--id", "alice", "--secret", "s", "--outbox-max-messages", "1"])
    config = config_from_args(args).manager.channel
    assert (config.outbox_max_messages, config.outbox_max_bytes) == (1, 4096)
    channel = MessageChannel("alice", "bob", epoch="ep1", config=config)
    channel.send_text("c", "queued while not connected")
    with pytest.raises(OutboxFull):
        channel.send_text("c", "one too many")
    assert [m.body for m in channel.unacked] == ["queued while not connected"]
    defaults = ChannelConfig()
    assert (defaults.outbox_max_messages, defaults.outbox_max_bytes) == (10_000, 16 << 20)


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_bound_below_one_is_refused_at_startup(value, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--id", "alice", "--secret", "s", "--outbox-max-bytes", value])
    assert "--outbox-max-bytes" in capsys.readouterr().err


# ---- Inbox ----


def test_in_order_delivery_acks_each_message():
    outbox, inbox = Outbox("ep1"), Inbox()
    for i in range(3):
        message = outbox.send(text(f"m{i}"), 0.0)
        assert inbox.on_message(message) == Receipt(deliver=(message,), ack=(message.id,))


def test_out_of_order_messages_are_buffered_then_delivered_in_order():
    outbox, inbox = Outbox("ep1"), Inbox()
    m0, m1, m2 = (outbox.send(text(f"m{i}"), 0.0) for i in range(3))
    assert inbox.on_message(m2) == Receipt()
    assert inbox.on_message(m1) == Receipt()
    receipt = inbox.on_message(m0)
    assert receipt.deliver == (m0, m1, m2)
    assert receipt.ack == ("m0", "m1", "m2")


def test_duplicate_of_delivered_message_is_re_acked_not_redelivered():
    outbox, inbox = Outbox("ep1"), Inbox()
    m0 = outbox.send(text("m0"), 0.0)
    inbox.on_message(m0)
    assert inbox.on_message(m0) == Receipt(ack=("m0",), duplicate=True)
    # A retransmission (new base, same id) is a duplicate too.
    assert inbox.on_message(outbox.due(1.0)[0]) == Receipt(ack=("m0",), duplicate=True)


def test_duplicate_of_buffered_message_is_ignored():
    outbox, inbox = Outbox("ep1"), Inbox()
    m0, m1 = (outbox.send(text(f"m{i}"), 0.0) for i in range(2))
    inbox.on_message(m1)
    assert inbox.on_message(m1) == Receipt(duplicate=True)
    assert inbox.on_message(m0).deliver == (m0, m1)  # delivered once


def test_conversations_are_independent_streams():
    outbox, inbox = Outbox("ep1"), Inbox()
    a0 = outbox.send(text("a0", "a"), 0.0)
    a1 = outbox.send(text("a1", "a"), 0.0)
    b0 = outbox.send(text("b0", "b"), 0.0)
    assert inbox.on_message(a1) == Receipt()  # gap in "a" ...
    assert inbox.on_message(b0).deliver == (b0,)  # ... does not hold "b" back
    assert inbox.on_message(a0).deliver == (a0, a1)


def test_base_lets_a_fresh_inbox_start_mid_stream():
    outbox, old = Outbox("ep1"), Inbox()
    for i in range(3):
        old.on_message(outbox.send(text(f"m{i}"), 0.0))
    outbox.on_ack(["m0", "m1"], 0.0)  # m2 delivered, ack lost; then the receiver restarts
    fresh = Inbox()
    m3 = outbox.send(text("m3"), 0.5)
    assert m3.base == 2
    assert fresh.on_message(m3) == Receipt()  # waits for m2, which is still unacked
    m2 = outbox.on_reconnect(1.0)[0]
    receipt = fresh.on_message(m2)
    assert ids(receipt.deliver) == ["m2", "m3"]  # m2 delivered again: at-least-once across restart
    outbox.on_ack(receipt.ack, 1.0)
    assert outbox.unacked == []


def test_higher_base_skips_what_the_sender_knows_was_delivered():
    outbox, inbox = Outbox("ep1"), Inbox()
    m0, _m1, m2 = (outbox.send(text(f"m{i}"), 0.0) for i in range(3))
    inbox.on_message(m2)  # buffered, waiting for seq 0
    outbox.on_ack(["m0", "m1"], 0.0)  # acked by a previous incarnation of this receiver
    m3 = outbox.send(text("m3"), 0.0)
    assert m3.base == 2
    assert ids(inbox.on_message(m3).deliver) == ["m2", "m3"]
    assert inbox.on_message(m0) == Receipt(ack=("m0",), duplicate=True)


def test_new_sender_epoch_is_a_new_stream():
    inbox = Inbox()
    first = Outbox("ep1")
    for i in range(3):
        inbox.on_message(first.send(text(f"old{i}"), 0.0))
    restarted = Outbox("ep2")  # the sender restarted: seq starts at 0 again
    message = restarted.send(text("new0"), 1.0)
    assert message.seq == 0
    assert inbox.on_message(message) == Receipt(deliver=(message,), ack=("new0",))


def test_stuck_message_after_base_jump_over_buffered_seq():
    """Bug: a buffered message at the new `base` is never delivered.

    Old receiver delivers m0, m1; the ack for m0 is lost, m1's arrives. The receiver
    restarts; the sender resends m0 and m2 (both base 0) and m2 arrives first, so the
    fresh Inbox buffers it. m0 is then delivered and acked, so the sender's base becomes
    2. Every retransmission of m2 now carries base 2: the Inbox jumps `expected` to 2,
    finds seq 2 already buffered and calls it a duplicate, without delivering it.
    """
    outbox, old = Outbox("ep1"), Inbox()
    m0, m1, _m2 = (outbox.send(text(f"m{i}"), 0.0) for i in range(3))
    old.on_message(m0)
    old.on_message(m1)
    outbox.on_ack(["m1"], 0.0)  # the ack for m0 was lost; m2 was lost
    fresh = Inbox()
    r0, r2 = outbox.on_reconnect(1.0)
    assert fresh.on_message(r2) == Receipt()
    outbox.on_ack(fresh.on_message(r0).ack, 1.0)
    delivered = []
    for t in range(2, 10):
        for message in outbox.due(float(t)):
            receipt = fresh.on_message(message)
            delivered += ids(receipt.deliver)
            outbox.on_ack(receipt.ack, float(t))
    assert delivered == ["m2"]
    assert outbox.unacked == []


# ---- the simulated channel ----

KINDS = [MessageType.TEXT, MessageType.EDIT, MessageType.DELETE, MessageType.REACTION]


def workload_message(index: int, conversation: str) -> ChannelMessage:
    kind = KINDS[index % len(KINDS)]
    fields: dict = {"conversation": conversation}
    if kind in (MessageType.TEXT, MessageType.EDIT):
        fields["body"] = f"body {index}"
    if kind is not MessageType.TEXT:
        fields["target"] = f"m{max(index - 1, 0)}"
    if kind is MessageType.REACTION:
        fields.update(emoji="👍", action=ReactionAction.ADD)
    return ChannelMessage(kind, f"m{index}", 1_700_000_000_000 + index, "alice", **fields)


@dataclass
class SimulatedLink:
    """One Outbox and one Inbox joined by a lossy channel; frames go through the codec."""

    workload: list[str]  # the conversation of each message, in send order
    outbox: Outbox = field(default_factory=lambda: Outbox("ep1"))
    inbox: Inbox = field(default_factory=Inbox)
    now: float = 0.0
    to_receiver: list[str] = field(default_factory=list)  # encoded data frames in flight
    to_sender: list[str] = field(default_factory=list)  # encoded ack frames in flight
    sent: list[ChannelMessage] = field(default_factory=list)
    delivered: list[ChannelMessage] = field(default_factory=list)  # over all incarnations
    delivered_since_restart: list[ChannelMessage] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    _ack_ids: itertools.count = field(default_factory=itertools.count)

    def send_next(self) -> None:
        if len(self.sent) < len(self.workload):
            index = len(self.sent)
            message = workload_message(index, self.workload[index])
            self.sent.append(message)
            self.to_receiver.append(encode(self.outbox.send(message, self.now)))

    def receive_data(self, index: int) -> None:
        message = decode(self.to_receiver.pop(index % len(self.to_receiver)))
        receipt = self.inbox.on_message(message)
        self.delivered += receipt.deliver
        self.delivered_since_restart += receipt.deliver
        for start in range(0, len(receipt.ack), MAX_ACKED_IDS):
            chunk = receipt.ack[start : start + MAX_ACKED_IDS]
            ack = ChannelMessage(
                MessageType.ACK, f"ack{next(self._ack_ids)}", 0, "bob", acked_ids=chunk
            )
            self.to_sender.append(encode(ack))

    def receive_ack(self, index: int) -> None:
        ack = decode(self.to_sender.pop(index % len(self.to_sender)))
        self.acked += ids(self.outbox.on_ack(ack.acked_ids, self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.to_receiver += map(encode, self.outbox.due(self.now))

    def reconnect(self) -> None:
        self.to_receiver.clear()
        self.to_sender.clear()
        self.to_receiver += map(encode, self.outbox.on_reconnect(self.now))

    def restart_receiver(self) -> None:
        self.inbox = Inbox()
        self.delivered_since_restart = []
        self.reconnect()

    def apply(self, op: tuple) -> None:
        match op:
            case ("send",):
                self.send_next()
            case ("deliver", "data", i) if self.to_receiver:
                self.receive_data(i)
            case ("deliver", "ack", i) if self.to_sender:
                self.receive_ack(i)
            case ("lose", "data", i) if self.to_receiver:
                self.to_receiver.pop(i % len(self.to_receiver))
            case ("lose", "ack", i) if self.to_sender:
                self.to_sender.pop(i % len(self.to_sender))
            case ("duplicate", "data", i) if self.to_receiver:
                self.to_receiver.append(self.to_receiver[i % len(self.to_receiver)])
            case ("duplicate", "ack", i) if self.to_sender:
                self.to_sender.append(self.to_sender[i % len(self.to_sender)])
            case ("advance", seconds):
                self.advance(seconds)
            case ("reconnect",):
                self.reconnect()
            case ("restart",):
                self.restart_receiver()

    def run_fair_phase(self, max_rounds: int = 10) -> None:
        """No loss, FIFO delivery, time advancing: the outbox must drain."""
        while len(self.sent) < len(self.workload):
            self.send_next()
        for _ in range(max_rounds):
            while self.to_receiver or self.to_sender:
                while self.to_receiver:
                    self.receive_data(0)
                while self.to_sender:
                    self.receive_ack(0)
            if not self.outbox.unacked:
                return
            self.advance(self.outbox.next_deadline() - self.now)
        raise AssertionError(
            f"outbox did not drain in {max_rounds} fair rounds; still unacked: "
            f"{[(m.id, m.conversation, m.seq, m.base) for m in self.outbox.unacked]}"
        )

    def in_send_order(self, delivered: list[ChannelMessage], conversation: str) -> list[str]:
        return [m.id for m in delivered if m.conversation == conversation]

    def assert_nothing_invented(self) -> None:
        by_id = {m.id: m for m in self.sent}
        for message in self.delivered:
            original = by_id[message.id]  # KeyError: delivered something never sent
            assert (message.type, message.conversation, message.body, message.target) == (
                original.type,
                original.conversation,
                original.body,
                original.target,
            )


def _channel_op(n: int, restarts: bool) -> tuple:
    """Decode one drawn integer into a channel operation (cheaper to draw than a one_of)."""
    # Repetition weights the draw: mostly traffic, some faults, rare reconnects, so that
    # streams get long enough between reconnects for interesting states to build up.
    kinds = ["send"] * 2 + ["deliver data"] * 3 + ["deliver ack"] * 2
    kinds += ["lose", "duplicate", "advance", "reconnect"] + ["restart"] * restarts
    kind, arg = kinds[n % len(kinds)], n // len(kinds)
    match kind.split():
        case ["deliver", direction]:
            return ("deliver", direction, arg)
        case ["lose" | "duplicate" as fault]:
            return (fault, ("data", "ack")[arg % 2], arg // 2)
        case ["advance"]:
            return ("advance", (0.1, 0.5, 0.99, 1.0, 2.5)[arg % 5])
        case [other]:
            return (other,)


_op_numbers = st.integers(min_value=0, max_value=100_000)
channel_ops = _op_numbers.map(lambda n: _channel_op(n, restarts=False))
channel_ops_with_restarts = _op_numbers.map(lambda n: _channel_op(n, restarts=True))


def schedules(ops: st.SearchStrategy[tuple]) -> st.SearchStrategy[list[tuple]]:
    """30 to 100 operations.

    Plain `st.lists` averages only a handful of elements, too few to reach deep states
    (e.g. a restart between the ack of one message and the loss of an earlier one's ack:
    found in about 2% of examples with this minimum, almost never without it). The price:
    shrunk examples are padded with no-op ("send",) steps up to the minimum.
    """
    return st.lists(ops, min_size=30, max_size=100)


workloads = st.sampled_from([1, 2, 3]).flatmap(
    lambda n: st.lists(st.sampled_from(["general", "random", "ops"][:n]), min_size=1, max_size=10)
)


@settings(max_examples=200, deadline=None)
@given(workloads, schedules(channel_ops))
def test_exactly_once_in_order_under_an_adversarial_channel(workload, schedule):
    link = SimulatedLink(workload)
    for op in schedule:
        link.apply(op)
    link.run_fair_phase()

    sent_ids = ids(link.sent)
    delivered_ids = ids(link.delivered)
    assert Counter(delivered_ids) == Counter(sent_ids), "each message delivered exactly once"
    for conversation in set(workload):
        assert link.in_send_order(link.delivered, conversation) == link.in_send_order(
            link.sent, conversation
        )
    assert sorted(link.acked) == sorted(sent_ids), "each message acked exactly once"
    link.assert_nothing_invented()


@settings(max_examples=200, deadline=None)
@given(workloads, schedules(channel_ops_with_restarts))
def test_receiver_restarts_lose_nothing_and_dedupe_after_the_last_restart(workload, schedule):
    link = SimulatedLink(workload)
    for op in schedule:
        link.apply(op)
    link.run_fair_phase()

    sent_ids = ids(link.sent)
    assert set(ids(link.delivered)) == set(sent_ids), "each message delivered at least once"
    assert sorted(link.acked) == sorted(sent_ids)
    link.assert_nothing_invented()
    since = link.delivered_since_restart
    assert len(set(ids(since))) == len(since), "no duplicate after the last restart"
    send_position = {m.id: i for i, m in enumerate(link.sent)}
    for conversation in set(workload):
        positions = [send_position[i] for i in link.in_send_order(since, conversation)]
        assert positions == sorted(positions), "in send order after the last restart"
