"""`FakeDataChannel`: what MessageChannel uses of an open RTCDataChannel, keeping the frames
sent, for unit tests of the adapter's own logic (never as the channel a scenario tests)."""

from __future__ import annotations

from typing import Any


class FakeDataChannel:
    readyState = "open"
    bufferedAmount = 0
    bufferedAmountLowThreshold = 0

    def __init__(self) -> None:
        self.frames: list[str] = []

    def send(self, frame: str) -> None:
        self.frames.append(frame)

    def on(self, event: str, handler: Any) -> None:
        pass

    def remove_all_listeners(self) -> None:
        pass
