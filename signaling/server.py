"""The signaling server: rooms of registered peers relaying WebRTC signaling frames.

:class:`SignalingServer` wraps a ``websockets`` asyncio server. Every client is
bounded: each TCP connection holds a slot of :class:`ConnectionLimits` from
accept to close (caps overall and per source address), must register within
``register_timeout``, and gets a :class:`Session` whose outbound queue is
bounded in frames and bytes, so a peer that stops reading never stalls the
peers that send to it nor grows the server. Frame handling itself is
synchronous and therefore atomic with respect to the room table. Parsing and
validation live in :mod:`signaling.frames`, credentials in :mod:`signaling.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from peerlab.signaling.limits import (
    ADDRESS_FULL,
    SERVER_FULL,
    ConnectionLimits,
    Slot,
    address_key,
)
from peerlab.signaling.loop_errors import LoopErrorLog
from peerlab.signaling.outbox import Outbox
from peerlab.signaling.ratelimit import LogThrottle, TokenBucket

log = logging.getLogger("signaling")

CLOSE_AUTH_FAILED = 4001
CLOSE_REPLACED = 4002
CLOSE_REGISTER_TIMEOUT = 4003
CLOSE_SLOW_CONSUMER = 4008
RATE_LIMIT_ERROR_INTERVAL = 1.0  # seconds between two rate_limited errors to one client

# HTTP answers to an upgrade refused by the connection caps.
REFUSALS = {
    SERVER_FULL: (HTTPStatus.SERVICE_UNAVAILABLE, "server full\n"),
    ADDRESS_FULL: (HTTPStatus.TOO_MANY_REQUESTS, "too many connections from this address\n"),
}


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
    # Frames, and bytes, queued for a client that does not read before it is disconnected.
    outbox_size: int = 1024
    outbox_bytes: int = 1024 * 1024
    # The opening handshake, then the register frame, must each come within these (s).
    handshake_timeout: float = 10.0
    register_timeout: float = 10.0
    # Open WebSocket connections, overall and per source address; TCP connections
    # still in their opening handshake. Together they bound the file descriptors used.
    max_connections: int = 512
    max_connections_per_address: int = 64
    max_handshakes: int = 128
    # websockets' own buffers: received frames queued per connection (high-water
    # mark), and bytes in a connection's write buffer before sending waits.
    max_queue: int = 4
    write_limit: int = 32 * 1024
    # At most one log line per this many seconds for each kind of repeated error.
    log_interval: float = 10.0


class Session:
    """One client connection: its registration, rate limit and outbound queue."""

    def __init__(self, websocket: ServerConnection, bucket: TokenBucket, outbox: Outbox):
        self.websocket = websocket
        self.bucket = bucket
        self.room: str | None = None
        self.peer: str | None = None
        self.closing = False
        self.last_rate_error: float | None = None
        self.dropped = 0
        self._outbox = outbox
        self._close_request: tuple[int, str] | None = None
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())
        self._closer: asyncio.Task[None] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame; never blocks. A client too slow to drain its queue is dropped."""
        if self.closing:
            return
        if self._outbox.push(encode(frame)):
            self._wakeup.set()
            return
        log_event(
            logging.WARNING,
            "slow_consumer",
            room=self.room,
            peer=self.peer,
            frames=len(self._outbox),
            bytes=self._outbox.bytes,
        )
        self.drop(CLOSE_SLOW_CONSUMER, "slow consumer")

    def close(self, code: int, reason: str) -> None:
        """Close the connection once the frames already queued have been sent."""
        if self.closing:
            return
        self.closing = True
        self._close_request = (code, reason)
        self._wakeup.set()

    def drop(self, code: int, reason: str) -> None:
        """Close the connection now; the frames still queued are thrown away."""
        self.closing = True
        self.stop()
        if self._closer is None:
            self._closer = asyncio.create_task(self.websocket.close(code, reason))

    def stop(self) -> None:
        """Stop the writer and free the queued frames; called once the connection is over."""
        self._writer.cancel()
        self._outbox.clear()

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = self._outbox.pop()
                if text is not None:
                    await self.websocket.send(text)
                elif self._close_request is not None:
                    await self.websocket.close(*self._close_request)
                    return
                else:
                    self._wakeup.clear()
                    await self._wakeup.wait()


class LimitedConnection(ServerConnection):
    """A websockets connection that holds a :class:`Slot` from TCP accept to close.

    ``accept`` gives the slot, or ``None`` when too many handshakes are pending:
    the connection is then closed before anything is read, so that connections
    which never send a request cannot hold more descriptors than the caps allow.
    """

    def __init__(self, *args: Any, accept: Callable[[str], Slot | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accept = accept
        self.slot: Slot | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.slot = self._accept(address_key(_host(transport.get_extra_info("peername"))))
        if self.slot is None:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.slot is not None:
            self.slot.release()


def _host(peername: Any) -> str:
    """The source address of a connection (IPv4 or IPv6 tuple, or a Unix socket path)."""
    return str(peername[0]) if isinstance(peername, tuple) else str(peername)


class SignalingServer:
    """WebSocket signaling server.

    Usage::

        async with SignalingServer(ServerConfig(secret="s", host="127.0.0.1", port=0)) as server:
            url = server.url  # ws://127.0.0.1:<port>/

    ``monotonic`` (rate limiting, log throttling) and ``wall_clock`` (TURN credential
    expiry) can be replaced in tests.
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
        self._limits = ConnectionLimits(
            config.max_connections, config.max_connections_per_address, config.max_handshakes
        )
        self._throttle = LogThrottle(config.log_interval)
        self._loop_errors = LoopErrorLog(self._throttle, monotonic)

    # Lifecycle.

    async def start(self) -> None:
        """Bind and start accepting connections."""
        config = self.config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            create_connection=functools.partial(LimitedConnection, accept=self._accept),
            process_request=self._process_request,
            open_timeout=config.handshake_timeout,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            max_size=config.max_size,
            max_queue=config.max_queue,
            write_limit=config.write_limit,
        )
        self._loop_errors.install(asyncio.get_running_loop())
        log_event(logging.INFO, "server_started", host=config.host, port=self.port)

    async def close(self) -> None:
        """Close every connection with 1001 (going away) and stop the server."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._loop_errors.uninstall()
        for kind, suppressed in self._throttle.drain().items():
            log_event(logging.WARNING, "log_suppressed", kind=kind, suppressed=suppressed)
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
            "connections": self._limits.open,
        }

    def _log_throttled(self, level: int, event: str, kind: str, **fields: Any) -> None:
        """Log ``event`` unless one of the same ``kind`` was logged within ``log_interval``."""
        suppressed = self._throttle.allow(kind, self._monotonic())
        if suppressed is not None:
            log_event(level, event, suppressed=suppressed, **fields)

    # HTTP and admission.

    def _accept(self, address: str) -> Slot | None:
        slot = self._limits.accept(address)
        if slot is None:
            self._log_throttled(
                logging.WARNING,
                "connection_refused",
                "connection_refused:handshakes_full",
                reason="handshakes_full",
                remote=address,
            )
        return slot

    def _process_request(self, connection: LimitedConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == "/healthz":
            # Answered whatever the caps: it is how an operator sees a full server.
            return self._healthz(connection)
        assert connection.slot is not None  # without a slot it was closed unread
        refusal = connection.slot.admit()
        if refusal is None:
            return None
        self._log_throttled(
            logging.WARNING,
            "connection_refused",
            f"connection_refused:{refusal}",
            reason=refusal,
            remote=connection.slot.address,
        )
        status, text = REFUSALS[refusal]
        return connection.respond(status, text)

    def _healthz(self, connection: ServerConnection) -> Response:
        response = connection.respond(HTTPStatus.OK, json.dumps(self.stats()) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    # Connections.

    async def _handle(self, websocket: ServerConnection) -> None:
        config = self.config
        bucket = TokenBucket(config.rate, config.burst, self._monotonic())
        session = Session(websocket, bucket, Outbox(config.outbox_size, config.outbox_bytes))
        deadline = asyncio.get_running_loop().call_later(
            config.register_timeout, self._register_expired, session
        )
        log_event(logging.DEBUG, "connected", remote=str(websocket.remote_address))
        try:
            async for message in websocket:
                if not session.closing:
                    self._receive(session, message)
        except ConnectionClosed:
            pass  # abnormal closure, e.g. 1009 for an oversized frame
        finally:
            deadline.cancel()
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

    def _register_expired(self, session: Session) -> None:
        if session.peer is not None or session.closing:
            return
        self._log_throttled(
            logging.INFO,
            "register_timeout",
            "register_timeout",
            remote=_host(session.websocket.remote_address),
        )
        session.drop(CLOSE_REGISTER_TIMEOUT, "register timeout")

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
