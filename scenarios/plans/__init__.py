"""The scenario scripts. Each module has a docstring (what it proves), `PEERS` (the fewest
peers it needs) and `async def run(lab)`; `PLANS` lists them in the order `all` runs."""

from __future__ import annotations

from types import ModuleType

from scenarios.plans import (
    degraded_signaling,
    full_mesh,
    peer_killed,
    signaling_outage,
    turn_tcp_relay,
    two_peers,
)

PLANS: dict[str, ModuleType] = {
    "two_peers": two_peers,
    "full_mesh": full_mesh,
    "degraded_signaling": degraded_signaling,
    "turn_tcp_relay": turn_tcp_relay,
    "signaling_outage": signaling_outage,
    "peer_killed": peer_killed,
}
