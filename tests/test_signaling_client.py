"""`SignalingClient.close()` over a network that went silent: the agent stops within its
close timeout instead of websockets' 10 s (an agent whose router a teardown stopped first
took 10.8 s to exit on SIGTERM). A real server, reached through a TCP relay that stops
forwarding without closing anything, as a stopped router does."""

from __future__ import annotations

import asyncio

from peerlab.peer.signaling_client import CLOSE_TIMEOUT, SignalingClient
from peerlab.signaling.auth import make_token

SECRET = "test-secret"  # the `signaling_server` fixture's (conftest.py)


class SilencingRelay:
    """Forwards TCP both ways to `port` until `silence()`: then nothing more crosses, and
    no connection is closed."""

    def __init__(self, port: int):
        self.port = port
        self._transports: list[asyncio.Transport] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._transports += [writer.transport, up_writer.transport]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def silence(self) -> None:
        for transport in self._transports:
            transport.pause_reading()

    async def close(self) -> None:
        for transport in self._transports:
            transport.abort()
        self.server.close()


async def test_closing_over_a_silent_network_waits_the_close_timeout_not_ten_seconds(
    signaling_server,
):
    relay = SilencingRelay(signaling_server.port)
    port = await relay.start()
    token = make_token(SECRET, "room", "alice")
    client = SignalingClient(f"ws://127.0.0.1:{port}", "room", "alice", token)

    async def ignore(frame: dict) -> None:
        pass

    await client.start(ignore)
    assert client.connected
    relay.silence()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.close()
    took = loop.time() - started
    await relay.close()
    # Without a bound of its own, the closing handshake waited websockets' 10 s.
    assert took < CLOSE_TIMEOUT + 2.0, f"close() took {took:.1f}s over a silent network"
