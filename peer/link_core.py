"""`LinkCore`: the whole messaging logic of one link to a remote peer, without I/O.

It joins the pure protocol pieces — the codec (peer/protocol.py), Outbox/Inbox
(peer/reliability.py), the typing throttle and the heartbeat bookkeeping — into one state
machine, in the manner of aioquic's QuicConnection and websockets' sans-I/O protocol: it
is told what happens (an application send, a frame off the data channel, the channel
opening or closing, its timer expiring), always with the time `now`, and answers with
effects to carry out and the time it next wants `timer_fired` (`next_timer`). It reads
no clock of its own, never sleeps and touches no socket or file: peer/message_channel.py
is the asyncio adapter that feeds it and carries its effects out.

Effects come as one ordered list (`take_effects`) rather than separate queues of frames
and events, because their order is the contract with the store (peer/store.py): an
accepted message is stored before it is reported or sent, a delivery is stored before it
is reported, and the store commits before an ack frame leaves. Applied in list order,
right after the call that produced them, they keep those guarantees — and a handler that
sends from inside a delivery gets its own effects applied before its send returns,
between those of the delivery, as a plain call stack would.

Only a message's `id` and `timestamp` come from outside the arguments: from the
`new_id` and `wall_clock` the core is built with. They label frames; they decide nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from peerlab.peer.liveness import Liveness
from peerlab.peer.protocol import (
    BATCH,
    MAX_ACKED_IDS,
    ChannelMessage,
    FrameBatcher,
    MessageType,
    ProtocolError,
    ReactionAction,
    TypingState,
    check_fields,
    check_identifier,
    decode_frame,
    encode,
    encode_batch,
)
from peerlab.peer.reliability import MAX_UNACKED_BYTES, MAX_UNACKED_MESSAGES, Inbox, Outbox
from peerlab.peer.throttle import TypingThrottle

if TYPE_CHECKING:
    from peerlab.peer.store import RemoteState

MIN_TICK_STEP = 0.005
"""The least the periodic duties are re-armed ahead of `now`: a deadline met a hair early
(float rounding, a timer firing early) is retried shortly instead of in a spin."""


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    retransmit_after: float = 1.0
    outbox_max_messages: int = MAX_UNACKED_MESSAGES
    outbox_max_bytes: int = MAX_UNACKED_BYTES
    """The most unacked reliable messages, and bytes of their frames, held for the remote
    peer; a send beyond either raises `OutboxFull`."""
    typing_window: float = 3.0
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 2.5
    buffered_low: int = 256 * 1024
    """`MessageChannel.drain()` waits until the data channel's send buffer is below this
    many bytes (the adapter's business; the core never sees a buffer)."""
    ack_gap: float = 0.0005
    ack_delay: float = 0.01
    """Without the `batch` extension: a message arriving within `ack_gap` of the previous
    one means a busy channel: its ack waits up to `ack_delay` to share a frame with the
    next ones. An isolated message is acked at once, so round trips stay short."""
    batch_bytes: int = 16 * 1024
    """With the `batch` extension: the largest batch frame built (docs/protocol.md §4.8)."""


# ---- effects: what the adapter carries out, in order ----


class Transmit(NamedTuple):
    """Put this frame on the open data channel."""

    frame: str


class Report(NamedTuple):
    """Tell the observer `kind` and `fields`: an event of the link (docs/control-api.md),
    its `peer` (the remote id) first, then the kind's own fields."""

    kind: str
    fields: dict[str, Any]


class Dispatch(NamedTuple):
    """Call the application's handlers of `message_type` with `message`. For
    `MessageType.ACK` the message is the original one that was acked."""

    message_type: MessageType
    message: ChannelMessage


class FrameRefused(NamedTuple):
    """A frame that is not a valid message from the remote: call the error handlers."""

    error: ProtocolError


class LivenessChanged(NamedTuple):
    """The remote went silent for the heartbeat timeout (False), or was heard again (True)."""

    alive: bool


class StoreAccept(NamedTuple):
    """`Store.accept`: a reliable message was accepted for sending."""

    message: ChannelMessage


class StoreAcked(NamedTuple):
    """`Store.acked`: these sent messages were acked."""

    message_ids: tuple[str, ...]


class StoreDeliver(NamedTuple):
    """`Store.deliver`: these messages were delivered, in order."""

    messages: tuple[ChannelMessage, ...]


class StoreCommit(NamedTuple):
    """`Store.commit`: the ack frames that follow may only leave once this is done."""


Effect = (
    Transmit
    | Report
    | Dispatch
    | FrameRefused
    | LivenessChanged
    | StoreAccept
    | StoreAcked
    | StoreDeliver
    | StoreCommit
)

_COMMIT = StoreCommit()

_tuple = tuple.__new__
"""Builds an effect without the NamedTuple's Python-level `__new__`: the message path
makes about ten effects per round trip."""


class LinkCore:
    """One link's protocol state (see the module doc).

    Every method that can change anything takes `now` (seconds, any monotonic origin) as
    its first argument. A method that raises does so before changing anything: it leaves
    no effect behind. After each call, the caller applies `take_effects()` in order and
    arranges for `timer_fired` at `next_timer()`.
    """

    def __init__(
        self,
        local_id: str,
        remote_id: str,
        *,
        epoch: str,
        config: ChannelConfig,
        wall_clock: Callable[[], float],
        new_id: Callable[[], str],
        durable: bool = True,
    ):
        self.local_id = local_id
        self.remote_id = remote_id
        self.config = config
        self._wall_clock = wall_clock
        self._new_id = new_id
        self._durable = durable
        """Whether a store takes the Store* effects: without one they are not made."""
        self._outbox = Outbox(
            epoch,
            config.retransmit_after,
            max_messages=config.outbox_max_messages,
            max_bytes=config.outbox_max_bytes,
        )
        self._inbox = Inbox()
        self._throttle = TypingThrottle(config.typing_window)
        self._liveness: Liveness | None = None
        """The open channel's heartbeat bookkeeping; None while no channel is open."""
        self._alive = False
        self._effects: list[Effect] = []
        self._acks_to_send: list[str] = []
        self._ack_at: float | None = None
        self._tick_at: float | None = None
        """When the periodic duties (retransmissions, held typing, heartbeat, silence)
        next run; None while no channel is open."""
        self._last_reliable_at = float("-inf")
        self._batching = False
        """The open channel's connection negotiated `batch` (docs/protocol.md §13)."""
        self._batcher = FrameBatcher(config.batch_bytes)
        self._flush_at: float | None = None
        """With `batch`, when frames are held: the adapter's next turn (a `now`)."""
        self.transport_busy = False
        """Whether the data channel still holds frames it has not sent: set by the adapter
        before each call (bufferedAmount > 0). With `batch`, a frame goes out at once on
        an idle transport and is held, to share a batch frame, on a busy one."""

    # ---- outputs ----

    def take_effects(self) -> list[Effect]:
        """The effects of the calls since the last take, in the order to apply them."""
        effects, self._effects = self._effects, []
        return effects

    def next_timer(self) -> float | None:
        """When `timer_fired` is next wanted, or None for never (until another input)."""
        if self._flush_at is not None:
            return self._flush_at  # never later than the others: it is a `now`
        ack_at, tick_at = self._ack_at, self._tick_at
        if ack_at is None or (tick_at is not None and tick_at < ack_at):
            return tick_at
        return ack_at

    @property
    def unacked(self) -> list[ChannelMessage]:
        return self._outbox.unacked

    # ---- application commands ----
    # The reliable send_* raise ProtocolError for bad input or a frame over the size limit
    # (`too_big`), and OutboxFull when the outbox is full; nothing is queued then.

    def send_text(self, now: float, conversation: str, body: str) -> ChannelMessage:
        return self._send_reliable(
            now, MessageType.TEXT, {"conversation": conversation, "body": body}
        )

    def send_edit(self, now: float, conversation: str, target: str, body: str) -> ChannelMessage:
        return self._send_reliable(
            now, MessageType.EDIT, {"conversation": conversation, "target": target, "body": body}
        )

    def send_delete(self, now: float, conversation: str, target: str) -> ChannelMessage:
        return self._send_reliable(
            now, MessageType.DELETE, {"conversation": conversation, "target": target}
        )

    def send_reaction(
        self,
        now: float,
        conversation: str,
        target: str,
        emoji: str,
        action: ReactionAction = ReactionAction.ADD,
    ) -> ChannelMessage:
        fields = {
            "conversation": conversation,
            "target": target,
            "emoji": emoji,
            "action": ReactionAction(action),
        }
        return self._send_reliable(now, MessageType.REACTION, fields)

    def send_typing(
        self, now: float, conversation: str, state: TypingState
    ) -> ChannelMessage | None:
        """Send a typing indicator unless the throttle holds it; returns what was sent now."""
        check_identifier("conversation", conversation)
        state = TypingState(state)
        if not self._throttle.offer(conversation, state, now):
            self._report("typing_throttled", conversation=conversation, state=state.value)
            return None
        return self._send_typing_now(now, conversation, state)

    def send_ack(self, now: float, acked_ids: Sequence[str]) -> None:
        """Ack messages now, in frames of up to MAX_ACKED_IDS ids. The core acks what it
        delivers by itself; this is for acking by hand. Bad ids raise before anything."""
        for start in range(0, len(acked_ids), MAX_ACKED_IDS):
            check_fields(
                MessageType.ACK, {"acked_ids": list(acked_ids[start : start + MAX_ACKED_IDS])}
            )
        self._send_acks(now, acked_ids)

    def restore(self, now: float, state: RemoteState) -> None:
        """Take over what this agent's previous incarnation left in its store for the
        remote: its unacked messages (resent on the next channel) and where each of the
        remote's streams was delivered up to (their retransmissions are only re-acked)."""
        self._outbox.restore(state.next_seq, state.unacked, now)
        for (epoch, conversation), expected in state.expected.items():
            self._inbox.restore(epoch, conversation, expected)

    # ---- transport events ----

    def channel_opened(self, now: float, features: frozenset[str] = frozenset()) -> None:
        """A data channel is open (replacing any previous one): everything not yet acked
        is resent on it, and the periodic duties start at once. `features`: the protocol
        extensions both ends announced for its connection (docs/protocol.md §13)."""
        liveness = Liveness(now, self.config.heartbeat_interval, self.config.heartbeat_timeout)
        self.channel_closed(now)
        self._liveness = liveness
        self._batching = BATCH in features
        self._alive = True
        self._retransmit(now, self._outbox.on_reconnect(now), "reconnect")
        self._tick_at = now

    def channel_closed(self, now: float) -> None:
        """The data channel is gone (or being replaced): nothing is sent until the next
        opens. Acks not yet sent are dropped: the sender resends, and a duplicate of a
        delivered message is re-acked."""
        self._liveness = None
        self._tick_at = None
        self._acks_to_send.clear()
        self._ack_at = None
        self._batcher.take()  # held frames die with the channel, as sent ones may
        self._flush_at = None

    def frame_received(self, now: float, frame: str | bytes) -> None:
        """One data-channel message from the remote."""
        if self._liveness is not None:
            self._liveness.on_received(now)
            if not self._alive:
                self._set_alive(True)
        try:
            decoded = decode_frame(frame, batch=self._batching)
            for message in decoded.messages:
                if message.sender != self.remote_id:
                    raise ProtocolError(
                        "wrong_sender",
                        f"frame claims sender {message.sender!r} on the channel of "
                        f"{self.remote_id!r}",
                        message.id,
                    )
        except ProtocolError as error:
            self._report(
                "protocol_error", code=error.code, error=str(error), message_id=error.message_id
            )
            self._effects.append(FrameRefused(error))
            return
        if decoded.acked_ids:
            self._on_acks(now, decoded.acked_ids, None)
        for message in decoded.messages:
            self._on_message(now, message)
        if self._batching and self._acks_to_send:
            # The remote batches whenever it has a backlog, so one ack per frame received
            # is one per batch: no delay, and an isolated message is acked at once.
            self._flush_acks(now)

    def _on_message(self, now: float, message: ChannelMessage) -> None:
        if message.type is MessageType.HEARTBEAT:
            return
        if message.type is MessageType.ACK:
            self._on_acks(now, message.acked_ids, message.id)
            return
        self._report_message("received", message)
        if message.type is MessageType.TYPING:
            self._effects.append(_tuple(Dispatch, (message.type, message)))
            return
        self._on_reliable(now, message)

    def timer_fired(self, now: float) -> None:
        """The time `next_timer()` asked for has come (or passed)."""
        if self._flush_at is not None and now >= self._flush_at:
            self._flush_at = None
            held = self._batcher.take()
            if held is not None:
                self._effects.append(_tuple(Transmit, (held,)))
        if self._ack_at is not None and now >= self._ack_at:
            self._flush_acks(now)
        if self._tick_at is not None and now >= self._tick_at:
            self._tick(now)

    # ---- internals ----

    def _new(self, message_type: MessageType, **fields: Any) -> ChannelMessage:
        timestamp = int(self._wall_clock() * 1000)
        return ChannelMessage(message_type, self._new_id(), timestamp, self.local_id, **fields)

    def _report(self, kind: str, **fields: Any) -> None:
        self._effects.append(_tuple(Report, (kind, {"peer": self.remote_id, **fields})))

    def _report_message(self, kind: str, message: ChannelMessage) -> None:
        """`_report(kind, message=message)` for the message path: one dict built, not two."""
        self._effects.append(_tuple(Report, (kind, {"peer": self.remote_id, "message": message})))

    def _send_reliable(
        self, now: float, message_type: MessageType, fields: dict[str, Any]
    ) -> ChannelMessage:
        # Bad input is refused here, before it takes a sequence number; then the frame is
        # known to be valid and is serialized without a second check.
        values = check_fields(message_type, fields)
        message = self._outbox.send(self._new(message_type, **values), now)
        if self._durable:
            self._effects.append(StoreAccept(message))
        self._report_message("sent", message)
        self._transmit_frame(now, self._outbox.last_frame)
        return message

    def _send_typing_now(
        self, now: float, conversation: str, state: TypingState
    ) -> ChannelMessage | None:
        message = self._new(MessageType.TYPING, conversation=conversation, state=state)
        if self._liveness is None:
            # Typing is ephemeral: never queued, never retransmitted.
            self._report("typing_dropped", message=message, reason="not connected")
            return None
        self._report_message("sent", message)
        self._transmit(now, message)
        return message

    def _retransmit(self, now: float, messages: list[ChannelMessage], reason: str) -> None:
        for message in messages:
            self._report(
                "retransmitted",
                message=message,
                reason=reason,
                transmissions=self._outbox.transmissions(message.id),
            )
            self._transmit(now, message, checked=True)

    def _transmit(self, now: float, message: ChannelMessage, *, checked: bool = False) -> None:
        """Put one message on the channel, if one is open. `checked`: see `encode`."""
        if self._liveness is not None:
            self._transmit_frame(now, encode(message, checked=checked))

    def _transmit_frame(self, now: float, frame: str) -> None:
        """Put one message frame on the channel, if one is open."""
        liveness = self._liveness
        if liveness is None:
            return
        if not self._batching or not (self.transport_busy or self._batcher):
            # An idle transport: out at once (a lone message is a plain frame).
            self._effects.append(_tuple(Transmit, (frame,)))
            self.transport_busy = True  # it is in the data channel's buffer now
        else:
            self._hold(now, self._batcher.add(frame))
        liveness.on_sent(now)

    def _hold(self, now: float, full: str | None) -> None:
        """Something was just held (`full`: what it pushed out): a flush at `now`, the
        adapter's next turn, sends what is held then."""
        if full is not None:
            self._effects.append(_tuple(Transmit, (full,)))
        if self._flush_at is None:
            self._flush_at = now

    def _on_acks(self, now: float, acked_ids: tuple[str, ...], ack_id: str | None) -> None:
        """Acks from an `ack` frame (`ack_id`), or from a batch frame (None: no id)."""
        newly_acked = self._outbox.on_ack(acked_ids, now)
        if newly_acked and self._durable:
            self._effects.append(StoreAcked(tuple(m.id for m in newly_acked)))
        for acked in newly_acked:
            if ack_id is None:
                self._report_message("acked", acked)
            else:
                self._report("acked", message=acked, ack_id=ack_id)
            self._effects.append(_tuple(Dispatch, (MessageType.ACK, acked)))

    def _on_reliable(self, now: float, message: ChannelMessage) -> None:
        receipt = self._inbox.on_message(message)
        if receipt.duplicate:
            self._report("duplicate", message=message, reacked=bool(receipt.ack))
        if receipt.deliver and self._durable:
            self._effects.append(StoreDeliver(receipt.deliver))
        for delivered in receipt.deliver:
            self._report_message("delivered", delivered)
            self._effects.append(_tuple(Dispatch, (delivered.type, delivered)))
        if receipt.ack:
            if self._batching:
                self._acks_to_send.extend(receipt.ack)  # sent when the frame is done
            else:
                self._queue_acks(now, receipt.ack)

    def _queue_acks(self, now: float, acked_ids: tuple[str, ...]) -> None:
        busy = now - self._last_reliable_at < self.config.ack_gap
        self._last_reliable_at = now
        self._acks_to_send.extend(acked_ids)
        if len(self._acks_to_send) >= MAX_ACKED_IDS:
            self._flush_acks(now)
        elif self._ack_at is None:
            self._ack_at = now + self.config.ack_delay if busy else now

    def _flush_acks(self, now: float) -> None:
        acks, self._acks_to_send = self._acks_to_send, []
        self._ack_at = None
        self._send_acks(now, acks)

    def _send_acks(self, now: float, acked_ids: Sequence[str]) -> None:
        """Every ack frame leaves through here. The ids are valid: checked by `send_ack`,
        or taken from frames `decode` validated."""
        # An ack tells the sender to forget: what it acks must be durable first.
        if self._durable:
            self._effects.append(_COMMIT)
        if self._batching:
            if self._liveness is None:
                return
            # Acks ride in batch frames: no id, timestamp or sender of their own. They go
            # out at once on an idle transport with nothing held (read before they join
            # what is held), else with what is held on the adapter's next turn.
            idle = not (self.transport_busy or self._batcher)
            if idle and len(acked_ids) == 1:
                # The commonest case: the batcher's frame, without its bookkeeping.
                frame = encode_batch(acked_ids=acked_ids)
            else:
                for message_id in acked_ids:
                    full = self._batcher.add_ack(message_id)
                    if full is not None:
                        self._effects.append(_tuple(Transmit, (full,)))
                frame = self._batcher.take() if idle else None
            if frame is None:
                self._hold(now, None)
            else:
                self._effects.append(_tuple(Transmit, (frame,)))
                self.transport_busy = True
            self._liveness.on_sent(now)
            return
        for start in range(0, len(acked_ids), MAX_ACKED_IDS):
            chunk = tuple(acked_ids[start : start + MAX_ACKED_IDS])
            self._transmit(now, self._new(MessageType.ACK, acked_ids=chunk), checked=True)

    def _tick(self, now: float) -> None:
        self._retransmit(now, self._outbox.due(now), "timeout")
        for conversation, state in self._throttle.due(now):
            self._send_typing_now(now, conversation, state)
        liveness = self._liveness  # ticks run only while a channel is open
        if liveness.heartbeat_due(now):
            self._transmit(now, self._new(MessageType.HEARTBEAT), checked=True)
        if not liveness.alive(now):
            self._set_alive(False)
        # Heartbeats and silence are polled every half interval; a retransmission or a
        # held typing indicator falling due sooner moves the tick up to it.
        wake = now + self.config.heartbeat_interval / 2
        for deadline in (self._outbox.next_deadline(), self._throttle.next_deadline()):
            if deadline is not None and deadline < wake:
                wake = deadline
        self._tick_at = max(wake, now + MIN_TICK_STEP)

    def _set_alive(self, alive: bool) -> None:
        if alive != self._alive:
            self._alive = alive
            self._effects.append(LivenessChanged(alive))
