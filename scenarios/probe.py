"""Measuring a peer's access link from its own network namespace: `python -m
peerlab.router.probe stun` (docs/shaper.md) sends STUN binding requests to coturn through
the peer's router and reports round trips, losses, duplicates, reordering and the mapped
address (the NAT proof's own run of the probe is in scenarios/nat_check.py).

The probe runs in a helper container that shares the peer's network namespace (same
addresses, same router) but not its CPU cgroup, and has the network's CPU weight. Run in
the peer's container (`docker exec`), it shared the agent's cgroup, and on a busy machine
the scheduler held the whole container back after the agent's CPU bursts: a peer that no
fault touched measured +40 ms (median) in `make test`, three times at the same spot.

This is how the lab proves that a fault took effect (and that the peers it should not
touch are untouched): the measurement runs outside the agents, on the real path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

from peerlab.scenarios.stack import Containers, StackError
from peerlab.scenarios.topology import NETWORK_CPU_SHARES

PROBE_TIMEOUT = 60.0
_helpers = itertools.count()
"""Tells apart the helper containers of probes that run at once."""


class ProbeError(AssertionError):
    pass


@dataclass(frozen=True)
class ProbeResult:
    peer: str
    sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    rtt_p50: float | None
    rtt_p95: float | None
    mapped: str | None
    rtt_min: float | None = None

    @property
    def loss(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    @classmethod
    def from_json(cls, peer: str, obj: dict[str, Any]) -> ProbeResult:
        rtt = obj.get("rtt_ms") or {}
        return cls(
            peer,
            obj["sent"],
            obj["received"],
            obj["lost"],
            obj["duplicates"],
            obj["reordered"],
            rtt.get("p50"),
            rtt.get("p95"),
            obj.get("mapped"),
            rtt.get("min"),
        )


async def run_probe(containers: Containers, peer: str, args: list[str]) -> str:
    """`python -m peerlab.router.probe ARGS` in `peer`'s network namespace (its addresses,
    its router), from a helper container of the peer's image with the network's CPU
    weight: the last line it printed, or ProbeError."""
    try:
        target = await asyncio.to_thread(containers.container, peer)
        text = await containers.run_helper(
            f"probe-{peer}-{next(_helpers)}",
            target.attrs["Image"],
            ["python", "-m", "peerlab.router.probe", *args],
            timeout=PROBE_TIMEOUT,
            network_mode=f"container:{target.id}",
            cpu_shares=NETWORK_CPU_SHARES,
        )
    except StackError as exc:
        raise ProbeError(f"{args[0]} probe in {peer}: {exc}") from None
    lines = text.strip().splitlines()
    if not lines:
        raise ProbeError(f"{args[0]} probe in {peer} printed nothing")
    return lines[-1]


async def stun_probe(
    containers: Containers,
    peer: str,
    server: str,
    *,
    count: int = 40,
    interval: float = 0.01,
    timeout: float = 1.0,
) -> ProbeResult:
    """The STUN probe's measurement of `peer`'s path to `server` (run_probe)."""
    args = ["stun", "--server", server, "--count", str(count), "--interval", str(interval),
            "--timeout", str(timeout)]  # fmt: skip
    line = await run_probe(containers, peer, args)
    try:
        return ProbeResult.from_json(peer, json.loads(line))
    except (ValueError, KeyError) as exc:
        raise ProbeError(f"STUN probe in {peer} printed {line[-300:]!r}: {exc}") from None
