"""Fault proofs' probes and a flapping profile's cuts take turns on the lab's links.

A flapping profile (scenarios/profile_runtime.py) cuts every shaped peer's access link
for a second every few: a STUN probe that ran into such a cut lost every answer, and a
bystander that no fault touched read as touched (its probe measured the profile's cut,
not the fault). Probes run side by side; a cut waits until the probes under way are done
and holds new ones from the moment it waits until it is over. So a cut may start a probe's
length late (0.2-1 s), a probe a cut's length late, and no proof measures through one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ProbeTurns:
    def __init__(self) -> None:
        self._probes = 0
        self._cuts_waiting = 0
        self._cutting = False
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def probe(self) -> AsyncIterator[None]:
        """Measure a link: waits while a cut is in place or waiting to be."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._cutting and not self._cuts_waiting)
            self._probes += 1
        try:
            yield
        finally:
            async with self._changed:
                self._probes -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def cut(self) -> AsyncIterator[None]:
        """Cut links: waits until no probe runs, and keeps new ones waiting meanwhile."""
        async with self._changed:
            self._cuts_waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._probes and not self._cutting)
            finally:
                self._cuts_waiting -= 1
                self._changed.notify_all()  # a cancelled wait must not keep probes waiting
            self._cutting = True
        try:
            yield
        finally:
            async with self._changed:
                self._cutting = False
                self._changed.notify_all()
