"""What both benchmarked paths send, and the statistics both are summarized with.

The raw baseline and the agent carry the same message body; the agent's frames are
larger because they carry the protocol's header (id, timestamp, sender, sequencing).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

CONVERSATION = "bench"

_TEXT = "PeerLab benchmark message, the quick brown fox jumps over the lazy dog. "


@dataclass(frozen=True, slots=True)
class Workload:
    messages: int
    """Messages sent one way, as fast as the channel takes them (throughput phase)."""
    body_bytes: int
    rtt_samples: int
    """Round trips measured one at a time, after `warmup` unmeasured ones."""
    warmup: int = 200

    @property
    def round_trips(self) -> int:
        return self.warmup + self.rtt_samples

    @property
    def total_messages(self) -> int:
        """Everything the receiving end gets: the round trips, then the throughput phase."""
        return self.round_trips + self.messages

    def body(self) -> str:
        """An ASCII text body of exactly `body_bytes` bytes."""
        return (_TEXT * (self.body_bytes // len(_TEXT) + 1))[: self.body_bytes]

    def raw_frame(self) -> str:
        """The raw baseline's message: a minimal JSON text message around the same body."""
        return json.dumps({"type": "text", "body": self.body()}, separators=(",", ":"))


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` quantile (0.5 = median) by linear interpolation."""
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)
