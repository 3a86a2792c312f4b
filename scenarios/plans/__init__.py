"""The scenario scripts. Each module has a docstring (what it proves), `PEERS` (the fewest
peers it needs), optionally `TOPOLOGY` (where each peer sits: docs/stack.md) and `BODY_S`
(about how long the body runs here: the longest start first), and `async def run(lab)`;
`PLANS` lists them in the order `all` reports them."""

from __future__ import annotations

from types import ModuleType

from peerlab.scenarios.plans import (
    cellular_trace,
    corporate_firewall,
    crash_with_unacked,
    degraded_signaling,
    full_mesh,
    lossy_data_path,
    nat_matrix,
    nat_rebinding,
    network_handover,
    partition_heal,
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
    "crash_with_unacked": crash_with_unacked,
    "nat_matrix": nat_matrix,
    "lossy_data_path": lossy_data_path,
    "partition_heal": partition_heal,
    "network_handover": network_handover,
    "nat_rebinding": nat_rebinding,
    "corporate_firewall": corporate_firewall,
    "cellular_trace": cellular_trace,
}
