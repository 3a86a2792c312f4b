"""Application heartbeat bookkeeping for one data channel. Pure: time is passed in.

aiortc has no "disconnected" state and notices a dead path only when ICE consent fails
(about 30 s). Each side therefore sends a heartbeat whenever it has sent nothing for
`interval` seconds, and declares the link dead when it has received nothing at all for
`timeout` seconds. Any received frame counts as a sign of life, so a busy link sends no
heartbeats. Checked every `interval`, a dead link is reported within `timeout + interval`.
"""

from __future__ import annotations


class Liveness:
    def __init__(self, now: float, interval: float = 0.5, timeout: float = 2.5):
        if not 0 < interval < timeout:
            raise ValueError("heartbeat interval must be positive and shorter than the timeout")
        self.interval = interval
        self.timeout = timeout
        self._last_received = now
        self._last_sent = now

    def on_received(self, now: float) -> None:
        self._last_received = now

    def on_sent(self, now: float) -> None:
        self._last_sent = now

    def heartbeat_due(self, now: float) -> bool:
        return now - self._last_sent >= self.interval

    def alive(self, now: float) -> bool:
        return now - self._last_received < self.timeout
