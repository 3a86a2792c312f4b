"""Proof of each router's NAT type, from outside the agents: coturn's own RFC 5780 client
(`turnutils_natdiscovery`) runs in the peer's network namespace, against coturn's two
addresses, and must report the mapping and filtering behaviour the topology asked for.

The filtering test and the mapping test run separately, filtering first: the mapping
test contacts coturn's second address, which would open an address-restricted filter
and make a later filtering verdict read "independent".
"""

from __future__ import annotations

import asyncio

from router.natdiscovery import classify
from scenarios.stack import Containers, StackError
from scenarios.topology import Topology, stun_addresses

COTURN_IMAGE = "peerlab/coturn:dev"
TEST_TIMEOUT = 60.0


class NatMismatch(AssertionError):
    pass


async def verify_nats(
    containers: Containers, topology: Topology, prefix: str, image: str = COTURN_IMAGE
) -> list[str]:
    """Classify every LAN that has a peer (in parallel); one proof line per LAN, or
    NatMismatch naming what was asked and what was measured."""
    lans = [lan for lan in topology.lans if lan.peers]
    lines = await asyncio.gather(
        *(_verify(containers, lan.peers[0], lan.nat, prefix, image) for lan in lans)
    )
    return list(lines)


async def _verify(containers: Containers, peer: str, nat: str, prefix: str, image: str) -> str:
    server = stun_addresses(prefix)[0]
    filtering = await _natdiscovery(containers, peer, ["-f", server], image)
    mapping = await _natdiscovery(containers, peer, ["-m", server], image)
    verdict = classify(filtering, mapping)
    seen = f"mapping {verdict['mapping']}, filtering {verdict['filtering']}"
    if verdict["nat_type"] == "udp-blocked":
        # No UDP answer at all looks the same as a dead server: TCP must get through.
        await containers.exec(
            peer,
            ["python", "-c", f"import socket; socket.create_connection(('{server}', 3478), 5)"],
        )
        seen = f"no STUN answer over UDP, TCP to {server}:3478 connects"
    if verdict["nat_type"] != nat:
        raise NatMismatch(
            f"{peer}'s router was asked for a {nat} NAT, but turnutils_natdiscovery measured "
            f"{verdict['nat_type']} ({seen}).\nfiltering test:\n{filtering}\nmapping test:\n"
            f"{mapping}"
        )
    return f"{peer}: {nat} NAT confirmed by RFC 5780 discovery ({seen})"


async def _natdiscovery(containers: Containers, peer: str, args: list[str], image: str) -> str:
    """Run turnutils_natdiscovery in `peer`'s network namespace; its output (a verdict of
    "no answer" may come with a non-zero exit)."""
    target = await asyncio.to_thread(containers.container, peer)
    try:
        return await containers.run_helper(
            f"natcheck-{peer}-{args[0].strip('-')}",
            image,
            ["turnutils_natdiscovery", *args],
            timeout=TEST_TIMEOUT,
            check=False,
            network_mode=f"container:{target.id}",
        )
    except StackError as exc:
        raise NatMismatch(f"turnutils_natdiscovery {' '.join(args)} for {peer}: {exc}") from None
