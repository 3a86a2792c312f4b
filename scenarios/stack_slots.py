"""How many lab stacks run at once on this machine, across processes: `PEERLAB_MAX_STACKS`.

`peerlab run --jobs N` bounds one process. `make test` runs several processes side by
side (the scenarios, the examples, the suite check), and a 2-core machine that runs ten
stacks at once starves their agents: fault proofs then see latency nobody injected, and
heartbeats time out. A slot is a lock on one of N files (scenarios/host_locks.py),
dropped by the kernel when its holder exits, so a killed run never keeps one. Unset or 0:
no limit (the default).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from peerlab.scenarios.host_locks import lock_dir, try_lock

ENV = "PEERLAB_MAX_STACKS"
POLL_S = 0.1


def max_stacks(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """The limit from the environment; 0 means none. Pure."""
    raw = environ.get(ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"{ENV}={raw!r}: expected a whole number of stacks (0: no limit)"
        ) from None
    if value < 0:
        raise ValueError(f"{ENV}={raw!r}: expected 0 (no limit) or more")
    return value


class StackSlot:
    """One held slot (or none, without a limit); release() is idempotent."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None


async def acquire(
    progress: Callable[[str], None], limit: int | None = None, folder: Path | None = None
) -> StackSlot:
    """Wait for a free slot, saying once that it waits and, when it got one, how long."""
    limit = max_stacks() if limit is None else limit
    if limit == 0:
        return StackSlot(None)
    folder = folder or lock_dir("stack-slots")
    started = time.monotonic()
    said = False
    while True:
        for index in range(limit):
            fd = try_lock(folder / f"slot-{index}")
            if fd is not None:
                if said:
                    progress(f"got a stack slot after {time.monotonic() - started:.1f}s")
                return StackSlot(fd)
        if not said:
            progress(f"waiting for a stack slot ({ENV}={limit} stacks at once)")
            said = True
        await asyncio.sleep(POLL_S)
