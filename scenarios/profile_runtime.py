"""Puts a network profile (scenarios/profiles.py) in place on a running lab: every peer
behind a router gets the profile's link faults (through `lab.faults.shape`, so each is
proven and recorded like any fault), and a flapping profile cuts every such peer's access
link for `down` s every `down + up` s while the scenario runs; a cut waits for the fault
proofs' probes under way (scenarios/probe_turns.py).

A flap cut is total loss on both directions of the peer's router (the shaper), so it also
cuts STUN and TURN over UDP, as a radio dropping out would. Each cut is recorded in the
history with the packets it dropped; a profile whose cuts dropped nothing at all fails the
run: the flapping never touched the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from peerlab.scenarios.fault_proof import FaultNotApplied
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.profiles import Profile


@contextlib.asynccontextmanager
async def network_profile(lab: Lab, profile: Profile | None) -> AsyncIterator[None]:
    if profile is None:
        yield
        return
    shaped = [p for p in lab.peers if lab.topology.lan_of(p) is not None]
    lab.progress(f"profile {profile.describe()}: {profile.description}")
    if (profile.up or profile.down) and shaped:
        await lab.faults.shape_links(shaped, profile.up, profile.down)
    flapping = asyncio.create_task(_flap(lab, profile, shaped)) if profile.flap and shaped else None
    try:
        yield
    finally:
        if flapping is not None:
            flapping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flapping
    if flapping is not None:
        cycles = [e for e in lab.history.entries if (e["f"], e["type"]) == ("profile-flap", "info")]
        if cycles and not any(e["value"]["dropped"] for e in cycles):
            raise FaultNotApplied(
                f"profile {profile.name}: {len(cycles)} flap cut(s) dropped no packet at all"
            )


async def _flap(lab: Lab, profile: Profile, peers: list[str]) -> None:
    down_s, up_s = profile.flap["down"], profile.flap["up"]
    cycle = 0
    while True:
        await asyncio.sleep(up_s)
        cycle += 1
        # Never while a fault's proof measures a link: it would measure the cut.
        async with lab.faults.turns.cut():
            await asyncio.gather(*(_cut(lab, profile, peer, cycle, down_s) for peer in peers))


async def _cut(lab: Lab, profile: Profile, peer: str, cycle: int, down_s: float) -> None:
    lan = lab.topology.lan_of(peer)
    assert lan is not None
    router = lab.routers[lan.name]
    before = await router.counters()
    value = {"peer": peer, "cycle": cycle, "down_s": down_s}
    lab.history.record("nemesis", "invoke", "profile-flap", value)
    try:
        for direction in ("up", "down"):
            await router.set_faults(direction, {**getattr(profile, direction), "loss": 1.0})
        await asyncio.sleep(down_s)
    finally:
        # Shielded: a cancelled flap (the scenario ended) must not leave the link cut.
        await asyncio.shield(_restore(router, profile))
    after = await router.counters()
    dropped = sum(after[d]["dropped"] - before[d]["dropped"] for d in ("up", "down"))
    lab.history.record("nemesis", "info", "profile-flap", {**value, "dropped": dropped})


async def _restore(router, profile: Profile) -> None:
    for direction in ("up", "down"):
        faults = getattr(profile, direction)
        if faults:
            await router.set_faults(direction, faults)
        else:
            await router.clear_faults(direction)
