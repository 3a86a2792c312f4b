"""Every peer connects to every other (full mesh) and all pairs chat at once, in both
directions; every pair's history is identical on both ends."""

from __future__ import annotations

import asyncio
import itertools

from peerlab.scenarios.lab import Lab

PEERS = 3
MESSAGES = 15


async def run(lab: Lab) -> None:
    pairs = list(itertools.combinations(lab.peers, 2))
    await asyncio.gather(*(lab.connect(a, b) for a, b in pairs))

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
