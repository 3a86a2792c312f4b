"""The data path forced through TURN over TCP through Toxiproxy (relay-only ICE policy):
both ends report a relay candidate pair, a latency toxic on the TURN proxy shows up in
the measured send→ack round trip, and every message is delivered."""

from __future__ import annotations

import asyncio
import statistics

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 11  # seconds its body takes in `make test`: runs start longest first
LATENCY_MS = 150
SAMPLES = 15


async def _ack_rtts(lab: Lab, conversation: str) -> list[float]:
    """Send one text at a time and time it to its ack, in ms, on peer1's own clock."""
    rtts = []
    for i in range(SAMPLES):
        message = await lab.send(
            "peer1", "peer2", "text", conversation=conversation, body=f"ping {i}"
        )
        (sent,) = await lab.agents["peer1"].wait("sent", timeout=5, **{"message.id": message["id"]})
        (acked,) = await lab.agents["peer1"].wait(
            "acked", timeout=30, **{"message.id": message["id"]}
        )
        rtts.append((acked["t_mono"] - sent["t_mono"]) * 1000)
    return rtts


async def run(lab: Lab) -> None:
    # Both ends relay-only: the only candidates are TURN/TCP allocations via Toxiproxy.
    await asyncio.gather(
        lab.connect("peer1", "peer2", relay_only=True),
        lab.connect("peer2", "peer1", relay_only=True),
    )
    for name, remote in (("peer1", "peer2"), ("peer2", "peer1")):
        pair = (await lab.agents[name].state())["links"][remote]["candidate_pair"]
        assert pair and pair["local"]["type"] == "relay", f"{name} is not relayed: {pair}"
    lab.progress("both ends use relay candidates")

    before = statistics.median(await _ack_rtts(lab, "baseline"))
    await lab.faults.shape("turn_tcp", "both", delay_ms=LATENCY_MS)
    after = statistics.median(await _ack_rtts(lab, "delayed"))
    lab.progress(
        f"send→ack p50 {before:.1f} ms → {after:.1f} ms with +{LATENCY_MS} ms "
        "per direction on TURN/TCP"
    )
    # Message and ack each cross one toxic stream per TCP leg (peer1 up, peer2 down and
    # back): at least 2 x latency more, whatever the baseline.
    assert after - before >= 2 * LATENCY_MS, (
        f"latency toxic not visible in the ack round trip: p50 {before:.1f} → {after:.1f} ms"
    )

    await lab.send_every_type("peer2", "peer1", "relayed")
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")], timeout=60)
