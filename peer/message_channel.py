"""`MessageChannel`: typed, reliable messaging with one remote peer over RTCDataChannels.

The messaging logic — sequencing, acks and when to send them, retransmissions,
heartbeats, the typing throttle — is the pure `LinkCore` (peer/link_core.py). This class
only moves data between it and asyncio: it hands the core the application's sends, the
frames of the current data channel and the expiries of its one timer, carries out the
effects the core answers with (frames onto the channel, store writes, observer events,
handler calls), in order, and re-arms the timer at the core's `next_timer()`.

One MessageChannel lives as long as the relationship with the remote peer; data channels
come and go underneath it (`attach`/`detach`), and whatever was not acked on the old one
is resent on the new one.

Everything that happens is reported to the `observer` as (kind, fields, at) so the agent
can log it, `at` being the `now` the core decided it at; application code subscribes to
delivered messages with `on(MessageType, handler)`.
With a `Store` (peer/store.py), each accepted message and each delivery is recorded in it
before it is reported, and acks go out only once what they ack is committed: the core
puts the store's effects first, and each call's effects are applied before it returns.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from peerlab.peer.link_core import (
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
from peerlab.peer.protocol import (
    ChannelMessage,
    MessageType,
    ProtocolError,
    ReactionAction,
    TypingState,
)
from peerlab.peer.store import RemoteState, Store

Handler = Callable[[ChannelMessage], Any]
Observer = Callable[[str, dict[str, Any], float | None], None]
"""Told `(kind, fields, at)` of everything that happens (the agent logs it as an event):
`at` is when it happened on the monotonic clock, None for "now". A MessageChannel gives
the `now` of the core call that reported it, the instant the link's logic decided (a
message sent, a typing indicator let through): its report comes a little later."""


_DEFAULTS = ChannelConfig()


def _random_id() -> str:
    return os.urandom(16).hex()


class MessageChannel:
    def __init__(
        self,
        local_id: str,
        remote_id: str,
        *,
        epoch: str,
        config: ChannelConfig = _DEFAULTS,
        observer: Observer | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.local_id = local_id
        self.remote_id = remote_id
        self.config = config
        self._report: Observer = observer or (lambda kind, fields, at: None)
        self._store = store
        self._clock = clock
        self._core = LinkCore(
            local_id,
            remote_id,
            epoch=epoch,
            config=config,
            wall_clock=wall_clock,
            new_id=_random_id,
            durable=store is not None,
        )
        self._handlers: dict[MessageType, list[Handler]] = {}
        self._error_handlers: list[Callable[[ProtocolError], Any]] = []
        self._channel: RTCDataChannel | None = None
        self._on_liveness: Callable[[bool], None] = lambda alive: None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        """The core's `next_timer()` the timer is armed for."""
        self._soon: asyncio.Handle | None = None
        """A turn of the loop asked for by a `next_timer()` that is already due (the core
        holding frames to batch): no timer for it, and the armed one stays."""
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
    # (`too_big`), and OutboxFull when the outbox is full; nothing is queued then. What
    # they accept is in the store (if any) when they return.

    def send_text(self, conversation: str, body: str) -> ChannelMessage:
        now = self._now()
        message = self._core.send_text(now, conversation, body)
        self._apply(now)
        return message

    def send_edit(self, conversation: str, target: str, body: str) -> ChannelMessage:
        now = self._now()
        message = self._core.send_edit(now, conversation, target, body)
        self._apply(now)
        return message

    def send_delete(self, conversation: str, target: str) -> ChannelMessage:
        now = self._now()
        message = self._core.send_delete(now, conversation, target)
        self._apply(now)
        return message

    def send_reaction(
        self,
        conversation: str,
        target: str,
        emoji: str,
        action: ReactionAction = ReactionAction.ADD,
    ) -> ChannelMessage:
        now = self._now()
        message = self._core.send_reaction(now, conversation, target, emoji, action)
        self._apply(now)
        return message

    def send_typing(self, conversation: str, state: TypingState) -> ChannelMessage | None:
        """Send a typing indicator unless the throttle holds it; returns what was sent now."""
        now = self._now()
        message = self._core.send_typing(now, conversation, state)
        self._apply(now)
        return message

    def send_ack(self, *acked_ids: str) -> None:
        """Ack messages now; several ids share frames of up to MAX_ACKED_IDS ids.

        The channel acks what it delivers by itself; this is for acking by hand.
        """
        now = self._now()
        self._core.send_ack(now, acked_ids)
        self._apply(now)

    async def drain(self) -> None:
        """Wait until the data channel can take more (backpressure for bulk senders)."""
        while self._channel is not None and self._channel.bufferedAmount > self.config.buffered_low:
            self._drained.clear()
            await self._drained.wait()

    @property
    def unacked(self) -> list[ChannelMessage]:
        return self._core.unacked

    @property
    def attached(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def restore(self, state: RemoteState) -> None:
        """Take over what this agent's previous incarnation left in its store for the
        remote: its unacked messages (resent on the next channel) and where each of the
        remote's streams was delivered up to (their retransmissions are only re-acked)."""
        self._core.restore(self._clock(), state)

    # ---- transport side, driven by the connection manager ----

    def attach(
        self,
        channel: RTCDataChannel,
        on_liveness: Callable[[bool], None],
        features: frozenset[str] = frozenset(),
    ) -> None:
        """Start using an open data channel; resends everything not yet acked. `features`:
        the protocol extensions both ends announced for its connection (§13)."""
        self.detach()
        self._channel = channel
        self._on_liveness = on_liveness
        channel.bufferedAmountLowThreshold = self.config.buffered_low
        channel.on("message", self._on_frame)
        channel.on("bufferedamountlow", self._drained.set)
        now = self._clock()
        self._core.channel_opened(now, features)
        self._apply(now)

    def detach(self) -> None:
        """Stop using the current data channel (it is closing or the link is being replaced)."""
        if self._channel is not None:
            self._channel.remove_all_listeners()
            self._channel = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        now = self._clock()
        self._core.channel_closed(now)
        self._apply(now)
        self._drained.set()

    # ---- moving data ----

    def _now(self) -> float:
        """Before a core call: tell it whether the transport is busy; returns the `now`
        to call it with."""
        channel = self._channel
        self._core.transport_busy = channel is not None and channel.bufferedAmount > 0
        return self._clock()

    def _on_frame(self, frame: str | bytes) -> None:
        self.frames_received += 1
        now = self._now()
        self._core.frame_received(now, frame)
        self._apply(now)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._fire()

    def _on_soon(self) -> None:
        self._soon = None
        self._fire()

    def _fire(self) -> None:
        now = self._now()
        self._core.timer_fired(now)
        self._apply(now)

    def _apply(self, now: float) -> None:
        """Carry out the effects of the core call just made at `now`, in order, then re-arm
        the timer.

        The effects are taken before any is applied: a handler that calls back into this
        channel (a reply sent from a delivery) gets its own effects applied within its
        call, and these go on after it."""
        try:
            for effect in self._core.take_effects():
                # The three commonest first, by type: a match tries its cases in turn.
                kind = type(effect)
                if kind is Report:
                    self._report(effect.kind, effect.fields, now)
                elif kind is Transmit:
                    channel = self._channel
                    # The channel can close before the manager detaches it.
                    if channel is not None and channel.readyState == "open":
                        channel.send(effect.frame)
                        self.frames_sent += 1
                elif kind is Dispatch:
                    for handler in self._handlers.get(effect.message_type, ()):
                        handler(effect.message)
                else:
                    self._apply_other(effect)
        finally:
            self._arm_timer()

    def _apply_other(self, effect: Effect) -> None:
        """The rarer effects: the store's, liveness and refused frames."""
        match effect:
            case StoreAccept(message):
                if self._store is not None:
                    self._store.accept(self.remote_id, message)
            case StoreDeliver(messages):
                if self._store is not None:
                    self._store.deliver(self.remote_id, messages)
            case StoreAcked(message_ids):
                if self._store is not None:
                    self._store.acked(message_ids)
            case StoreCommit():
                if self._store is not None:
                    self._store.commit()
            case LivenessChanged(alive):
                self._on_liveness(alive)
            case FrameRefused(error):
                for handler in self._error_handlers:
                    handler(error)

    def _arm_timer(self) -> None:
        when = self._core.next_timer()
        if when == self._timer_at:
            return
        if when is not None and when <= self._clock():
            if self._soon is None:
                self._soon = asyncio.get_running_loop().call_soon(self._on_soon)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            delay = when - self._clock()
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = when
