"""Two well-behaved clients that keep signaling through the server while it is fuzzed.

alice sends an offer to bob, bob answers it, alice waits for the answer and sends the
next offer; every frame is checked when it arrives (relayed unchanged, `from` set). What
the fuzzing client (`FUZZER`) relays to either of them is kept for the campaign to check.
At the end, every frame the pair sent must have been relayed (`sent == relayed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fuzz.signaling_cases import FUZZER, ROOM, SDP, SECRET
from peerlab.signaling.auth import make_token

TIMEOUT = 5.0
PAUSE = 0.005
"""Between two exchanges: the pair keeps the server busy without starving the fuzzer."""


async def register(url: str, peer: str) -> ClientConnection:
    """A connection registered as `peer` in `ROOM` (presence frames before `registered` skipped)."""
    ws = await connect(url, max_size=None)
    token = make_token(SECRET, ROOM, peer)
    await ws.send(json.dumps({"type": "register", "room": ROOM, "peer": peer, "token": token}))
    async with asyncio.timeout(TIMEOUT):
        while (frame := json.loads(await ws.recv()))["type"] != "registered":
            if frame["type"] != "presence":
                raise RuntimeError(f"registering {peer}: {frame!r}")
    return ws


class Pair:
    def __init__(self) -> None:
        self.sent = 0
        self.relayed = 0
        self.from_fuzzer: dict[str, list[dict[str, Any]]] = {"alice": [], "bob": []}
        self._problems: list[str] = []
        self._answered = asyncio.Event()
        self._stopping = False
        self._ws: dict[str, ClientConnection] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, url: str) -> None:
        for peer in ("alice", "bob"):
            self._ws[peer] = await register(url, peer)
            self._tasks.append(asyncio.create_task(self._read(peer)))
        self._tasks.append(asyncio.create_task(self._offer()))

    def take_problems(self) -> list[str]:
        problems, self._problems = self._problems, []
        return problems

    async def stop(self) -> None:
        """Stop offering, wait for the last answer, then close both connections."""
        self._stopping = True
        offerer = self._tasks.pop()
        await offerer
        for ws in self._ws.values():
            await ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _offer(self) -> None:
        session = 0
        while not self._stopping:
            session += 1
            self._answered.clear()
            frame = {"type": "offer", "to": "bob", "sdp": SDP, "session": f"pair-{session}"}
            try:
                await self._ws["alice"].send(json.dumps(frame))
            except ConnectionClosed:
                return  # reported by the reader
            self.sent += 1
            try:
                await asyncio.wait_for(self._answered.wait(), TIMEOUT)
            except TimeoutError:
                self._problems.append(
                    f"the pair stalled: alice's offer pair-{session} got no answer in {TIMEOUT:g}s"
                )
            await asyncio.sleep(PAUSE)

    async def _read(self, peer: str) -> None:
        ws = self._ws[peer]
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "presence":
                    continue
                if frame.get("from") == FUZZER:
                    self.from_fuzzer[peer].append(frame)
                elif peer == "bob" and frame.get("type") == "offer":
                    self._check(frame, "alice")
                    answer = {"type": "answer", "to": "alice", "sdp": SDP}
                    await ws.send(json.dumps({**answer, "session": frame["session"]}))
                    self.sent += 1
                elif peer == "alice" and frame.get("type") == "answer":
                    self._check(frame, "bob")
                    self._answered.set()
                else:
                    self._problems.append(f"{peer} received an unexpected frame: {frame!r}")
        except ConnectionClosed as exc:
            if not self._stopping:
                self._problems.append(f"{peer}'s connection was closed: {exc}")

    def _check(self, frame: dict[str, Any], sender: str) -> None:
        self.relayed += 1
        if set(frame) != {"type", "sdp", "session", "from"} or frame["from"] != sender:
            self._problems.append(f"a frame of the pair was relayed as {frame!r}")
