"""Every peer connects to every other (full mesh) and all pairs chat at once, in both
directions; every pair's history is identical on both ends. peer1 and peer2 share one
home LAN behind a port-restricted NAT (hairpinning off), the other peers sit on the
internet: the two neighbours connect over their LAN addresses, and every link out of the
LAN crosses the NAT (the far end sees the router's public address)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from peerlab.scenarios.lab import Lab
from peerlab.scenarios.topology import router_wan

PEERS = 3
MESSAGES = 15
HOME = ("peer1", "peer2")
TOPOLOGY = {"lans": {"home": {"nat": "port-restricted"}}, "peers": dict.fromkeys(HOME, "home")}


def route_problem(
    lan_prefix: str, public: str, a: str, b: str, ends: Mapping[str, Mapping[str, Any] | None]
) -> str | None:
    """What is wrong with the link between a and b: its nominated pairs (`ends`: each end's, as its
    agent reports it), or None. Between the neighbours: LAN addresses (`lan_prefix`) at
    both ends of both pairs. Out of the LAN: the end outside sees its neighbour at the
    NAT's `public` address, or through a TURN relay (allocated through the NAT; a
    profile that blocks UDP leaves no other way). Pure."""
    if missing := [end for end, pair in ends.items() if pair is None]:
        return f"{', '.join(missing)} reports no nominated pair"
    inside = [p for p in (a, b) if p in HOME]
    if len(inside) == 2:
        addresses = {ends[p][side]["address"] for p in (a, b) for side in ("local", "remote")}
        if not all(address.startswith(lan_prefix) for address in addresses):
            return f"the neighbours are not on their LAN addresses ({lan_prefix}0/24): {addresses}"
    elif inside:
        (outside,) = {a, b} - set(inside)
        pair = ends[outside]
        relayed = "relay" in (pair["local"]["type"], pair["remote"]["type"])
        seen = pair["remote"]["address"]
        if seen != public and not relayed:
            return f"{outside} sees {inside[0]} at {seen}, not at the NAT's public address {public}"
    return None


async def run(lab: Lab) -> None:
    pairs = list(itertools.combinations(lab.peers, 2))
    await asyncio.gather(*(lab.connect(a, b) for a, b in pairs))
    home = lab.topology.lan("home")
    lan_prefix = f"{lab.stack.prefix}.{home.number}."
    public, _ = router_wan(lab.stack.prefix, home)
    seen = []
    for a, b in pairs:
        ends = {
            x: (await lab.agents[x].state())["links"][y]["candidate_pair"]
            for x, y in ((a, b), (b, a))
        }
        problem = route_problem(lan_prefix, public, a, b, ends)
        assert problem is None, f"{a} ↔ {b}: {problem} (pairs {ends})"
        seen.append(f"{b} sees {a} at {ends[b]['remote']['address']}")
    lab.progress(
        f"routes as the topology says (NAT {public}, LAN {lan_prefix}0/24): {'; '.join(seen)}"
    )

    async def chat(a: str, b: str) -> None:
        conversation = "-".join(sorted((a, b)))
        sent = await lab.send_texts(a, b, conversation, MESSAGES, pause=lab.random.uniform(0, 0.02))
        await lab.send(
            a, b, "edit", conversation=conversation, target=sent[0]["id"], body=f"{a} edited this"
        )
        await lab.send(
            a,
            b,
            "reaction",
            conversation=conversation,
            target=sent[-1]["id"],
            emoji="🔥",
            action="add",
        )

    directions = list(itertools.permutations(lab.peers, 2))
    await asyncio.gather(*(chat(a, b) for a, b in directions))
    await lab.assert_delivered(directions, timeout=60)
    for a, b in pairs:
        await lab.assert_same_history(a, b, "-".join(sorted((a, b))))
