"""Rate limits of the signaling server: frames per connection, and log lines per kind.

Pure: the caller passes the current (monotonic) time, so tests need no clock.
"""

from __future__ import annotations


class TokenBucket:
    """Allow ``rate`` events per second on average, with bursts up to ``burst``.

    The bucket starts full.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now

    def allow(self, now: float) -> bool:
        """Take one token if available; return whether the event is allowed."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class LogThrottle:
    """At most one log line per ``interval`` seconds for each kind of event.

    A line that is let through reports how many of its kind were suppressed
    since the previous one, so that a flood (a failing ``accept()``, a crowd of
    refused connections) costs one line per interval instead of one per event.
    Callers must keep the set of kinds small (error names, event names), not
    derive kinds from client input.
    """

    def __init__(self, interval: float) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, kind: str, now: float) -> int | None:
        """``None`` to suppress this line, else how many of its kind were suppressed."""
        last = self._last.get(kind)
        if last is not None and 0 <= now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)

    def drain(self) -> dict[str, int]:
        """The suppressed counts not reported yet (e.g. at shutdown); resets them."""
        pending, self._suppressed = self._suppressed, {}
        return pending
