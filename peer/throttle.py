"""Typing-indicator throttle: at most one indicator per window per conversation. Pure.

A "started" inside the window is dropped (the remote already shows typing). A change of
state inside the window is not dropped but deferred to the end of the window, latest state
wins, so the remote never stays stuck on "typing..." after the user stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerlab.peer.protocol import TypingState


@dataclass(slots=True)
class _Conversation:
    last_sent_at: float
    last_sent: TypingState
    pending: TypingState | None = None


class TypingThrottle:
    def __init__(self, window: float = 3.0):
        self.window = window
        self._conversations: dict[str, _Conversation] = {}

    def offer(self, conversation: str, state: TypingState, now: float) -> bool:
        """Record the wish to send `state`; True means send it now, False means held or dropped."""
        conv = self._conversations.get(conversation)
        if conv is None or now >= conv.last_sent_at + self.window:
            self._conversations[conversation] = _Conversation(now, state)
            return True
        conv.pending = None if state == conv.last_sent else state
        return False

    def due(self, now: float) -> list[tuple[str, TypingState]]:
        """Deferred indicators whose window has ended; they count as sent now."""
        out = []
        for conversation, conv in self._conversations.items():
            if conv.pending is not None and now >= conv.last_sent_at + self.window:
                out.append((conversation, conv.pending))
                conv.last_sent_at, conv.last_sent, conv.pending = now, conv.pending, None
        return out

    def next_deadline(self) -> float | None:
        """When `due` will next return something, or None."""
        times = [
            c.last_sent_at + self.window
            for c in self._conversations.values()
            if c.pending is not None
        ]
        return min(times, default=None)
