"""The outbound queue of one signaling connection, bounded in frames and in bytes (pure).

A client that stops reading must not make the server hold an unbounded amount of
memory for it: :class:`Outbox` refuses a frame that would take it over either
bound, and the server then disconnects that client (close code 4008).
"""

from __future__ import annotations

from collections import deque


class Outbox:
    """Encoded frames waiting for one client's socket, in order.

    Sizes are ``len(text)``: the server encodes frames as ASCII-only JSON, so
    characters and bytes on the wire are the same thing.
    """

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("max_frames and max_bytes must be >= 1")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[str] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def bytes(self) -> int:
        """Bytes queued."""
        return self._bytes

    def push(self, text: str) -> bool:
        """Queue ``text``; ``False`` (and nothing queued) when it would exceed a bound."""
        if len(self._frames) >= self.max_frames or self._bytes + len(text) > self.max_bytes:
            return False
        self._frames.append(text)
        self._bytes += len(text)
        return True

    def pop(self) -> str | None:
        """The oldest frame, or ``None`` when empty."""
        if not self._frames:
            return None
        text = self._frames.popleft()
        self._bytes -= len(text)
        return text

    def clear(self) -> None:
        """Drop every queued frame (the connection is over: free them now)."""
        self._frames.clear()
        self._bytes = 0
