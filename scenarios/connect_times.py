"""Connect times of a finished run, read from the agents' event logs: for each link an
agent offered, from its `offer_sent` to the `state` event that says the link is
`connected` (the channel is open), through signaling, STUN and ICE.

Each attempt counts on its own: when an attempt fails and the agent offers again, the time
runs from the offer that succeeded. Times come from one agent's monotonic clock, so an
offer made before the agent restarted (a `started` event) is not paired with anything
after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def connect_times(events_by_agent: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[float]:
    """Seconds from offer to open channel, one per successful offer, over all agents."""
    times: list[float] = []
    for events in events_by_agent.values():
        offered: dict[str, float] = {}  # remote peer -> t_mono of the latest offer
        for event in events:
            kind, peer, t = event.get("kind"), event.get("peer"), event.get("t_mono")
            if kind == "started":
                offered.clear()
            elif not isinstance(peer, str) or not isinstance(t, int | float):
                continue
            elif kind == "offer_sent":
                offered[peer] = t
            elif kind == "state" and event.get("new") == "connected" and peer in offered:
                times.append(t - offered.pop(peer))
    return times


@dataclass(frozen=True, slots=True)
class ConnectSummary:
    count: int
    p50_ms: float
    p95_ms: float


def summarize(times: list[float]) -> ConnectSummary | None:
    """p50 and p95 by nearest rank (a value that was measured); None without samples."""
    if not times:
        return None
    ordered = sorted(times)

    def rank(fraction: float) -> float:
        return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)] * 1000

    return ConnectSummary(len(ordered), rank(0.5), rank(0.95))
