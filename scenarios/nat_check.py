"""Proof of each router's NAT type, from outside the agents: the lab's RFC 5780 probe
(router/nat_probe.py) runs in the peer's network namespace (scenarios/probe.py
`run_probe`), against coturn's two addresses, and must measure the mapping and filtering
behaviour the topology asked for; then, in the same probe, hairpinning, on or off as
asked: the probe sends from one socket to another socket's external address, and
`judge_hairpin` says whether what came back is what was asked for. All LANs are proven at
once, about a second each.

coturn's own RFC 5780 client (`turnutils_natdiscovery`) waits 3 s for each unanswered
packet, 7 s or more per proof; `coturn_verdict` runs it on demand, for `nat_matrix`'s
check that the probe and coturn's client agree on every NAT type.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from peerlab.router.natdiscovery import classify, judge
from peerlab.scenarios.probe import ProbeError, run_probe
from peerlab.scenarios.stack import Containers, StackError
from peerlab.scenarios.topology import Lan, Topology, stun_addresses

COTURN_IMAGE = "peerlab/coturn:dev"
TEST_TIMEOUT = 60.0
_BETWEEN_TESTS = "--- mapping test ---"


class NatMismatch(AssertionError):
    pass


async def verify_nats(containers: Containers, topology: Topology, prefix: str) -> list[str]:
    """Prove every LAN that has a peer (in parallel); its proof lines, or NatMismatch
    naming what was asked and what was measured."""
    lans = [lan for lan in topology.lans if lan.peers]
    lines = await asyncio.gather(*(_verify(containers, lan, prefix) for lan in lans))
    return [line for pair in lines for line in pair]


async def _verify(containers: Containers, lan: Lan, prefix: str) -> list[str]:
    peer, nat = lan.peers[0], lan.nat
    server = stun_addresses(prefix)[0]
    report = await _probe(containers, peer, server)
    verdict = judge(report["nat"])
    seen = f"mapping {verdict['mapping']}, filtering {verdict['filtering']}"
    if verdict["nat_type"] == "udp-blocked":
        # No UDP answer at all looks the same as a dead server: TCP must get through.
        await containers.exec(
            peer,
            ["python", "-c", f"import socket; socket.create_connection(('{server}', 3478), 5)"],
        )
        seen = f"no STUN answer over UDP, TCP to {server}:3478 connects"
    if verdict["nat_type"] != nat:
        problem = f": {verdict['problem']}" if "problem" in verdict else ""
        raise NatMismatch(
            f"{peer}'s router was asked for a {nat} NAT, but the RFC 5780 probe measured "
            f"{verdict['nat_type']} ({seen}){problem}.\nreport: {json.dumps(report['nat'])}"
        )
    lines = [f"{peer}: {nat} NAT confirmed by RFC 5780 discovery ({seen})"]
    if nat != "udp-blocked":
        lines.append(judge_hairpin(peer, lan.hairpin, nat, report["hairpin"]))
    return lines


async def _probe(containers: Containers, peer: str, server: str) -> dict[str, Any]:
    """The NAT probe's report from `peer`'s network namespace (router/probe.py, `nat`)."""
    try:
        line = await run_probe(containers, peer, ["nat", "--server", server])
        report = json.loads(line)
        if not isinstance(report.get("nat"), dict) or not isinstance(report.get("hairpin"), dict):
            raise ValueError("expected {'nat': {...}, 'hairpin': {...}}")
    except ProbeError as exc:
        raise NatMismatch(str(exc)) from None
    except (ValueError, AttributeError) as exc:
        raise NatMismatch(f"NAT probe in {peer} printed {line[-300:]!r}: {exc}") from None
    return report


def judge_hairpin(peer: str, asked: bool, nat: str, report: dict[str, Any]) -> str:
    """The proof line for hairpinning asked `on` or off, from the hairpin probe's report;
    NatMismatch when the router did something else. With hairpinning on, the packet must
    arrive from the router's external address (RFC 4787 REQ-9), and for
    endpoint-independent mapping from the sender's own mapping, and the answer must get
    back."""
    target, seen = report.get("target"), report.get("source_seen")
    if report.get("hairpin") is None:
        raise NatMismatch(f"{peer}: hairpin probe could not start: {report.get('error')}")
    tries = f"{report.get('sent')} tries"
    if not asked:
        if report["hairpin"]:
            raise NatMismatch(
                f"{peer}'s router was asked not to hairpin, but a packet to its own external "
                f"address {target} reached the LAN (from {seen})"
            )
        return f"{peer}: hairpinning off confirmed (nothing sent to {target} arrived, {tries})"
    problem = None
    external = str(target).rsplit(":", 1)[0]
    if not report["hairpin"]:
        problem = f"nothing sent to {target} arrived ({tries})"
    elif str(seen).rsplit(":", 1)[0] != external:
        problem = f"it arrived from {seen}, not from the external address {external}"
    elif nat != "symmetric" and seen != report.get("sender_mapped"):
        problem = (
            f"it arrived from {seen}, not from the sender's mapping "
            f"{report.get('sender_mapped')} ({nat} maps endpoint-independently)"
        )
    elif not report.get("echoed"):
        problem = f"it arrived from {seen}, but the answer sent there never came back"
    if problem:
        raise NatMismatch(f"{peer}'s router was asked to hairpin, but {problem}")
    return (
        f"{peer}: hairpinning on confirmed (a packet to its own external address {target} "
        f"arrived from {seen} and was answered, {tries})"
    )


async def coturn_verdict(
    containers: Containers, peer: str, prefix: str, image: str = COTURN_IMAGE
) -> dict[str, str]:
    """coturn's `turnutils_natdiscovery` in `peer`'s network namespace, the filtering test
    then the mapping test: its verdict (router/natdiscovery.py `classify`), with the
    client's output under "output". Run it from fresh NAT state (docs/router.md)."""
    target = await asyncio.to_thread(containers.container, peer)
    server = stun_addresses(prefix)[0]
    script = (
        f"turnutils_natdiscovery -f {server} 2>&1; echo {_BETWEEN_TESTS}; "
        f"turnutils_natdiscovery -m {server} 2>&1; exit 0"
    )
    try:
        output = await containers.run_helper(
            f"natcheck-{peer}",
            image,
            ["sh", "-c", script],
            timeout=TEST_TIMEOUT,
            network_mode=f"container:{target.id}",
        )
    except StackError as exc:
        raise NatMismatch(f"turnutils_natdiscovery for {peer}: {exc}") from None
    filtering, _, mapping = output.partition(f"{_BETWEEN_TESTS}\n")
    return {**classify(filtering, mapping), "output": output}
