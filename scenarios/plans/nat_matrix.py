"""Every pair of NAT types (none, full-cone, address-restricted, port-restricted,
symmetric, udp-blocked), with and without TURN: whether the agents connect and over
which path (host, srflx, relay), measured next to what RFC 4787/8445 predict. One stack:
two peers per NAT type, each NATed one behind its own router (`peerlab matrix nat`).

Afterwards, coturn's own RFC 5780 client (`turnutils_natdiscovery`) classifies every
router again from fresh NAT state: it must agree with the lab's probe, which proved the
types at start, so the probe is checked on every type against a client it shares no code
with."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.agent_client import AgentError
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.nat_check import coturn_verdict
from peerlab.scenarios.nat_matrix import (
    Row,
    describe_pairs,
    expected_outcome,
    matrix_pairs,
    matrix_peers,
    matrix_topology,
    measured_route,
    render_markdown,
)

NATS = matrix_peers()
PEERS = len(NATS)
BODY_S = 31  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = matrix_topology(NATS)
CONNECT_TIMEOUT = {False: 10.0, True: 20.0}
"""How long a pair may take to connect, without and with TURN, before it counts as not
connected: the pairs that cannot connect wait it out. Without TURN, the pairs that connect
did so within 0.65 s alone (`peerlab run nat_matrix`, the agents' event logs);
with TURN, a udp-blocked peer first waits out its STUN query (5.2-5.7 s)."""
CONNECT_ROUND_TRIPS = 10
"""On the default network; on a shaped one (a profile), plus this many of the round trips
the shaping adds between the pair (signaling, STUN, ICE, DTLS, SCTP, the channel's open):
two satellite links (1.24 s) left four pairs unconnected at 10 s."""


async def _measure(lab: Lab, a: str, b: str, *, turn: bool) -> Row:
    agents = lab.agents
    await asyncio.gather(agents[a].link_options(b, turn=turn), agents[b].link_options(a, turn=turn))
    pairs = [None, None]
    try:
        timeout = CONNECT_TIMEOUT[turn] + CONNECT_ROUND_TRIPS * lab.faults.added_round_trip_s(a, b)
        await agents[a].connect(b, timeout=timeout)
        await agents[b].wait_state(a, "connected", timeout=5)
        pairs = [
            (await agents[x].state())["links"][y]["candidate_pair"] for x, y in ((a, b), (b, a))
        ]
    except AgentError as exc:
        lab.progress(f"{a} ({NATS[a]}) ↔ {b} ({NATS[b]}), TURN {turn}: not connected ({exc})")
    finally:
        await asyncio.gather(agents[a].disconnect(b), agents[b].disconnect(a))
    return Row(
        NATS[a],
        NATS[b],
        turn,
        expected_outcome(NATS[a], NATS[b], turn=turn),
        measured_route(pairs),
        describe_pairs(pairs) if pairs[0] else "-",
    )


async def measure_matrix(lab: Lab) -> list[Row]:
    rows = []
    for turn in (False, True):
        rows += await asyncio.gather(
            *(_measure(lab, a, b, turn=turn) for a, b in matrix_pairs(NATS))
        )
        lab.progress(f"matrix {'with' if turn else 'without'} TURN measured")
    return rows


async def coturn_agrees(lab: Lab) -> None:
    lans = [lan for lan in lab.topology.lans if lan.peers]
    routers = [lab.routers[lan.name] for lan in lans]
    # coturn's client sends each request once, so a lost answer reads as filtering (under
    # the `lossy` profile it called a full-cone NAT address-restricted): it classifies
    # clean links, with no flapping profile's cut meanwhile (a probe's turn). The matrix
    # has been measured by then, under whatever the run's links were.
    async with lab.faults.turns.probe():
        await asyncio.gather(*(r.clear_faults(d) for r in routers for d in ("up", "down")))
        # Fresh state: the probe's mapping test and the matrix opened the routers' filters.
        await asyncio.gather(*(r.set_nat(lan.nat) for r, lan in zip(routers, lans, strict=True)))
        verdicts = await asyncio.gather(
            *(coturn_verdict(lab.containers, lan.peers[0], lab.stack.prefix) for lan in lans)
        )
    wrong = [
        f"{lan.peers[0]} ({lan.nat}): coturn's client measured {verdict['nat_type']} "
        f"(mapping {verdict['mapping']}, filtering {verdict['filtering']}):\n{verdict['output']}"
        for lan, verdict in zip(lans, verdicts, strict=True)
        if verdict["nat_type"] != lan.nat
    ]
    assert not wrong, "coturn's RFC 5780 client disagrees with the lab's probe:\n" + "\n".join(
        wrong
    )
    types = sorted({lan.nat for lan in lans})
    lab.progress(f"coturn's turnutils_natdiscovery agrees with the probe on {', '.join(types)}")


async def run(lab: Lab) -> None:
    rows = await measure_matrix(lab)
    await coturn_agrees(lab)
    table = render_markdown(rows)
    (lab.run_dir / "nat_matrix.md").write_text(table + "\n")
    lab.progress("NAT matrix (expected vs measured):\n" + table)
    wrong = [r for r in rows if not r.matches]
    assert not wrong, f"{len(wrong)} of {len(rows)} NAT pairs differ from the theory:\n" + (
        render_markdown(wrong)
    )
