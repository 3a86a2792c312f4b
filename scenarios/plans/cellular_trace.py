"""peer1 on a cellular link replayed from packet-delivery traces (Mahimahi format, one
for the uplink and one for the downlink): every message is delivered, and the send→ack
round trip p50/p95 is reported next to the same workload sent at the same time by
peer3 over an unshaped link to the same receiver."""

from __future__ import annotations

import asyncio
import statistics

from peerlab.scenarios.lab import Lab

PEERS = 3
BODY_S = 16  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "port-restricted"}}}
UPLINK_TRACE = "cellular-3g-bursty.trace"
DOWNLINK_TRACE = "cellular-lte-walk.trace"
MESSAGES = 60


async def _ack_times(lab: Lab, sender: str, conversation: str) -> list[float]:
    await lab.send_texts(sender, "peer2", conversation, MESSAGES, pause=0.05)
    await lab.assert_delivered([(sender, "peer2")], timeout=120)
    events = await lab.agents[sender].events(peer="peer2")
    sent = {
        e["message"]["id"]: e["t_mono"]
        for e in events
        if e["kind"] == "sent" and e["message"]["conversation"] == conversation
    }
    return sorted(
        (e["t_mono"] - sent[e["message"]["id"]]) * 1000
        for e in events
        if e["kind"] == "acked" and e["message"]["id"] in sent
    )


def _summary(times: list[float]) -> str:
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    return f"p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms"


async def run(lab: Lab) -> None:
    await asyncio.gather(lab.connect("peer1", "peer2"), lab.connect("peer3", "peer2"))
    await lab.faults.shape("peer1", "up", trace=UPLINK_TRACE)
    await lab.faults.shape("peer1", "down", trace=DOWNLINK_TRACE)
    # The baseline runs at the same time, on the same machine: whatever else loads the
    # CPU slows both alike (measured one after the other, a busy machine once made the
    # unshaped run the slower one).
    shaped, baseline = await asyncio.gather(
        _ack_times(lab, "peer1", "cellular"), _ack_times(lab, "peer3", "wired")
    )
    lab.progress(
        f"send→ack over {MESSAGES} messages: cellular traces {_summary(shaped)}; "
        f"unshaped at the same time {_summary(baseline)}"
    )
    await lab.send_every_type("peer2", "peer1", "cellular")
    await lab.assert_delivered([("peer1", "peer2"), ("peer2", "peer1")], timeout=120)
    assert statistics.median(shaped) > statistics.median(baseline), (
        "the traces did not slow the link down at all: "
        f"unshaped {_summary(baseline)}, traced {_summary(shaped)}"
    )
