"""A peer container killed (SIGKILL) mid-conversation and started again: the others
report it disconnected within 3 s (plus a round trip of a shaped path), reconnect when
it is back, and every message they sent it — before, during and after the outage — is
delivered to it exactly once."""

from __future__ import annotations

import asyncio
import itertools
import time

from peerlab.scenarios.lab import Lab

PEERS = 3
BODY_S = 7  # seconds its body takes in `make test`: runs start longest first
DETECTION_LIMIT = 3.0
"""On the default network; on a shaped one, plus the round trip the shaping adds (the
victim's last heartbeat may have been on its way when it died)."""


async def run(lab: Lab) -> None:
    victim, survivors = lab.peers[-1], lab.peers[:-1]
    await asyncio.gather(*(lab.connect(a, b) for a, b in itertools.combinations(lab.peers, 2)))

    stop = asyncio.Event()

    async def chatter(sender: str) -> None:
        i = 0
        while not stop.is_set():
            await lab.send(sender, victim, "text", conversation="c", body=f"{sender} #{i}")
            i += 1
            await asyncio.sleep(0.05)

    senders = [asyncio.create_task(chatter(s)) for s in survivors]
    try:
        await _kill_and_restart(lab, victim, survivors)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*senders)  # a sender's failure fails the scenario
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
    await lab.assert_delivered([(s, victim) for s in survivors], timeout=60)


async def _kill_and_restart(lab: Lab, victim: str, survivors: list[str]) -> None:
    await asyncio.sleep(1.0)
    marks = {s: (await lab.agents[s].state())["last_event"] for s in survivors}
    killed_at = time.time()
    await lab.kill(victim)

    for survivor in survivors:
        (event,) = await lab.agents[survivor].wait(
            "state", peer=victim, new="disconnected", since=marks[survivor], timeout=10
        )
        took = event["t_wall"] - killed_at
        lab.progress(f"{survivor} reported {victim} disconnected after {took:.2f}s")
        limit = DETECTION_LIMIT + lab.faults.added_round_trip_s(survivor, victim)
        assert took <= limit, (
            f"{survivor} took {took:.2f}s to report {victim} disconnected (limit {limit:g}s)"
        )

    await asyncio.sleep(1.0)  # the survivors keep sending into the outage
    await lab.restart(victim)
    for survivor in survivors:
        await lab.agents[survivor].wait_state(victim, "connected", timeout=30)
        lab.progress(f"{survivor} ↔ {victim} reconnected")
