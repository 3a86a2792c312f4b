"""`SignalingClient`: the agent's WebSocket link to the signaling server.

Registers the peer (with its HMAC token), keeps the room's presence list, hands every
relayed frame (offer, answer, bye, presence) to one handler in arrival order, and
reconnects with exponential backoff when the server goes away. The server's `registered`
frame carries the STUN/TURN configuration (`ice_servers`) every new connection uses.
See docs/signaling-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from peerlab.peer.connection import IceServer

FrameHandler = Callable[[dict[str, Any]], Awaitable[None]]

CLOSE_AUTH_FAILED = 4001
CLOSE_REPLACED = 4002

CLOSE_TIMEOUT = 1.0
"""How long `close()` waits for the server's closing handshake before dropping the
connection (websockets waits 10 s by default). One round trip completes it on any
shipped profile (satellite: 600 ms); a network that is already gone (the agent's router
stopped first, as a lab's teardown stops everything at once) never will, and an agent
that waited for it took 10.8 s to exit on SIGTERM."""


class SignalingUnavailable(ConnectionError):
    """The signaling server cannot be reached right now (the client keeps retrying)."""


class SignalingRejected(ConnectionError):
    """The server refused the registration for good (bad token, replaced by another client)."""


class SignalingClient:
    def __init__(
        self,
        url: str,
        room: str,
        peer_id: str,
        token: str,
        *,
        observer: Callable[..., None] | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
        register_timeout: float = 10.0,
        ping: float = 20.0,
    ):
        self.url = url
        self.room = room
        self.peer_id = peer_id
        self._token = token
        self._observe = observer or (lambda kind, **fields: None)
        self._backoff = backoff
        self._register_timeout = register_timeout
        self._ping = ping
        self._handler: FrameHandler | None = None
        self._ws: ClientConnection | None = None
        self._registered = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._fatal: SignalingRejected | None = None
        self.peers: set[str] = set()
        self.ice_servers: tuple[IceServer, ...] = ()

    @property
    def connected(self) -> bool:
        return self._registered.is_set()

    async def start(self, handler: FrameHandler) -> None:
        """Connect and register; returns once registered (raises after `register_timeout`)."""
        self._handler = handler
        self._task = asyncio.create_task(self._run())
        await self.wait_registered(self._register_timeout)

    async def wait_registered(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not self._registered.is_set():
                    if self._fatal is not None:
                        raise self._fatal
                    if self._task is not None and self._task.done():
                        self._task.result()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):
                            await self._registered.wait()
        except TimeoutError:
            raise SignalingUnavailable(
                f"not registered with {self.url} within {timeout:g}s"
            ) from None

    async def send(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or not self._registered.is_set():
            raise SignalingUnavailable(f"not connected to signaling server {self.url}")
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise SignalingUnavailable(f"signaling connection lost: {exc}") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._ws is not None:
            await self._ws.close()

    async def _run(self) -> None:
        low, high = self._backoff
        pause = low
        while True:
            try:
                async with connect(
                    self.url,
                    open_timeout=self._register_timeout,
                    max_size=2**20,
                    ping_interval=self._ping,
                    ping_timeout=self._ping,
                    close_timeout=CLOSE_TIMEOUT,
                ) as ws:
                    self._ws = ws
                    await ws.send(
                        json.dumps(
                            {
                                "type": "register",
                                "room": self.room,
                                "peer": self.peer_id,
                                "token": self._token,
                            }
                        )
                    )
                    async for raw in ws:
                        if await self._receive(raw):
                            pause = low  # a successful registration resets the backoff
                self._lost("server closed the connection", ws.close_code)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self._lost(f"cannot connect: {exc}", None)
            except ConnectionClosed as exc:
                self._lost(f"connection closed: {exc}", exc.rcvd.code if exc.rcvd else None)
            except InvalidURI as exc:
                self._fatal = SignalingRejected(f"bad signaling URL: {exc}")
            if self._fatal is not None:
                self._observe("signaling", event="rejected", error=str(self._fatal))
                return
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
            pause = min(pause * 2, high)

    def _lost(self, why: str, code: int | None) -> None:
        was_registered = self._registered.is_set()
        self._registered.clear()
        self._ws = None
        if code == CLOSE_AUTH_FAILED:
            self._fatal = SignalingRejected(
                f"signaling server rejected the token for {self.peer_id!r} in room {self.room!r}"
            )
        elif code == CLOSE_REPLACED:
            self._fatal = SignalingRejected(
                f"another client registered as {self.peer_id!r} in room {self.room!r}"
            )
        if was_registered or self._fatal is None:
            self._observe("signaling", event="disconnected", reason=why, code=code)

    async def _receive(self, raw: str | bytes) -> bool:
        """Handle one server frame; True when it completed a registration."""
        try:
            frame = json.loads(raw)
            kind = frame["type"]
        except (ValueError, TypeError, KeyError):
            self._observe("error", error=f"unreadable signaling frame: {raw!r:.200}")
            return False
        if kind == "registered":
            self.peers = set(frame.get("peers", ()))
            self.ice_servers = tuple(IceServer.from_json(s) for s in frame.get("ice_servers", ()))
            self._registered.set()
            self._observe(
                "signaling",
                event="registered",
                peers=sorted(self.peers),
                ice_servers=[list(s.urls) for s in self.ice_servers],
            )
            await self._handle(frame)
            return True
        if kind == "presence":
            (self.peers.add if frame.get("event") == "joined" else self.peers.discard)(
                frame.get("peer")
            )
            self._observe("presence", event=frame.get("event"), peer=frame.get("peer"))
        elif kind == "error":
            self._observe(
                "signaling_error",
                code=frame.get("code"),
                error=frame.get("message"),
                ref=frame.get("ref"),
            )
            return False
        await self._handle(frame)
        return False

    async def _handle(self, frame: dict[str, Any]) -> None:
        if self._handler is not None:
            # One frame at a time, in arrival order: glare resolution relies on it.
            try:
                await self._handler(frame)
            except Exception as exc:  # a bad frame must not stop the agent
                self._observe("error", error=f"handling {frame.get('type')} frame failed: {exc!r}")
