"""Waiting for a lab's services to be ready: each one asked directly, every 0.1 s, until
all answer or the deadline passes.

A service that cannot become ready (its container exited: an agent refusing its store, a
router without NET_ADMIN) fails the wait at once rather than at the deadline. The error
names every service that is not ready, what it last answered and, for a container that is
not running, how it ended and its last log lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

Probe = Callable[[], Awaitable[str | None]]
"""Asks a service once: None when it is ready, else what is still missing."""

INTERVAL = 0.1
STATE_EVERY = 10
"""Rounds between asks of the engine whether the waiting containers still run."""


class NotReady(RuntimeError):
    pass


async def wait_ready(
    probes: Mapping[str, Probe],
    container_state: Callable[[str], Awaitable[str]],
    timeout: float,
) -> None:
    """Return once every probe says ready; raise NotReady when one's container stopped
    or the deadline passed. `container_state(name)` is "running" or how it ended."""
    pending = dict(probes)
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        answers = await asyncio.gather(*(_ask(probe) for probe in pending.values()))
        for name, answer in zip(list(pending), answers, strict=True):
            if answer is None:
                del pending[name]
            else:
                last[name] = answer
        if not pending:
            return
        rounds += 1
        timed_out = time.monotonic() >= deadline
        if timed_out or rounds % STATE_EVERY == 0:
            states = dict(
                zip(pending, await asyncio.gather(*map(container_state, pending)), strict=True)
            )
            stopped = {name: state for name, state in states.items() if state != "running"}
            if stopped or timed_out:
                raise NotReady(_explain(pending, last, states, timeout, timed_out))
        await asyncio.sleep(INTERVAL)


async def _ask(probe: Probe) -> str | None:
    try:
        return await probe()
    except Exception as exc:  # not ready yet: refused, reset, not published yet, ...
        return f"{type(exc).__name__}: {exc}"


def _explain(
    pending: Mapping[str, Probe],
    last: Mapping[str, str],
    states: Mapping[str, str],
    timeout: float,
    timed_out: bool,
) -> str:
    lines = [f"not ready after {timeout:g}s:" if timed_out else "a service stopped while starting:"]
    for name in pending:
        state = states[name]
        if state == "running":
            lines.append(f"  {name}: running, but {last.get(name, 'never answered')}")
        else:
            lines.append(f"  {name}: {state}")
    return "\n".join(lines)
