"""The signaling server: rooms of registered peers relaying WebRTC signaling frames.

:class:`SignalingServer` wraps a ``websockets`` asyncio server. Each connection
gets a :class:`Session` with its own outbound queue, so a peer that stops reading
never stalls the peers that send to it; frame handling itself is synchronous and
therefore atomic with respect to the room table. Parsing and validation live in
:mod:`signaling.frames`, credentials in :mod:`signaling.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from peerlab.signaling.auth import ice_servers_for, verify_token
from peerlab.signaling.frames import (
    AUTH_FAILED,
    RATE_LIMITED,
    UNKNOWN_PEER,
    FrameError,
    Ping,
    Register,
    Relay,
    encode,
    error_frame,
    parse_frame,
    pong_frame,
    presence_frame,
    registered_frame,
    relayed_frame,
)
from peerlab.signaling.ratelimit import TokenBucket

log = logging.getLogger("signaling")

CLOSE_AUTH_FAILED = 4001
CLOSE_REPLACED = 4002
CLOSE_SLOW_CONSUMER = 4008
RATE_LIMIT_ERROR_INTERVAL = 1.0  # seconds between two rate_limited errors to one client


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log one structured event; the JSON formatter puts ``fields`` beside ``event``."""
    log.log(level, event, extra={"fields": fields})


@dataclass(frozen=True)
class ServerConfig:
    """Settings of a :class:`SignalingServer`; defaults match the command line."""

    secret: str
    host: str = "0.0.0.0"
    port: int = 8765
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_size: int = 256 * 1024
    rate: float = 100.0
    burst: int = 200
    ice_servers: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: int = 3600
    # Frames queued for a client that does not read before it is disconnected.
    outbox_size: int = 1024


@dataclass(frozen=True)
class _CloseRequest:
    code: int
    reason: str


class Session:
    """One client connection: its registration, rate limit and outbound queue."""

    def __init__(self, websocket: ServerConnection, bucket: TokenBucket, outbox_size: int):
        self.websocket = websocket
        self.bucket = bucket
        self.room: str | None = None
        self.peer: str | None = None
        self.closing = False
        self.last_rate_error: float | None = None
        self.dropped = 0
        self._outbox: asyncio.Queue[str | _CloseRequest] = asyncio.Queue(outbox_size)
        self._writer = asyncio.create_task(self._write_loop())
        self._closer: asyncio.Task[None] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame; never blocks. A client too slow to drain its queue is dropped."""
        if self.closing:
            return
        try:
            self._outbox.put_nowait(encode(frame))
        except asyncio.QueueFull:
            log_event(logging.WARNING, "slow_consumer", room=self.room, peer=self.peer)
            self._abort(CLOSE_SLOW_CONSUMER, "slow consumer")

    def close(self, code: int, reason: str) -> None:
        """Close the connection once the frames already queued have been sent."""
        if self.closing:
            return
        self.closing = True
        try:
            self._outbox.put_nowait(_CloseRequest(code, reason))
        except asyncio.QueueFull:
            self._abort(code, reason)

    def stop(self) -> None:
        """Stop the writer; called once the connection is over."""
        self._writer.cancel()

    def _abort(self, code: int, reason: str) -> None:
        self.closing = True
        self._writer.cancel()
        self._closer = asyncio.create_task(self.websocket.close(code, reason))

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                item = await self._outbox.get()
                if isinstance(item, _CloseRequest):
                    await self.websocket.close(item.code, item.reason)
                    return
                await self.websocket.send(item)


class SignalingServer:
    """WebSocket signaling server.

    Usage::

        async with SignalingServer(ServerConfig(secret="s", host="127.0.0.1", port=0)) as server:
            url = server.url  # ws://127.0.0.1:<port>/

    ``monotonic`` (rate limiting) and ``wall_clock`` (TURN credential expiry) can be
    replaced in tests.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._rooms: dict[str, dict[str, Session]] = {}
        self._server: Server | None = None

    # Lifecycle.

    async def start(self) -> None:
        """Bind and start accepting connections."""
        config = self.config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._process_request,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            max_size=config.max_size,
        )
        log_event(logging.INFO, "server_started", host=config.host, port=self.port)

    async def close(self) -> None:
        """Close every connection with 1001 (going away) and stop the server."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        log_event(logging.INFO, "server_stopped")

    async def wait_closed(self) -> None:
        """Wait until the server is closed (by :meth:`close`)."""
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound port (the real one when configured with port 0)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """WebSocket URL of the server; a wildcard host is given as loopback."""
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/"

    def stats(self) -> dict[str, Any]:
        """Health summary, as served on ``GET /healthz``."""
        return {
            "status": "ok",
            "rooms": len(self._rooms),
            "peers": sum(len(members) for members in self._rooms.values()),
        }

    # HTTP.

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/healthz":
            return None
        response = connection.respond(HTTPStatus.OK, json.dumps(self.stats()) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    # Connections.

    async def _handle(self, websocket: ServerConnection) -> None:
        config = self.config
        bucket = TokenBucket(config.rate, config.burst, self._monotonic())
        session = Session(websocket, bucket, config.outbox_size)
        log_event(logging.DEBUG, "connected", remote=str(websocket.remote_address))
        try:
            async for message in websocket:
                if not session.closing:
                    self._receive(session, message)
        except ConnectionClosed:
            pass  # abnormal closure, e.g. 1009 for an oversized frame
        finally:
            self._leave(session)
            session.stop()
            log_event(
                logging.INFO if session.peer else logging.DEBUG,
                "disconnected",
                room=session.room,
                peer=session.peer,
                code=websocket.close_code,
                reason=websocket.close_reason,
            )

    def _receive(self, session: Session, message: str | bytes) -> None:
        now = self._monotonic()
        if not session.bucket.allow(now):
            self._drop_rate_limited(session, now)
            return
        try:
            frame = parse_frame(message, session.peer)
            if isinstance(frame, Register):
                self._register(session, frame)
            elif isinstance(frame, Ping):
                session.send(pong_frame())
            else:
                self._relay(session, frame)
        except FrameError as exc:
            log_event(
                logging.DEBUG,
                "frame_rejected",
                room=session.room,
                peer=session.peer,
                code=exc.code,
                ref=exc.ref,
                message=exc.message,
            )
            session.send(exc.to_frame())
            if exc.code == AUTH_FAILED:
                session.close(CLOSE_AUTH_FAILED, "auth_failed")
        except Exception:
            # A bug must cost one frame, not the connection or the server.
            log.exception("internal_error", extra={"fields": {"peer": session.peer}})

    def _drop_rate_limited(self, session: Session, now: float) -> None:
        session.dropped += 1
        last = session.last_rate_error
        if last is not None and now - last < RATE_LIMIT_ERROR_INTERVAL:
            return
        session.last_rate_error = now
        log_event(
            logging.WARNING,
            "rate_limited",
            room=session.room,
            peer=session.peer,
            dropped=session.dropped,
        )
        session.send(
            error_frame(
                RATE_LIMITED,
                f"over {self.config.rate:g} frames/s (burst {self.config.burst}); "
                f"frames are being dropped ({session.dropped} so far)",
            )
        )

    def _register(self, session: Session, frame: Register) -> None:
        room, peer = frame.room, frame.peer
        if not verify_token(self.config.secret, room, peer, frame.token):
            log_event(logging.WARNING, "auth_failed", room=room, peer=peer)
            raise FrameError(AUTH_FAILED, "invalid token for this room and peer", "register")
        members = self._rooms.setdefault(room, {})
        previous = members.get(peer)
        members[peer] = session
        session.room, session.peer = room, peer
        if previous is not None:
            # A restarted peer: the new connection wins.
            log_event(logging.INFO, "replaced", room=room, peer=peer)
            previous.close(CLOSE_REPLACED, "replaced")
        ice_servers = ice_servers_for(
            peer,
            self.config.ice_servers,
            self.config.turn_secret,
            self.config.turn_ttl,
            self._wall_clock(),
        )
        others = [other for other in members if other != peer]
        session.send(registered_frame(room, peer, others, ice_servers))
        self._broadcast(room, peer, presence_frame("joined", peer))
        log_event(logging.INFO, "registered", room=room, peer=peer, peers=len(members))

    def _relay(self, session: Session, relay: Relay) -> None:
        assert session.room is not None and session.peer is not None
        target = self._rooms.get(session.room, {}).get(relay.to)
        if target is None:
            raise FrameError(
                UNKNOWN_PEER, f"no peer {relay.to!r} in room {session.room!r}", relay.type
            )
        target.send(relayed_frame(relay, session.peer))
        log_event(
            logging.DEBUG,
            "relayed",
            room=session.room,
            peer=session.peer,
            to=relay.to,
            frame=relay.type,
        )

    def _leave(self, session: Session) -> None:
        room, peer = session.room, session.peer
        if room is None or peer is None:
            return
        members = self._rooms.get(room, {})
        if members.get(peer) is not session:
            return  # replaced by a newer connection of the same peer
        del members[peer]
        if not members:
            del self._rooms[room]
        self._broadcast(room, peer, presence_frame("left", peer))

    def _broadcast(self, room: str, sender: str, frame: dict[str, Any]) -> None:
        for peer, member in self._rooms.get(room, {}).items():
            if peer != sender:
                member.send(frame)
