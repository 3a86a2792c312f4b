"""Reliable, ordered, exactly-once delivery over an unreliable channel, as a pure state machine.

One `Outbox` (sending side) and one `Inbox` (receiving side) exist per remote peer and
outlive any single data channel. Neither does I/O nor reads a clock: the caller passes
`now` (seconds, any monotonic origin) and transmits what the methods return.

The scheme (docs/protocol.md, "Reliable delivery"):
- The sender numbers reliable messages per conversation (`seq` = 0, 1, 2, ...) within its
  `epoch` (a random id chosen when its outbox is first created, so a sender that lost its
  outbox starts a new stream instead of colliding with its old sequence numbers; one
  restored from a durable store, `restore`, continues its stream).
- Each transmission carries `base`, the lowest sequence number in that conversation not yet
  acked. Everything below `base` was acked, and the receiver acks only what it delivered,
  so everything below `base` was delivered: a receiver that lost its state (restart) can
  start at `base` instead of waiting for messages nobody will resend.
- The receiver delivers a stream strictly in `seq` order, buffers what arrives early,
  acks each message when it delivers it, re-acks duplicates of delivered messages (their
  ack may have been lost) and ignores duplicates of buffered ones.
- Unacked messages are retransmitted once the retransmission timeout (RTO) has passed
  since their last transmission *and* since the last ack. The RTO follows TCP's
  (RFC 6298): at least `retransmit_after`, else the smoothed ack round trip plus four
  times its variation (round trips of resent messages are not sampled), doubled after
  each retransmission round that brought no ack, and kept doubled until a round trip is
  measured (Karn's algorithm: an ack of a resent message does not undo it). A channel
  whose acks keep coming, or come late but steadily, is slow (its send queue is long),
  not lossy: resending into that queue would only lengthen it. After a reconnect,
  everything unacked is resent, the timeout back to normal.
- The outbox is bounded, by message count and by the bytes of the frames it holds: a
  peer that never acks (absent, gone for good) must not grow it without end. A message
  that does not fit is refused (`OutboxFull`) before it is numbered; what is queued stays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from peerlab.peer.protocol import ChannelMessage, check_frame_size, encode, frame_size

MAX_RTO = 60.0
MAX_UNACKED_MESSAGES = 10_000
MAX_UNACKED_BYTES = 16 * 1024 * 1024


_new_tuple = tuple.__new__
"""Builds a NamedTuple from all its values without its Python-level `__new__`."""
_EPOCH = ChannelMessage._fields.index("epoch")
_AFTER_BASE = ChannelMessage._fields.index("base") + 1


def _sequenced(message: ChannelMessage, epoch: str, seq: int, base: int) -> ChannelMessage:
    """`message._replace(epoch=epoch, seq=seq, base=base)` at a third of its cost: the
    three fields follow each other (`ChannelMessage`), and every send makes one."""
    values = (*message[:_EPOCH], epoch, seq, base, *message[_AFTER_BASE:])
    return _new_tuple(ChannelMessage, values)


class OutboxFull(Exception):
    """A new message does not fit in the outbox until acks free room; nothing was queued."""


@dataclass(slots=True)
class _Pending:
    message: ChannelMessage
    size: int
    """Bytes of its largest frame (see `Outbox.send`), counted against `max_bytes`."""
    first_sent: float
    last_sent: float
    transmissions: int = 1


class Outbox:
    """Sender side: assigns sequence numbers, tracks acks, decides retransmissions."""

    def __init__(
        self,
        epoch: str,
        retransmit_after: float = 1.0,
        *,
        max_messages: int = MAX_UNACKED_MESSAGES,
        max_bytes: int = MAX_UNACKED_BYTES,
    ):
        self.epoch = epoch
        self.retransmit_after = retransmit_after
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._next_seq: dict[str, int] = {}
        # Insertion order is send order, which is the order retransmissions must keep.
        self._pending: dict[str, _Pending] = {}
        self._pending_bytes = 0
        # Unacked sequence numbers per conversation, lowest first: the head is `base`.
        self._unacked_seqs: dict[str, OrderedDict[int, None]] = {}
        # When the retransmission timer last restarted: an ack of something new, a
        # retransmission round, or a send into an empty outbox.
        self._timer_start = 0.0
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._backoff = 1
        self.last_frame = ""
        """The frame of the message `send` just sequenced, encoded once: what goes out."""

    def send(self, message: ChannelMessage, now: float) -> ChannelMessage:
        """Sequence a new reliable message (its epoch/seq/base are filled in) and track it.

        Raises ProtocolError `too_big` if a frame of it could be over the limit, and
        OutboxFull if it does not fit; either way before anything changes (no seq spent).
        """
        conversation = message.conversation
        seq = self._next_seq.get(conversation, 0)
        unacked = self._unacked_seqs.get(conversation)
        base = next(iter(unacked)) if unacked else seq
        sequenced = _sequenced(message, self.epoch, seq, base)
        # `base` only grows, up to `seq`: with base = seq the frame is as long as any
        # retransmission of it can be, so none is ever refused by the receiver.
        # Encoded once: the frame goes out as it is; its size with base = seq differs
        # only by the digits.
        frame = encode(sequenced, checked=True)
        size = len(frame.encode())
        if base != seq:
            size += len(str(seq)) - len(str(base))
        check_frame_size(size)
        self._check_room(size)
        self.last_frame = frame
        self._next_seq[conversation] = seq + 1
        if not self._pending:
            self._timer_start = now
        if unacked is None:
            unacked = self._unacked_seqs[conversation] = OrderedDict()
        unacked[seq] = None
        self._pending[message.id] = _Pending(sequenced, size, now, now)
        self._pending_bytes += size
        return sequenced

    def _check_room(self, size: int) -> None:
        count, held = len(self._pending), self._pending_bytes
        if count + 1 > self.max_messages or held + size > self.max_bytes:
            raise OutboxFull(
                f"outbox full: {count} unacked messages ({held} bytes) and this one "
                f"({size} bytes) would exceed {self.max_messages} messages or "
                f"{self.max_bytes} bytes; nothing was queued"
            )

    def restore(
        self, next_seq: Mapping[str, int], unacked: Iterable[ChannelMessage], now: float
    ) -> None:
        """Take over what a previous incarnation of this sender left (its store): the next
        sequence numbers, and the messages still unacked, in the order they were accepted,
        with the epoch and seq they had. They are resent on the next channel."""
        self._next_seq.update(next_seq)
        for message in unacked:
            size = frame_size(message._replace(base=message.seq))
            self._unacked_seqs.setdefault(message.conversation, OrderedDict())[message.seq] = None
            self._pending[message.id] = _Pending(message, size, now, now)
            self._pending_bytes += size
        if self._pending:
            self._timer_start = now

    def on_ack(self, acked_ids: Iterable[str], now: float) -> list[ChannelMessage]:
        """Forget acked messages; returns those acked for the first time (in send order)."""
        newly = []
        sampled = False
        for message_id in acked_ids:
            pending = self._pending.pop(message_id, None)
            if pending is None:
                continue
            message = pending.message
            del self._unacked_seqs[message.conversation][message.seq]
            self._pending_bytes -= pending.size
            if pending.transmissions == 1:  # Karn: a resent message's round trip is ambiguous
                self._sample_rtt(now - pending.first_sent)
                sampled = True
            newly.append(message)
        if newly:
            self._timer_start = now
        if sampled:
            # Karn again (RFC 6298 5.7): the backed-off timeout stays until a round trip
            # is measured. Reset by the ack of a resent message, on a path slower than
            # `retransmit_after` every message was resent once and no round trip was
            # ever measured (seen: TURN over TCP across a satellite link, 1.3 s).
            self._backoff = 1
        return newly

    def due(self, now: float) -> list[ChannelMessage]:
        """Messages to resend now (see the module doc); a round restarts the timer."""
        rto = self.rto
        if not self._pending or now < self._timer_start + rto:
            return []
        out = [self._retransmit(p, now) for p in self._pending.values() if now >= p.last_sent + rto]
        if out:
            self._timer_start = now
            self._backoff = min(self._backoff * 2, 64)
        return out

    def on_reconnect(self, now: float) -> list[ChannelMessage]:
        """Every unacked message, in send order, to put on a fresh channel, whose timer
        starts afresh: the backed-off timeout was the dead channel's."""
        self._backoff = 1
        return [self._retransmit(p, now) for p in self._pending.values()]

    def next_deadline(self) -> float | None:
        """When `due` will next return something, or None when nothing is unacked."""
        if not self._pending:
            return None
        oldest = min(p.last_sent for p in self._pending.values())
        return max(oldest, self._timer_start) + self.rto

    @property
    def rto(self) -> float:
        """The current retransmission timeout, in seconds."""
        if self._srtt is None:
            base = self.retransmit_after
        else:
            base = max(self.retransmit_after, self._srtt + 4 * self._rttvar)
        return min(base * self._backoff, MAX_RTO)

    def _sample_rtt(self, rtt: float) -> None:
        # RFC 6298, section 2.
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    @property
    def unacked(self) -> list[ChannelMessage]:
        return [p.message for p in self._pending.values()]

    @property
    def unacked_bytes(self) -> int:
        """Bytes the unacked messages' frames take (each at its largest), for `max_bytes`."""
        return self._pending_bytes

    def transmissions(self, message_id: str) -> int:
        pending = self._pending.get(message_id)
        return pending.transmissions if pending else 0

    def _retransmit(self, pending: _Pending, now: float) -> ChannelMessage:
        pending.last_sent = now
        pending.transmissions += 1
        return self._with_base(pending.message)

    def _with_base(self, message: ChannelMessage) -> ChannelMessage:
        base = next(iter(self._unacked_seqs[message.conversation]))
        return message if base == message.base else message._replace(base=base)


@dataclass(slots=True)
class _Stream:
    expected: int = 0
    buffered: dict[int, ChannelMessage] = field(default_factory=dict)


class Receipt(NamedTuple):
    """What the caller must do after `Inbox.on_message`: deliver these, ack those."""

    deliver: tuple[ChannelMessage, ...] = ()
    ack: tuple[str, ...] = ()
    duplicate: bool = False


class Inbox:
    """Receiver side: orders, deduplicates and acks one remote sender's reliable messages."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}

    def restore(self, epoch: str, conversation: str, expected: int) -> None:
        """Resume a stream where a previous incarnation of this receiver left it (its
        store): everything below `expected` was delivered and is only re-acked."""
        stream = self._streams.setdefault((epoch, conversation), _Stream())
        stream.expected = max(stream.expected, expected)

    def on_message(self, message: ChannelMessage) -> Receipt:
        key = (message.epoch, message.conversation)
        stream = self._streams.get(key)
        if stream is None:
            # Start at `base`: everything below it was delivered (by us, or by our previous
            # incarnation) and will not be sent again.
            stream = self._streams[key] = _Stream(expected=message.base)
        elif message.base > stream.expected:
            # Only a receiver that lost state can be behind `base`; a live one never is.
            stream.expected = message.base
            stream.buffered = {s: m for s, m in stream.buffered.items() if s >= message.base}
        if message.seq == stream.expected and not stream.buffered:
            # In order, nothing waiting: the common case, without the buffer's round trip.
            stream.expected += 1
            return _new_tuple(Receipt, ((message,), (message.id,), False))
        if message.seq < stream.expected:
            return Receipt(ack=(message.id,), duplicate=True)
        duplicate = message.seq in stream.buffered
        stream.buffered[message.seq] = message
        # Even a duplicate may unblock delivery: a jump of `expected` to `base` can land on
        # a message that was already buffered.
        delivered = []
        while stream.expected in stream.buffered:
            delivered.append(stream.buffered.pop(stream.expected))
            stream.expected += 1
        return Receipt(
            deliver=tuple(delivered),
            ack=tuple(m.id for m in delivered),
            duplicate=duplicate and not delivered,
        )
