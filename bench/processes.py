"""Running one benchmark end in its own process, and talking to it from the parent.

Each end is an `async def end(control, **kwargs)` coroutine function run by `child_main`
in a process of the spawn context (a fresh interpreter, as a real peer would be). It
reports with `control.progress(...)` and `control.result(...)`, then waits for the
parent's `stop` before closing its connections: an end that closed as soon as it was done
would abort data the other end is still waiting for. A failure is sent to the parent as
its traceback and the process exits non-zero.

Both processes read the same clock: `time.monotonic()` is CLOCK_MONOTONIC on Linux,
shared by every process of the host, so one end's timestamps compare with the other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import multiprocessing
import sys
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

End = Callable[..., Coroutine[Any, Any, None]]

_SPAWN = multiprocessing.get_context("spawn")


class EndFailed(RuntimeError):
    """A benchmark end raised, died, or did not finish in time."""


async def receive(conn: Connection) -> Any:
    """Await the next object on a multiprocessing connection without blocking the loop."""
    while not conn.poll():
        await readable(conn.fileno())
    return conn.recv()


async def readable(*fds: int) -> None:
    """Return once one of the file descriptors is readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    for fd in fds:
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        for fd in fds:
            loop.remove_reader(fd)


# ---- child side ----


class Control:
    """An end's link to the parent: progress, the result, the stop order, profiling."""

    def __init__(self, conn: Connection, name: str, profile_dir: Path | None):
        self.name = name
        self._conn = conn
        self._profile_dir = profile_dir
        self._profiler: tuple[str, cProfile.Profile] | None = None

    def progress(self, text: str) -> None:
        self._conn.send(("progress", text))

    def result(self, figures: dict[str, Any]) -> None:
        self._conn.send(("result", figures))

    async def stopped(self) -> None:
        """Return once the parent says both ends are done."""
        message = await receive(self._conn)
        if message != "stop":
            raise RuntimeError(f"expected 'stop' from the parent, got {message!r}")

    def start_profile(self, phase: str) -> None:
        """Profile from now to `stop_profile` when the run asked for profiles (--profile)."""
        if self._profile_dir is not None:
            profiler = cProfile.Profile()
            self._profiler = (phase, profiler)
            profiler.enable()

    def stop_profile(self) -> None:
        if self._profiler is None:
            return
        phase, profiler = self._profiler
        profiler.disable()
        self._profiler = None
        path = self._profile_dir / f"{self.name.replace(' ', '-')}-{phase}.pstats"
        profiler.dump_stats(path)
        self.progress(f"profile of {phase} written to {path}")


def child_main(
    end: End, conn: Connection, name: str, kwargs: dict[str, Any], profile_dir: Path | None
) -> None:
    try:
        asyncio.run(end(Control(conn, name, profile_dir), **kwargs))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        sys.exit(1)


# ---- parent side ----


class EndProcess:
    """One end running in a child process, as seen from the parent's event loop."""

    def __init__(
        self,
        name: str,
        end: End,
        *,
        profile_dir: Path | None = None,
        on_progress: Callable[[str, str], None] = lambda name, text: None,
        **kwargs: Any,
    ):
        self.name = name
        self._on_progress = on_progress
        self._conn, child_conn = _SPAWN.Pipe()
        self.process = _SPAWN.Process(
            target=child_main,
            args=(end, child_conn, name, kwargs, profile_dir),
            name=f"bench {name}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()

    async def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the end's figures, relaying its progress; EndFailed tells why not."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    kind, payload = await self._next_message()
                    if kind == "progress":
                        self._on_progress(self.name, payload)
                    elif kind == "result":
                        return payload
                    else:
                        raise EndFailed(f"{self.name} failed:\n{payload}")
        except TimeoutError:
            raise EndFailed(f"{self.name} gave no result within {timeout:g}s") from None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")

    async def finish(self, timeout: float) -> None:
        """Wait for the process to exit after `stop`; kill it if it hangs."""
        try:
            async with asyncio.timeout(timeout):
                await readable(self.process.sentinel)
        except TimeoutError:
            self.kill()
            raise EndFailed(f"{self.name} did not exit within {timeout:g}s of stop") from None
        self.process.join()
        # Whatever the end sent while stopping: progress, or the error it stopped with.
        try:
            while self._conn.poll():
                kind, payload = self._conn.recv()
                if kind == "error":
                    raise EndFailed(f"{self.name} failed while stopping:\n{payload}")
                self._on_progress(self.name, payload)
        except EOFError:
            pass
        if self.process.exitcode != 0:
            raise EndFailed(f"{self.name} exited with code {self.process.exitcode}")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    async def _next_message(self) -> tuple[str, Any]:
        while not self._conn.poll():
            if not self.process.is_alive():
                raise EndFailed(
                    f"{self.name} exited with code {self.process.exitcode} without a result"
                )
            await readable(self._conn.fileno(), self.process.sentinel)
        try:
            return self._conn.recv()
        except EOFError:
            raise EndFailed(f"{self.name} closed its pipe without a result") from None


async def run_ends(ends: list[EndProcess], timeout: float) -> list[dict[str, Any]]:
    """Collect every end's result, then stop them all; any failure stops the others."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(end.result(timeout)) for end in ends]
        results = [task.result() for task in tasks]
        for end in ends:
            end.stop()
        async with asyncio.TaskGroup() as group:
            for end in ends:
                group.create_task(end.finish(timeout=15))
        return results
    except BaseExceptionGroup as group:
        # Report the first real failure, not the cancellations it caused.
        failures = [e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)]
        raise failures[0] if failures else group from None
    finally:
        for end in ends:
            end.kill()
