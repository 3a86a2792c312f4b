"""Token bucket used to rate-limit the frames of one signaling connection.

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
