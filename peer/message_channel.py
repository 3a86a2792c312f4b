"""`MessageChannel`: typed, reliable messaging with one remote peer over RTCDataChannels.

It joins the pure protocol pieces (codec, Outbox/Inbox, typing throttle, liveness) to a
data channel. One MessageChannel lives as long as the relationship with the remote peer;
data channels come and go underneath it (`attach`/`detach`), and whatever was not acked
on the old one is resent on the new one.

Everything that happens is reported to the `observer` as (kind, fields) so the agent can
log it; application code subscribes to delivered messages with `on(MessageType, handler)`.
With a `Store` (peer/store.py), each accepted message and each delivery is recorded in it
before it is reported, and acks go out only once what they ack is committed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel

from peerlab.peer.liveness import Liveness
from peerlab.peer.protocol import (
    MAX_ACKED_IDS,
    ChannelMessage,
    MessageType,
    ProtocolError,
    ReactionAction,
    TypingState,
    check_fields,
    check_identifier,
    decode,
    encode,
)
from peerlab.peer.reliability import MAX_UNACKED_BYTES, MAX_UNACKED_MESSAGES, Inbox, Outbox
from peerlab.peer.store import RemoteState, Store
from peerlab.peer.throttle import TypingThrottle

Handler = Callable[[ChannelMessage], Any]
Observer = Callable[..., None]


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
    """`drain()` waits until the data channel's send buffer is below this many bytes."""
    ack_gap: float = 0.0005
    ack_delay: float = 0.01
    """A message arriving within `ack_gap` of the previous one means a busy channel: its ack
    waits up to `ack_delay` to share a frame with the next ones. An isolated message is
    acked at once, so round trips stay short."""


class MessageChannel:
    def __init__(
        self,
        local_id: str,
        remote_id: str,
        *,
        epoch: str,
        config: ChannelConfig = ChannelConfig(),
        observer: Observer | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.local_id = local_id
        self.remote_id = remote_id
        self.config = config
        self._observe = observer or (lambda kind, **fields: None)
        self._store = store
        self._clock = clock
        self._wall_clock = wall_clock
        self._outbox = Outbox(
            epoch,
            config.retransmit_after,
            max_messages=config.outbox_max_messages,
            max_bytes=config.outbox_max_bytes,
        )
        self._inbox = Inbox()
        self._throttle = TypingThrottle(config.typing_window)
        self._handlers: dict[MessageType, list[Handler]] = {}
        self._error_handlers: list[Callable[[ProtocolError], Any]] = []
        self._channel: RTCDataChannel | None = None
        self._liveness: Liveness | None = None
        self._alive = False
        self._on_liveness: Callable[[bool], None] = lambda alive: None
        self._timer: asyncio.Task | None = None
        self._acks_to_send: list[str] = []
        self._ack_flush: asyncio.Handle | None = None
        self._last_reliable_at = float("-inf")
        self._drained = asyncio.Event()
        self.frames_sent = 0
        self.frames_received = 0
        """Data-channel frames this channel put on the wire and took off it (all kinds:
        messages, acks, heartbeats, typing), for the benchmark's frames per message."""

    # ---- application API ----

    def on(self, message_type: MessageType, handler: Handler) -> None:
        """Call `handler(message)` for each delivered message of this type.

        For `MessageType.ACK` the handler receives the original message that was acked.
        """
        self._handlers.setdefault(MessageType(message_type), []).append(handler)

    def on_error(self, handler: Callable[[ProtocolError], Any]) -> None:
        self._error_handlers.append(handler)

    # The reliable send_* raise ProtocolError for bad input or a frame over the size limit
    # (`too_big`), and OutboxFull when the outbox is full; nothing is queued then.

    def send_text(self, conversation: str, body: str) -> ChannelMessage:
        return self._send_reliable(MessageType.TEXT, conversation, body=body)

    def send_edit(self, conversation: str, target: str, body: str) -> ChannelMessage:
        return self._send_reliable(MessageType.EDIT, conversation, target=target, body=body)

    def send_delete(self, conversation: str, target: str) -> ChannelMessage:
        return self._send_reliable(MessageType.DELETE, conversation, target=target)

    def send_reaction(
        self,
        conversation: str,
        target: str,
        emoji: str,
        action: ReactionAction = ReactionAction.ADD,
    ) -> ChannelMessage:
        return self._send_reliable(
            MessageType.REACTION,
            conversation,
            target=target,
            emoji=emoji,
            action=ReactionAction(action),
        )

    def send_typing(self, conversation: str, state: TypingState) -> ChannelMessage | None:
        """Send a typing indicator unless the throttle holds it; returns what was sent now."""
        check_identifier("conversation", conversation)
        state = TypingState(state)
        if not self._throttle.offer(conversation, state, self._clock()):
            self._observe("typing_throttled", conversation=conversation, state=state.value)
            return None
        return self._send_typing_now(conversation, state)

    def send_ack(self, *acked_ids: str) -> None:
        """Ack messages now; several ids share frames of up to MAX_ACKED_IDS ids.

        The channel acks what it delivers by itself; this is for acking by hand.
        """
        self._ack(acked_ids, checked=False)

    async def drain(self) -> None:
        """Wait until the data channel can take more (backpressure for bulk senders)."""
        while self._channel is not None and self._channel.bufferedAmount > self.config.buffered_low:
            self._drained.clear()
            await self._drained.wait()

    @property
    def unacked(self) -> list[ChannelMessage]:
        return self._outbox.unacked

    @property
    def attached(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def restore(self, state: RemoteState) -> None:
        """Take over what this agent's previous incarnation left in its store for the
        remote: its unacked messages (resent on the next channel) and where each of the
        remote's streams was delivered up to (their retransmissions are only re-acked)."""
        self._outbox.restore(state.next_seq, state.unacked, self._clock())
        for (epoch, conversation), expected in state.expected.items():
            self._inbox.restore(epoch, conversation, expected)

    # ---- transport side, driven by the connection manager ----

    def attach(self, channel: RTCDataChannel, on_liveness: Callable[[bool], None]) -> None:
        """Start using an open data channel; resends everything not yet acked."""
        self.detach()
        self._channel = channel
        self._on_liveness = on_liveness
        now = self._clock()
        self._liveness = Liveness(
            now, self.config.heartbeat_interval, self.config.heartbeat_timeout
        )
        self._alive = True
        channel.bufferedAmountLowThreshold = self.config.buffered_low
        channel.on("message", self._on_frame)
        channel.on("bufferedamountlow", self._drained.set)
        self._retransmit(self._outbox.on_reconnect(now), "reconnect")
        self._timer = asyncio.get_running_loop().create_task(self._tick_forever())

    def detach(self) -> None:
        """Stop using the current data channel (it is closing or the link is being replaced)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._channel is not None:
            self._channel.remove_all_listeners()
            self._channel = None
        self._liveness = None
        if self._ack_flush is not None:
            self._ack_flush.cancel()
            self._ack_flush = None
        self._acks_to_send.clear()  # the sender resends, and we re-ack on a duplicate
        self._drained.set()

    # ---- internals ----

    def _new(self, message_type: MessageType, **fields: Any) -> ChannelMessage:
        return ChannelMessage(
            type=message_type,
            id=uuid.uuid4().hex,
            timestamp=int(self._wall_clock() * 1000),
            sender=self.local_id,
            **fields,
        )

    def _send_reliable(
        self, message_type: MessageType, conversation: str, **fields: Any
    ) -> ChannelMessage:
        # Bad input is refused here, before it takes a sequence number; then the frame is
        # known to be valid and is serialized without a second check.
        values = check_fields(message_type, {"conversation": conversation, **fields})
        message = self._outbox.send(self._new(message_type, **values), self._clock())
        if self._store is not None:
            self._store.accept(self.remote_id, message)
        self._observe("sent", message=message)
        self._transmit(message, checked=True)
        return message

    def _send_typing_now(self, conversation: str, state: TypingState) -> ChannelMessage | None:
        message = self._new(MessageType.TYPING, conversation=conversation, state=state)
        if not self.attached:
            # Typing is ephemeral: never queued, never retransmitted.
            self._observe("typing_dropped", message=message, reason="not connected")
            return None
        self._observe("sent", message=message)
        self._transmit(message)
        return message

    def _retransmit(self, messages: list[ChannelMessage], reason: str) -> None:
        for message in messages:
            self._observe(
                "retransmitted",
                message=message,
                reason=reason,
                transmissions=self._outbox.transmissions(message.id),
            )
            self._transmit(message, checked=True)

    def _ack(self, acked_ids: tuple[str, ...] | list[str], *, checked: bool) -> None:
        if self._store is not None:
            # An ack tells the sender to forget: what it acks must be durable first.
            self._store.commit()
        for start in range(0, len(acked_ids), MAX_ACKED_IDS):
            chunk = tuple(acked_ids[start : start + MAX_ACKED_IDS])
            self._transmit(self._new(MessageType.ACK, acked_ids=chunk), checked=checked)

    def _transmit(self, message: ChannelMessage, *, checked: bool = False) -> None:
        """Put one frame on the channel (if attached). `checked`: see `encode`."""
        if not self.attached:
            return
        self._channel.send(encode(message, checked=checked))
        self.frames_sent += 1
        if self._liveness is not None:
            self._liveness.on_sent(self._clock())

    def _on_frame(self, frame: str | bytes) -> None:
        now = self._clock()
        self.frames_received += 1
        if self._liveness is not None:
            self._liveness.on_received(now)
            self._set_alive(True)
        try:
            message = decode(frame)
            if message.sender != self.remote_id:
                raise ProtocolError(
                    "wrong_sender",
                    f"frame claims sender {message.sender!r} on the channel of {self.remote_id!r}",
                    message.id,
                )
        except ProtocolError as error:
            self._observe(
                "protocol_error", code=error.code, error=str(error), message_id=error.message_id
            )
            for handler in self._error_handlers:
                handler(error)
            return
        if message.type is MessageType.HEARTBEAT:
            return
        if message.type is MessageType.ACK:
            newly_acked = self._outbox.on_ack(message.acked_ids, now)
            if self._store is not None and newly_acked:
                self._store.acked(m.id for m in newly_acked)
            for acked in newly_acked:
                self._observe("acked", message=acked, ack_id=message.id)
                self._dispatch(MessageType.ACK, acked)
            return
        self._observe("received", message=message)
        if message.type is MessageType.TYPING:
            self._dispatch(message.type, message)
            return
        receipt = self._inbox.on_message(message)
        if receipt.duplicate:
            self._observe("duplicate", message=message, reacked=bool(receipt.ack))
        if self._store is not None and receipt.deliver:
            self._store.deliver(self.remote_id, receipt.deliver)
        for delivered in receipt.deliver:
            self._observe("delivered", message=delivered)
            self._dispatch(delivered.type, delivered)
        if receipt.ack:
            self._queue_acks(receipt.ack, now)

    def _queue_acks(self, acked_ids: tuple[str, ...], now: float) -> None:
        busy = now - self._last_reliable_at < self.config.ack_gap
        self._last_reliable_at = now
        self._acks_to_send.extend(acked_ids)
        if len(self._acks_to_send) >= MAX_ACKED_IDS:
            self._flush_acks()
        elif self._ack_flush is None:
            loop = asyncio.get_running_loop()
            self._ack_flush = (
                loop.call_later(self.config.ack_delay, self._flush_acks)
                if busy
                else loop.call_soon(self._flush_acks)
            )

    def _flush_acks(self) -> None:
        if self._ack_flush is not None:
            self._ack_flush.cancel()
            self._ack_flush = None
        acks, self._acks_to_send = self._acks_to_send, []
        # The ids come from frames `decode` validated.
        self._ack(acks, checked=True)

    def _dispatch(self, message_type: MessageType, message: ChannelMessage) -> None:
        for handler in self._handlers.get(message_type, ()):
            handler(message)

    def _set_alive(self, alive: bool) -> None:
        if alive != self._alive:
            self._alive = alive
            self._on_liveness(alive)

    async def _tick_forever(self) -> None:
        interval = self.config.heartbeat_interval
        while True:
            now = self._clock()
            self._tick(now)
            deadlines = [
                d
                for d in (self._outbox.next_deadline(), self._throttle.next_deadline())
                if d is not None
            ]
            wake = min([now + interval / 2, *deadlines])
            await asyncio.sleep(max(0.005, wake - self._clock()))

    def _tick(self, now: float) -> None:
        self._retransmit(self._outbox.due(now), "timeout")
        for conversation, state in self._throttle.due(now):
            self._send_typing_now(conversation, state)
        liveness = self._liveness
        if liveness is None:
            return
        if liveness.heartbeat_due(now):
            self._transmit(self._new(MessageType.HEARTBEAT), checked=True)
        if not liveness.alive(now):
            self._set_alive(False)
