"""Probes and a flapping profile's cuts take turns (scenarios/probe_turns.py): probes side
by side, a cut only once they are done, and no probe while a cut is in place or waits."""

from __future__ import annotations

import asyncio

from peerlab.scenarios.probe_turns import ProbeTurns


async def test_probes_share_a_cut_waits_for_them_and_new_probes_wait_for_the_cut():
    turns, order = ProbeTurns(), []
    release_probes, release_cut = asyncio.Event(), asyncio.Event()

    async def probe(name: str, release: asyncio.Event) -> None:
        async with turns.probe():
            order.append(f"{name} measures")
            await release.wait()
        order.append(f"{name} done")

    async def cut() -> None:
        async with turns.cut():
            order.append("cut")
            await release_cut.wait()
        order.append("restored")

    first = [asyncio.create_task(probe(f"probe{i}", release_probes)) for i in (1, 2)]
    await asyncio.sleep(0)
    assert order == ["probe1 measures", "probe2 measures"]  # side by side
    cutting = asyncio.create_task(cut())
    await asyncio.sleep(0)
    late = asyncio.create_task(probe("probe3", asyncio.Event()))
    await asyncio.sleep(0)
    assert order == ["probe1 measures", "probe2 measures"]  # the cut waits, so does probe3
    release_probes.set()
    await asyncio.gather(*first)
    await asyncio.sleep(0)
    assert order[-1] == "cut" and "probe3 measures" not in order
    release_cut.set()
    await cutting
    for _ in range(3):
        await asyncio.sleep(0)
    assert order[-2:] == ["restored", "probe3 measures"]
    late.cancel()


async def test_a_cancelled_waiting_cut_lets_the_waiting_probes_through():
    turns = ProbeTurns()
    hold, measured = asyncio.Event(), asyncio.Event()

    async def probe(until: asyncio.Event) -> None:
        async with turns.probe():
            measured.set()
            await until.wait()

    running = asyncio.create_task(probe(hold))
    await asyncio.sleep(0)
    measured.clear()
    waiting_cut = asyncio.create_task(turns.cut().__aenter__())
    await asyncio.sleep(0)
    waiting_probe = asyncio.create_task(probe(asyncio.Event()))
    await asyncio.sleep(0)
    assert not measured.is_set()  # behind the cut
    waiting_cut.cancel()  # the scenario ended while the cut waited
    await asyncio.gather(waiting_cut, return_exceptions=True)
    async with asyncio.timeout(1):
        await measured.wait()  # the probe that waited goes, the first one still running
    hold.set()
    await running
    waiting_probe.cancel()
