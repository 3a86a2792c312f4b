"""Tests for peer/link_core.py: one link's whole messaging logic, driven without sockets or
sleeps — time is a number passed in, frames are strings handed from one core to another.

Example tests pin ack timing, retransmission, heartbeats and silence, the typing throttle,
duplicates and the order of store effects. The property tests wire two cores back to back
through a wire that loses, reorders and duplicates frames and whose channel closes and
reopens, under a schedule hypothesis draws, then keep the link up and check the delivery
guarantees, the store's ordering and the timer. A last section checks that the asyncio
adapter (peer/message_channel.py) applies the effects as the core orders them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from fake_data_channel import FakeDataChannel
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.peer.link_core import (
    MIN_TICK_STEP,
    ChannelConfig,
    Dispatch,
    Effect,
    FrameRefused,
    LinkCore,
    LivenessChanged,
    Report,
    StoreAccept,
    StoreAcked,
    StoreCommit,
    StoreDeliver,
    Transmit,
)
from peerlab.peer.message_channel import MessageChannel
from peerlab.peer.protocol import (
    MAX_ACKED_IDS,
    RELIABLE_TYPES,
    ChannelMessage,
    MessageType,
    ProtocolError,
    TypingState,
    decode,
    decode_frame,
    encode,
    encode_batch,
)
from peerlab.peer.reliability import OutboxFull
from peerlab.peer.store import RemoteState

WALL_S = 1_764_100_000.0


def make_core(local: str = "alice", remote: str = "bob", **config: Any) -> LinkCore:
    """A core with deterministic ids (`alice0`, `alice1`...) and a fixed wall clock."""
    counter = itertools.count()
    return LinkCore(
        local,
        remote,
        epoch=f"ep-{local}",
        config=ChannelConfig(**config),
        wall_clock=lambda: WALL_S,
        new_id=lambda: f"{local}{next(counter)}",
    )


def opened(
    local: str = "alice",
    remote: str = "bob",
    now: float = 0.0,
    features: frozenset[str] = frozenset(),
    **config: Any,
) -> LinkCore:
    core = make_core(local, remote, **config)
    core.channel_opened(now, features)
    assert core.take_effects() == []
    return core


BATCHING = frozenset({"batch"})
"""The features of a connection that negotiated the `batch` extension."""


def frames(effects: list[Effect]) -> list[ChannelMessage]:
    return [decode(e.frame) for e in effects if isinstance(e, Transmit)]


def reports(effects: list[Effect], kind: str) -> list[dict[str, Any]]:
    found = [e.fields for e in effects if isinstance(e, Report) and e.kind == kind]
    assert all(next(iter(fields)) == "peer" for fields in found)  # an event of the link
    return found


def run_until(core: LinkCore, until: float) -> list[tuple[float, Effect]]:
    """Fire the core's timer each time it asks, up to `until`; (time, effect) pairs."""
    out = []
    while (when := core.next_timer()) is not None and when <= until:
        core.timer_fired(when)
        out += [(when, effect) for effect in core.take_effects()]
        assert core.next_timer() is None or core.next_timer() > when
    return out


def acks_in(timed: list[tuple[float, Effect]]) -> list[tuple[str, ...]]:
    return [m.acked_ids for m in frames([e for _, e in timed]) if m.type is MessageType.ACK]


def wire_frames(sender: LinkCore, count: int, conversation: str = "c") -> list[str]:
    """`count` texts sent by an open `sender`, as the frames it put on the wire."""
    out = []
    for i in range(count):
        sender.send_text(0.0, conversation, f"#{i}")
        out += [e.frame for e in sender.take_effects() if isinstance(e, Transmit)]
    return out


# ---- sending ----


def test_a_send_is_stored_then_reported_then_transmitted():
    alice = opened()
    message = alice.send_text(0.0, "c", "hi")
    assert (message.epoch, message.seq, message.base) == ("ep-alice", 0, 0)
    assert (message.id, message.timestamp, message.sender) == (
        "alice0",
        int(WALL_S * 1000),
        "alice",
    )
    assert alice.take_effects() == [
        StoreAccept(message),
        Report("sent", {"peer": "bob", "message": message}),
        Transmit(encode(message)),
    ]
    assert alice.unacked == [message]


def test_a_refused_send_leaves_no_effect_and_spends_no_seq():
    alice = opened(outbox_max_messages=1)
    with pytest.raises(ProtocolError):
        alice.send_text(0.0, "bad conversation!", "hi")
    alice.send_text(0.0, "c", "first")
    alice.take_effects()
    with pytest.raises(OutboxFull):
        alice.send_text(0.0, "c", "second")
    assert alice.take_effects() == []
    with pytest.raises(ProtocolError):
        alice.send_ack(0.0, ["fine", "not an id!"])
    assert alice.take_effects() == []


def test_sends_while_closed_are_stored_and_resent_in_order_when_a_channel_opens():
    alice = make_core()
    sent = [alice.send_text(0.0, conversation, "x") for conversation in ("a", "b", "a")]
    effects = alice.take_effects()
    assert frames(effects) == [] and [e for e in effects if isinstance(e, StoreAccept)] == [
        StoreAccept(m) for m in sent
    ]
    assert alice.next_timer() is None  # nothing is timed while no channel is open

    alice.channel_opened(5.0)
    effects = alice.take_effects()
    assert frames(effects) == sent
    assert [
        (r["message"], r["reason"], r["transmissions"]) for r in reports(effects, "retransmitted")
    ] == [(m, "reconnect", 2) for m in sent]
    assert alice.next_timer() == 5.0  # the periodic duties start at once


def test_an_unacked_message_is_retransmitted_after_the_timeout_and_backs_off():
    alice = opened()
    message = alice.send_text(0.0, "c", "hi")
    alice.take_effects()
    timed = run_until(alice, 3.5)
    resent = [
        (t, r.fields["message"].id)
        for t, r in timed
        if isinstance(r, Report) and r.kind == "retransmitted"
    ]
    # At the RTO (1 s), then twice as long after a fruitless round.
    assert resent == [(1.0, message.id), (3.0, message.id)]


def test_an_ack_forgets_the_message_and_reports_it_once():
    alice = opened()
    message = alice.send_text(0.0, "c", "hi")
    alice.take_effects()
    ack = encode(ChannelMessage(MessageType.ACK, "bob0", 0, "bob", acked_ids=(message.id,)))
    alice.frame_received(0.05, ack)
    assert alice.take_effects() == [
        StoreAcked((message.id,)),
        Report("acked", {"peer": "bob", "message": message, "ack_id": "bob0"}),
        Dispatch(MessageType.ACK, message),
    ]
    alice.frame_received(0.06, ack)  # a duplicate ack acks nothing new
    assert alice.take_effects() == []
    assert alice.unacked == []
    assert not any(
        isinstance(e, Report) and e.kind == "retransmitted" for _, e in run_until(alice, 5)
    )


# ---- receiving and acking ----


def test_an_isolated_message_is_delivered_then_acked_at_once_after_a_commit():
    alice, bob = opened(), opened("bob", "alice", now=0.1)
    [frame] = wire_frames(alice, 1)
    message = decode(frame)
    bob.frame_received(0.1, frame)
    assert bob.take_effects() == [
        Report("received", {"peer": "alice", "message": message}),
        StoreDeliver((message,)),
        Report("delivered", {"peer": "alice", "message": message}),
        Dispatch(MessageType.TEXT, message),
    ]
    assert bob.next_timer() == 0.1  # at once: the next event-loop iteration
    bob.timer_fired(0.1)
    effects = bob.take_effects()
    assert effects[0] == StoreCommit()
    assert [m.acked_ids for m in frames(effects)] == [(message.id,)]


def test_a_busy_channel_shares_one_ack_frame_after_the_ack_delay():
    alice, bob = opened(), opened("bob", "alice", now=1.0)
    first, second, third = wire_frames(alice, 3)
    run_until(bob, 1.0)
    bob.frame_received(1.0, first)
    run_until(bob, 1.0)
    bob.frame_received(1.0002, second)  # within ack_gap of the previous: a busy channel
    assert bob.next_timer() == pytest.approx(1.0102)
    bob.frame_received(1.0004, third)
    assert bob.next_timer() == pytest.approx(1.0102)
    bob.take_effects()
    bob.timer_fired(1.0101)
    assert bob.take_effects() == []
    assert acks_in(run_until(bob, 1.0103)) == [(decode(second).id, decode(third).id)]


def test_with_batch_an_isolated_message_is_acked_within_the_call_that_delivers_it():
    alice, bob = opened(features=BATCHING), opened("bob", "alice", now=0.1, features=BATCHING)
    run_until(bob, 0.1)
    [frame] = wire_frames(alice, 1)
    message = decode(frame)
    bob.frame_received(0.1, frame)  # an idle transport: nothing in its buffer
    assert bob.take_effects()[-2:] == [
        StoreCommit(),
        Transmit(encode_batch(acked_ids=[message.id])),
    ]
    assert bob.next_timer() == 0.35  # only the periodic tick: no ack waits for a turn


def test_with_batch_a_busy_transport_holds_the_ack_to_the_next_turn():
    alice, bob = opened(features=BATCHING), opened("bob", "alice", now=0.1, features=BATCHING)
    run_until(bob, 0.1)
    [frame] = wire_frames(alice, 1)
    bob.transport_busy = True  # the data channel still holds frames it has not sent
    bob.frame_received(0.1, frame)
    assert frames(bob.take_effects()) == []
    assert bob.next_timer() == 0.1  # at once: the adapter's next turn
    bob.timer_fired(0.1)
    assert bob.take_effects() == [Transmit(encode_batch(acked_ids=[decode(frame).id]))]


def test_a_full_ack_frame_leaves_without_waiting():
    alice, bob = opened(), opened("bob", "alice", now=1.0)
    run_until(bob, 1.0)
    sent = wire_frames(alice, MAX_ACKED_IDS)
    for i, frame in enumerate(sent):
        bob.frame_received(1.0 + i * 1e-5, frame)
    [ack] = frames(bob.take_effects())
    assert ack.acked_ids == tuple(decode(f).id for f in sent)
    assert bob.next_timer() == 1.25  # only the periodic tick is left: no ack waits


def test_duplicates_are_reacked_when_delivered_and_ignored_when_buffered():
    alice, bob = opened(), opened("bob", "alice")
    m0, m1 = wire_frames(alice, 2)
    bob.frame_received(0.0, m1)  # early: buffered, not acked
    bob.frame_received(0.0, m1)
    effects = bob.take_effects()
    assert [r["reacked"] for r in reports(effects, "duplicate")] == [False]
    assert reports(effects, "delivered") == [] and bob.next_timer() == 0.0
    bob.frame_received(0.0, m0)  # unblocks both, in order
    assert [r["message"].seq for r in reports(bob.take_effects(), "delivered")] == [0, 1]
    run_until(bob, 0.0)
    bob.frame_received(0.5, m0)  # its ack was lost: re-acked, not delivered again
    effects = bob.take_effects()
    assert [r["reacked"] for r in reports(effects, "duplicate")] == [True]
    assert not any(isinstance(e, StoreDeliver | Dispatch) for e in effects)
    assert acks_in(run_until(bob, 0.5)) == [(decode(m0).id,)]


def test_a_closed_channel_drops_the_acks_it_had_not_sent():
    alice, bob = opened(), opened("bob", "alice")
    [frame] = wire_frames(alice, 1)
    bob.frame_received(0.0, frame)
    bob.channel_closed(0.0)
    assert bob.next_timer() is None
    bob.channel_opened(1.0)
    assert frames(bob.take_effects()) == [] and frames(e for _, e in run_until(bob, 1.0)) == []


def test_invalid_frames_are_reported_and_refused():
    bob = opened("bob", "alice")
    bob.frame_received(0.0, "{not json")
    spoofed = ChannelMessage(MessageType.HEARTBEAT, "x1", 0, "mallory")
    bob.frame_received(0.0, encode(spoofed))
    effects = bob.take_effects()
    assert [r["code"] for r in reports(effects, "protocol_error")] == ["bad_json", "wrong_sender"]
    refused = [e.error for e in effects if isinstance(e, FrameRefused)]
    assert [e.code for e in refused] == ["bad_json", "wrong_sender"]
    assert refused[1].message_id == "x1"


def test_a_restored_core_resends_its_unacked_and_only_reacks_what_it_delivered():
    earlier = make_core().send_text(0.0, "c", "hi")._replace(id="before-restart")
    state = RemoteState(next_seq={"c": 1}, unacked=[earlier], expected={("ep-bob", "c"): 3})
    restarted = make_core()
    restarted.restore(0.0, state)
    assert restarted.send_text(0.0, "c", "next").seq == 1
    restarted.take_effects()
    restarted.channel_opened(1.0)
    assert [m.seq for m in frames(restarted.take_effects())] == [0, 1]
    delivered_before = ChannelMessage(
        MessageType.TEXT,
        "bob9",
        0,
        "bob",
        conversation="c",
        epoch="ep-bob",
        seq=2,
        base=0,
        body="x",
    )
    restarted.frame_received(1.0, encode(delivered_before))
    effects = restarted.take_effects()
    assert reports(effects, "delivered") == [] and reports(effects, "duplicate")[0]["reacked"]


# ---- heartbeats and silence ----


def test_a_silent_channel_gets_heartbeats_and_silence_is_reported_within_the_timeout():
    alice = opened()
    timed = run_until(alice, 3.0)
    heartbeats = [
        t for t, e in timed if isinstance(e, Transmit) and decode(e.frame).type == "heartbeat"
    ]
    assert heartbeats == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert [(t, e) for t, e in timed if isinstance(e, LivenessChanged)] == [
        (2.5, LivenessChanged(False))
    ]
    heard = encode(ChannelMessage(MessageType.HEARTBEAT, "bob0", 0, "bob"))
    alice.frame_received(3.1, heard)
    assert alice.take_effects() == [LivenessChanged(True)]


def test_a_busy_channel_sends_no_heartbeats_and_stays_alive():
    alice, bob = opened(), opened("bob", "alice")
    seen: list[Effect] = []
    for step in range(1, 41):  # a message each way every 0.1 s for 4 s
        now = step * 0.1
        for sender, receiver in ((alice, bob), (bob, alice)):
            sender.send_text(now, "c", "x")
            effects = sender.take_effects() + [e for _, e in run_until(sender, now)]
            for message in frames(effects):
                receiver.frame_received(now, encode(message))
            seen += effects
    assert {m.type for m in frames(seen)} == {MessageType.TEXT, MessageType.ACK}
    assert not any(isinstance(e, LivenessChanged) for e in seen)
    assert reports(seen, "retransmitted") == []


# ---- typing ----


def test_typing_is_sent_at_most_once_per_window_and_a_change_at_its_end():
    alice = opened()
    started = alice.send_typing(0.0, "c", TypingState.STARTED)
    assert frames(alice.take_effects()) == [started]
    assert alice.send_typing(1.0, "c", TypingState.STARTED) is None  # dropped
    assert alice.send_typing(2.0, "c", TypingState.STOPPED) is None  # held to the window's end
    assert [r["state"] for r in reports(alice.take_effects(), "typing_throttled")] == [
        "started",
        "stopped",
    ]
    typing = [
        (t, decode(e.frame).state)
        for t, e in run_until(alice, 10.0)
        if isinstance(e, Transmit) and decode(e.frame).type == "typing"
    ]
    assert typing == [(3.0, "stopped")]


def test_typing_is_never_queued_while_no_channel_is_open():
    alice = make_core()
    assert alice.send_typing(0.0, "c", "started") is None
    [dropped] = reports(alice.take_effects(), "typing_dropped")
    assert dropped["reason"] == "not connected" and dropped["message"].state == "started"
    alice.channel_opened(0.5)
    assert frames(alice.take_effects()) == []


# ---- two cores back to back over a hostile wire (properties) ----

PEERS = ("alice", "bob")
CONVERSATIONS = ("general", "random", "ops")
STEPS = (0.0, 0.0, 0.0003, 0.004, 0.3, 1.1, 3.0)
TYPING_WINDOW = ChannelConfig().typing_window


@dataclass
class ModelStore:
    """What a Store would hold, and what of it is committed (durable)."""

    accepted: set[str] = field(default_factory=set)
    deliveries: set[str] = field(default_factory=set)
    committed_deliveries: set[str] = field(default_factory=set)


@dataclass
class Peer:
    core: LinkCore
    store: ModelStore = field(default_factory=ModelStore)
    sent: list[ChannelMessage] = field(default_factory=list)
    delivered: list[ChannelMessage] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    typing_sent_at: dict[str, list[float]] = field(default_factory=dict)


class Link:
    """Two cores joined by a wire the schedule controls; checks every effect as applied."""

    def __init__(self, features: frozenset[str] = frozenset()) -> None:
        self.now = 0.0
        self.features = features
        self.peers = {
            name: Peer(make_core(name, other))
            for name, other in zip(PEERS, PEERS[::-1], strict=True)
        }
        self.wire: dict[str, list[str]] = {name: [] for name in PEERS}  # frames to each peer
        self.open = False
        self.reopen()

    def call(self, name: str, method: str, *args: Any) -> Any:
        peer = self.peers[name]
        result = getattr(peer.core, method)(self.now, *args)
        self.apply(name, peer.core.take_effects())
        timer = peer.core.next_timer()
        assert timer is None or timer >= self.now, (
            f"{name}: timer {timer} in the past at {self.now}"
        )
        return result

    def apply(self, name: str, effects: list[Effect]) -> None:
        peer, other = self.peers[name], PEERS[1 - PEERS.index(name)]
        store = peer.store
        for effect in effects:
            match effect:
                case Transmit(frame):
                    assert self.open, "a frame while no channel is open"
                    decoded = decode_frame(frame, batch=bool(self.features))
                    unsafe = set(decoded.acked_ids) - peer.store.committed_deliveries
                    assert not unsafe, f"acked before the delivery was committed: {unsafe}"
                    for message in decoded.messages:
                        self.check_frame(peer, message)
                    self.wire[other].append(frame)
                case StoreAccept(message):
                    store.accepted.add(message.id)
                case StoreDeliver(messages):
                    store.deliveries.update(m.id for m in messages)
                case StoreCommit():
                    store.committed_deliveries |= store.deliveries
                case Report("sent", {"message": message}) if message.reliable:
                    assert message.id in store.accepted, "reported sent before it was stored"
                case Report("delivered", {"message": message}):
                    assert message.id in store.deliveries, "reported delivered before it was stored"
                case Dispatch(MessageType.ACK, message):
                    peer.acked.append(message.id)
                case Dispatch(message_type, message) if message_type in RELIABLE_TYPES:
                    peer.delivered.append(message)

    def check_frame(self, peer: Peer, message: ChannelMessage) -> None:
        if message.reliable:
            assert message.id in peer.store.accepted, "transmitted before it was stored"
        elif message.type is MessageType.ACK:
            unsafe = set(message.acked_ids) - peer.store.committed_deliveries
            assert not unsafe, f"acked before the delivery was committed: {unsafe}"
        elif message.type is MessageType.TYPING:
            times = peer.typing_sent_at.setdefault(message.conversation, [])
            assert not times or times[-1] + TYPING_WINDOW <= self.now, "over one per window"
            times.append(self.now)

    def send(self, name: str, conversation: str) -> None:
        peer = self.peers[name]
        index = len(peer.sent)
        target = peer.sent[-1].id if peer.sent else "none"
        match index % 4:
            case 0:
                message = self.call(name, "send_text", conversation, f"#{index}")
            case 1:
                message = self.call(name, "send_edit", conversation, target, f"#{index}'")
            case 2:
                message = self.call(name, "send_reaction", conversation, target, "👍")
            case 3:
                message = self.call(name, "send_delete", conversation, target)
        peer.sent.append(message)

    def deliver(self, to: str, index: int) -> None:
        frames = self.wire[to]
        if frames:
            self.call(to, "frame_received", frames.pop(index % len(frames)))

    def advance(self, seconds: float) -> None:
        """Let time pass, firing each core's timer when it asks, earliest first."""
        until = self.now + seconds
        for _ in range(100_000):
            due = [(t, n) for n in PEERS if (t := self.peers[n].core.next_timer()) is not None]
            when, name = min(due, default=(None, None))
            if when is None or when > until:
                break
            self.now = max(self.now, when)
            self.call(name, "timer_fired")
        else:
            raise AssertionError("the timers never settle")
        self.now = until

    def close(self) -> None:
        if self.open:
            self.open = False
            for name in PEERS:
                self.wire[name].clear()
                self.call(name, "channel_closed")

    def reopen(self) -> None:
        self.close()
        self.open = True
        for name in PEERS:
            self.call(name, "channel_opened", self.features)

    def apply_op(self, op: tuple) -> None:
        match op:
            case ("send", name, conversation):
                self.send(name, conversation)
            case ("typing", name, conversation, state):
                self.call(name, "send_typing", conversation, state)
            case ("deliver", name, index):
                self.deliver(name, index)
            case ("lose", name, index) if self.wire[name]:
                self.wire[name].pop(index % len(self.wire[name]))
            case ("duplicate", name, index) if self.wire[name]:
                self.wire[name].append(self.wire[name][index % len(self.wire[name])])
            case ("advance", seconds):
                self.advance(seconds)
            case ("flush",):
                self.flush()
            case ("close",):
                self.close()
            case ("open",) if not self.open:
                self.reopen()

    def flush(self) -> None:
        """Deliver everything in flight, in order, and what that sends, until the wire is
        empty, running the timers that fall due meanwhile (the acks sent at once)."""
        while any(self.wire.values()):
            for name in PEERS:
                while self.wire[name]:
                    self.deliver(name, 0)
            self.advance(0.0)

    def settle(self) -> None:
        """Keep the channel open and lossless (FIFO) until both outboxes drain."""
        if not self.open:
            self.reopen()
        # Retransmission timeouts back off to at most 60 s; the last acks leave at once.
        for _ in range(1_000):
            self.flush()
            if not any(p.core.unacked for p in self.peers.values()):
                return
            self.advance(0.25)
        raise AssertionError("the link never settled")


def _op(n: int) -> tuple:
    """Decode one drawn integer into a schedule step (cheaper to draw than a one_of)."""
    kinds = ["send"] * 3 + ["deliver"] * 5 + ["advance"] * 3 + ["flush"] * 2
    kinds += ["typing", "typing", "lose", "duplicate", "close", "open"]
    kind, arg = kinds[n % len(kinds)], n // len(kinds)
    name, arg = PEERS[arg % 2], arg // 2
    match kind:
        case "send":
            return (kind, name, CONVERSATIONS[arg % 3])
        case "typing":
            return (kind, name, CONVERSATIONS[arg % 3], ("started", "stopped")[arg // 3 % 2])
        case "advance":
            return (kind, STEPS[arg % len(STEPS)])
        case "close" | "open" | "flush":
            return (kind,)
        case _:
            return (kind, name, arg)


schedules = st.lists(st.integers(min_value=0, max_value=100_000).map(_op), min_size=20, max_size=80)


def in_conversation(messages: list[ChannelMessage], conversation: str) -> list[str]:
    return [m.id for m in messages if m.conversation == conversation]


@pytest.mark.parametrize("features", [frozenset(), frozenset({"batch"})])
@settings(max_examples=150, deadline=None)
@given(schedule=schedules)
def test_two_cores_deliver_exactly_once_in_order_and_ack_everything(features, schedule):
    link = Link(features)
    for op in schedule:
        link.apply_op(op)
    link.settle()

    for sender, receiver in ((link.peers[a], link.peers[b]) for a, b in (PEERS, PEERS[::-1])):
        sent_ids = [m.id for m in sender.sent]
        assert Counter(m.id for m in receiver.delivered) == Counter(sent_ids), "exactly once"
        for conversation in CONVERSATIONS:
            assert in_conversation(receiver.delivered, conversation) == in_conversation(
                sender.sent, conversation
            ), "in send order per conversation"
        # Nothing invented: what is delivered is what was sent (`base` moves on resends).
        originals = {m.id: m._replace(base=0) for m in sender.sent}
        assert all(m._replace(base=0) == originals[m.id] for m in receiver.delivered)
        assert sorted(sender.acked) == sorted(sent_ids), "each message acked once at the sender"
        assert sender.core.unacked == []


# ---- the asyncio adapter applies the effects in the core's order ----


class RecordingStore:
    """The Store methods the adapter calls, recorded in a log shared with the channel."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def accept(self, remote: str, message: ChannelMessage) -> None:
        self.log.append(f"store accept {message.body}")

    def deliver(self, remote: str, messages: tuple[ChannelMessage, ...]) -> None:
        self.log.append(f"store deliver {[m.body for m in messages]}")

    def acked(self, message_ids: tuple[str, ...]) -> None:
        self.log.append(f"store acked {list(message_ids)}")

    def commit(self) -> None:
        self.log.append("store commit")


def recording_channel(log: list[str]) -> tuple[MessageChannel, FakeDataChannel]:
    def observe(kind: str, fields: dict[str, Any], at: float | None) -> None:
        if "message" in fields:
            log.append(f"{kind} {fields['message'].body}")

    bob = MessageChannel(
        "bob", "alice", epoch="ep-bob", observer=observe, store=RecordingStore(log)
    )
    data_channel = FakeDataChannel()
    data_channel.send = lambda frame: log.append(f"wire {decode(frame).type}")
    bob.attach(data_channel, lambda alive: None)
    return bob, data_channel


async def test_the_adapter_stores_reports_and_sends_in_the_cores_order():
    log: list[str] = []
    bob, _ = recording_channel(log)
    bob.send_text("c", "hi")
    assert log == ["store accept hi", "sent hi", "wire text"]  # stored before it returns
    log.clear()
    [frame] = wire_frames(opened(), 1)
    bob._on_frame(frame)
    assert log == ["received #0", "store deliver ['#0']", "delivered #0"]
    await asyncio.sleep(MIN_TICK_STEP)  # the ack leaves on a later loop iteration
    assert log[3:] == ["store commit", "wire ack"]
    bob.detach()


async def test_a_reply_sent_from_a_delivery_is_applied_between_the_deliveries():
    log: list[str] = []
    bob, _ = recording_channel(log)
    bob.on(MessageType.TEXT, lambda m: bob.send_text("c", f"re {m.body}"))
    first, second = wire_frames(opened(), 2)
    bob._on_frame(second)  # early: buffered
    bob._on_frame(first)  # delivers both, in one batch
    assert log == [
        "received #1",
        "received #0",
        "store deliver ['#0', '#1']",
        "delivered #0",
        "store accept re #0",
        "sent re #0",
        "wire text",
        "delivered #1",
        "store accept re #1",
        "sent re #1",
        "wire text",
    ]
    bob.detach()


async def test_the_adapter_keeps_one_timer_at_the_cores_next_timer():
    bob = MessageChannel("bob", "alice", epoch="ep-bob")
    assert bob._timer is None  # nothing timed before a channel is attached
    bob.attach(FakeDataChannel(), lambda alive: None)
    # Opening makes duties due at once: they run on the loop's next turn, not a timer.
    assert bob._core.next_timer() <= time.monotonic() and bob._soon is not None
    await asyncio.sleep(MIN_TICK_STEP)
    assert bob._soon is None
    assert bob._timer is not None and bob._timer_at == bob._core.next_timer()
    bob.detach()
    assert bob._timer is None and bob._soon is None and bob._core.next_timer() is None


async def test_the_adapter_reports_each_event_at_the_instant_the_core_decided_it():
    clock = [10.0]
    seen: list[tuple[str, float | None, float]] = []

    class PausingStore(RecordingStore):
        def accept(self, remote: str, message: ChannelMessage) -> None:
            clock[0] += 0.003  # the process paused (the collector, the scheduler)

    def observe(kind: str, fields: dict[str, Any], at: float | None) -> None:
        seen.append((kind, at, clock[0]))

    bob = MessageChannel(
        "bob",
        "alice",
        epoch="ep-bob",
        observer=observe,
        store=PausingStore([]),
        clock=lambda: clock[0],
    )
    bob.attach(FakeDataChannel(), lambda alive: None)
    bob.send_text("c", "hi")
    # Reported after the pause, stamped with the instant the core sent it at.
    assert seen == [("sent", 10.0, 10.003)]
    bob.detach()
