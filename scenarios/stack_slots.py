"""How many lab stacks run at once on this machine, across processes: `PEERLAB_MAX_STACKS`.

`peerlab run --jobs N` bounds one process. `make test` runs several processes side by
side (the scenarios, the examples, the suite check), and a 2-core machine that runs ten
stacks at once starves their agents: fault proofs then see latency nobody injected, and
heartbeats time out. A slot is a lock on one of N files (scenarios/host_locks.py),
dropped by the kernel when its holder exits, so a killed run never keeps one. Unset or 0:
no limit (the default).

Whatever the limit, stacks start one at a time on this machine (`start_turn`): Docker
creates networks one after another, and three stacks starting together each took 14 to 19 s
to come up where one alone takes 2 to 3 s; taking turns, each starts in about that, while
the others run their scenarios. A start also waits for the teardowns under way
(`teardown_mark`): Docker removes networks one at a time too, and a stack that came up
while the NAT matrix removed its eleven took 8 to 10 s. A teardown never waits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from peerlab.scenarios.host_locks import lock_dir, try_lock

ENV = "PEERLAB_MAX_STACKS"
POLL_S = 0.1
STARTS_AT_ONCE = 1
"""Stacks that start at the same time on this machine. Docker does overlap some of the
work (three bare stacks: 2.4 s together, 4.4 s one after another), and with two at once
`make test`'s container round took 178-180 s against 185-195 s; but a start's CPU burst
(twelve agents booting for the NAT matrix) then also lands on the fault proofs running
beside it: a +10 ms shaping measured +25.2 ms, against +26 allowed."""
MAX_WEIGHT = 999_999
_tickets = itertools.count()
"""Tells apart the tickets one process takes in the same nanosecond."""
T = TypeVar("T")


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


SECONDS_PER_PEER = 2
SECONDS_PER_ROUTER = 4
"""What a stack's start and teardown take per agent, and per router (a network of its
own to create and remove, a NAT to prove), about, on a 2-core machine under `make test`."""


def stack_weight(peers: int, routers: int, body_s: float = 0.0) -> int:
    """How long a stack lives, about, in seconds, to start the longest first: its body
    (the scenario's estimate, 0 when unknown) plus its start and teardown. Started last,
    the longest runs would hold the end of the run alone (in `make test`, a 15 s scenario
    started last in its process held the end beside a 35 s one started late in another)."""
    return round(body_s + SECONDS_PER_PEER * peers + SECONDS_PER_ROUTER * routers)


async def acquire(
    progress: Callable[[str], None],
    weight: int = 0,
    limit: int | None = None,
    folder: Path | None = None,
) -> StackSlot:
    """Wait for a free slot, saying once that it waits and, when it got one, how long.
    Waiters queue by weight (stack_weight), longest first, then by arrival, across
    processes: each holds a ticket (a locked file named by its rank) while it waits, and
    only the first live ticket tries the slots."""
    limit = max_stacks() if limit is None else limit
    if limit == 0:
        return StackSlot(None)
    waiting = f"waiting for a stack slot ({ENV}={limit} stacks at once)"
    return await _queue(folder or lock_dir("stack-slots"), limit, weight, progress, waiting)


async def start_turn(
    progress: Callable[[str], None],
    weight: int = 0,
    folder: Path | None = None,
    teardowns: Path | None = None,
) -> StackSlot:
    """Wait until no other stack on this machine is starting (STARTS_AT_ONCE; longest
    first, as slots) and none is being torn down; release the turn once the stack is up."""
    waiting = "waiting for another stack to finish starting"
    turn = await _queue(
        folder or lock_dir("stack-starts"), STARTS_AT_ONCE, weight, progress, waiting
    )
    try:
        await _no_teardowns(_marks(teardowns), progress)
    except BaseException:
        turn.release()
        raise
    return turn


class TeardownMark(StackSlot):
    """A lock file that says a stack is being torn down; release() removes it."""

    def __init__(self, path: Path, fd: int):
        super().__init__(fd)
        self._path = path

    def release(self) -> None:
        if self._fd is not None:
            self._path.unlink(missing_ok=True)  # while still locked: never seen stale
        super().release()


def teardown_mark(project: str, teardowns: Path | None = None) -> TeardownMark:
    """Held while `project`'s stack is torn down, so that starts wait for it."""
    return TeardownMark(*_locked_in(_marks(teardowns), f"{project}-{os.getpid()}-{next(_tickets)}"))


def _marks(teardowns: Path | None) -> Path:
    folder = (teardowns or lock_dir("stack-teardowns")) / "marks"
    folder.mkdir(exist_ok=True)
    return folder


async def _no_teardowns(folder: Path, progress: Callable[[str], None]) -> None:
    """Return once no live process holds a mark in `folder` (dead ones are removed on the
    way)."""

    def none_left() -> bool | None:
        live = [name for name in os.listdir(folder) if _held(folder / name)]
        return None if live else True

    await _poll(none_left, progress, "waiting for another stack's teardown")


async def _queue(
    folder: Path, limit: int, weight: int, progress: Callable[[str], None], waiting: str
) -> StackSlot:
    queue = folder / "queue"
    queue.mkdir(exist_ok=True)
    ticket, ticket_fd = _take_ticket(queue, weight)

    def take_a_slot() -> StackSlot | None:
        if not _first_in_queue(queue, ticket.name):
            return None
        for index in range(limit):
            fd = try_lock(folder / f"slot-{index}")
            if fd is not None:
                return StackSlot(fd)
        return None

    try:
        return await _poll(take_a_slot, progress, waiting)
    finally:
        ticket.unlink(missing_ok=True)
        os.close(ticket_fd)


async def _poll(
    attempt: Callable[[], T | None], progress: Callable[[str], None], waiting: str
) -> T:
    """`attempt()` every POLL_S until it returns something; says `waiting` once if it has
    to wait, and how long it waited at the end."""
    started = time.monotonic()
    said = False
    while (result := attempt()) is None:
        if not said:
            progress(waiting)
            said = True
        await asyncio.sleep(POLL_S)
    if said:
        progress(f"waited {time.monotonic() - started:.1f}s")
    return result


def _take_ticket(queue: Path, weight: int) -> tuple[Path, int]:
    """A ticket whose name sorts longest first, then oldest."""
    rank = f"{MAX_WEIGHT - min(weight, MAX_WEIGHT):06d}-{time.time_ns()}-{os.getpid()}"
    return _locked_in(queue, f"{rank}-{next(_tickets)}")


def _locked_in(folder: Path, name: str) -> tuple[Path, int]:
    """A file `name` in `folder`, locked by this process. Locked under a temporary name
    beside the folder, then renamed into place: never seen unlocked, so never taken for
    a dead holder's."""
    draft = folder.parent / f"draft-{folder.name}-{name}"
    fd = try_lock(draft)
    assert fd is not None, "a fresh file is locked by nobody else"
    path = folder / name
    draft.rename(path)
    return path, fd


def _first_in_queue(queue: Path, mine: str) -> bool:
    """Whether no live ticket ranks before `mine`. A ticket nobody holds (its waiter died
    by SIGKILL) is removed on the way."""
    for name in sorted(os.listdir(queue)):
        if name >= mine:
            return True
        if _held(queue / name):
            return False  # a live waiter ahead
    return True


def _held(path: Path) -> bool:
    """Whether a live process holds `path`'s lock. A file nobody holds (its holder died
    by SIGKILL) is removed."""
    fd = try_lock(path)
    if fd is None:
        return True
    path.unlink(missing_ok=True)
    os.close(fd)
    return False
