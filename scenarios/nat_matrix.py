"""The NAT matrix: for every pair of NAT types, with and without TURN, whether two
agents connect and over which kind of path — the outcome theory predicts (RFC 4787,
RFC 8445) next to the one measured.

Pure: `expected_outcome` is the theory, `measured_route` reads the candidate pairs both
ends report, `render_markdown` prints the table. `matrix_topology` lays out one stack
that covers every pair: two peers per NAT type, each behind its own router.

Routes: `host` — host candidates on both ends (no NAT between them); `srflx` — through
a NAT's mapping without a relay (a server- or peer-reflexive candidate on either end);
`relay` — through TURN; `-` — not connected. With TURN, a relay is accepted where the
theory's direct path exists too (`Row.relay_won_the_race`: aioice's aggressive
nomination); whether the two connect at all must match exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peerlab.scenarios.topology import NAT_TYPES, Topology

ENDPOINT_INDEPENDENT = ("full-cone", "address-restricted", "port-restricted")
"""NATs whose mapping does not depend on the destination (RFC 4787 EIM)."""


@dataclass(frozen=True)
class Outcome:
    connected: bool
    route: str  # host | srflx | relay | -

    def __str__(self) -> str:
        return self.route if self.connected else "-"


def _direct_works(a: str, b: str) -> bool:
    """Can two agents behind these NATs reach each other over UDP without a relay?"""
    if "udp-blocked" in (a, b):
        return False
    if "none" in (a, b) or "full-cone" in (a, b):
        # A public address, or a NAT that lets anyone in once a mapping exists: the
        # other side's checks get through.
        return True
    if a == "symmetric" and b == "symmetric":
        return False
    if "symmetric" in (a, b):
        other = b if a == "symmetric" else a
        # The symmetric side's checks come from a new port; only a filter that checks
        # the address alone (address-restricted) lets them in after its own checks went
        # to that address.
        return other == "address-restricted"
    return a in ENDPOINT_INDEPENDENT and b in ENDPOINT_INDEPENDENT


def expected_outcome(a: str, b: str, *, turn: bool, same_lan: bool = False) -> Outcome:
    for nat in (a, b):
        if nat not in NAT_TYPES:
            raise ValueError(f"unknown NAT type {nat!r}; one of {list(NAT_TYPES)}")
    if same_lan or (a == "none" and b == "none"):
        return Outcome(True, "host")
    if _direct_works(a, b):
        return Outcome(True, "srflx")
    return Outcome(True, "relay") if turn else Outcome(False, "-")


def without_turn(topology: Topology, a: str, b: str) -> str | None:
    """Why peers `a` and `b` of this topology cannot connect without a TURN relay, or
    None when theory says they can."""
    lan = topology.lan_of(a)
    same_lan = lan is not None and lan is topology.lan_of(b)
    nat_a, nat_b = topology.nat_of(a), topology.nat_of(b)
    if expected_outcome(nat_a, nat_b, turn=False, same_lan=same_lan).connected:
        return None
    return (
        f"{a} ({nat_a}) and {b} ({nat_b}) cannot connect without a TURN relay "
        "(RFC 4787; the NAT table in docs/stack.md)"
    )


def measured_route(pairs: list[Mapping[str, Any] | None]) -> Outcome:
    """The route of a link from the candidate pairs its ends report (None: no pair)."""
    if not pairs or any(p is None for p in pairs):
        return Outcome(False, "-")
    kinds = {p[end]["type"] for p in pairs for end in ("local", "remote")}  # type: ignore[index]
    if "relay" in kinds:
        return Outcome(True, "relay")
    if kinds & {"srflx", "prflx"}:
        return Outcome(True, "srflx")
    return Outcome(True, "host")


def describe_pairs(pairs: list[Mapping[str, Any] | None]) -> str:
    """e.g. `host→srflx / host→host`: each end's local→remote candidate types."""
    return " / ".join(f"{p['local']['type']}→{p['remote']['type']}" if p else "none" for p in pairs)


# ---- the stack that covers every pair ----


def matrix_peers(types: tuple[str, ...] = NAT_TYPES) -> dict[str, str]:
    """Two peers per NAT type, numbered in order: {"peer1": "none", "peer2": "none", ...}."""
    return {f"peer{i + 1}": types[i // 2] for i in range(2 * len(types))}


def matrix_topology(peers: Mapping[str, str]) -> dict[str, Any]:
    """Each NATed peer behind a router of its own; `none` peers on the internet. The first
    router of each UDP-passing type hairpins, the second does not: the lab's start proves
    both settings on every NAT type (hairpinning does not change a pair's outcome: no
    pair's peers share a router)."""
    placement: dict[str, Any] = {}
    hairpinning: set[str] = set()
    for peer, nat in peers.items():
        if nat == "none":
            placement[peer] = "internet"
            continue
        hairpin = nat != "udp-blocked" and nat not in hairpinning
        if hairpin:
            hairpinning.add(nat)
        placement[peer] = {"nat": nat, "hairpin": hairpin}
    return {"peers": placement}


def matrix_pairs(peers: Mapping[str, str]) -> list[tuple[str, str]]:
    """One pair of peers per unordered pair of NAT types (same type: its two peers)."""
    first: dict[str, list[str]] = {}
    for peer, nat in peers.items():
        first.setdefault(nat, []).append(peer)
    chosen = []
    for a, b in itertools.combinations_with_replacement(list(first), 2):
        chosen.append((first[a][0], first[b][1]) if a == b else (first[a][0], first[b][0]))
    return chosen


# ---- the table ----


@dataclass(frozen=True)
class Row:
    nat_a: str
    nat_b: str
    turn: bool
    expected: Outcome
    measured: Outcome
    detail: str

    @property
    def matches(self) -> bool:
        return self.exact or self.relay_won_the_race

    @property
    def exact(self) -> bool:
        return (self.expected.connected, self.expected.route) == (
            self.measured.connected,
            self.measured.route,
        )

    @property
    def relay_won_the_race(self) -> bool:
        """aioice nominates aggressively: the first pair whose check succeeds carries the
        data. With TURN, a relay pair can succeed before a direct one whose first checks
        the NATs dropped (the hole was not punched yet), so a relay is a legitimate
        outcome wherever a direct path also exists — never a missing connection."""
        return (
            self.turn
            and self.expected.connected
            and self.measured.connected
            and self.measured.route == "relay"
        )


def render_markdown(rows: list[Row]) -> str:
    lines = [
        "| NAT A | NAT B | TURN | expected | measured | candidate pairs (A / B) | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.nat_a} | {r.nat_b} | {'yes' if r.turn else 'no'} | {r.expected} | "
            f"{r.measured} | {r.detail} | {_verdict(r)} |"
        )
    return "\n".join(lines)


def _verdict(row: Row) -> str:
    if row.exact:
        return "ok"
    return "ok: relay nominated first" if row.relay_won_the_race else "**MISMATCH**"
