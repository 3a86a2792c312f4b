"""GET /events/stream over real HTTP: a client that goes away ends its stream quietly."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from peerlab.peer.control import ControlServer

pytestmark = pytest.mark.integration


async def _open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that has read the stream's first event (the agent's `started`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /events/stream HTTP/1.1\r\nHost: agent\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readline()  # the chunk's size
    event = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert event["kind"] == "started"
    return reader, writer


async def test_a_stream_client_that_disconnects_leaves_no_error(make_agent, caplog):
    caplog.set_level(logging.WARNING)
    agent = await make_agent("alice")
    server = ControlServer(agent, "127.0.0.1", 0)
    await server.start()
    try:
        _, writer = await _open_stream(server.port)
        writer.transport.abort()
        # The stream's handler notices the client is gone when it writes the next event.
        for note in range(3):
            agent.events.record("note", n=note)
            await asyncio.sleep(0.1)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/healthz") as response,
        ):
            assert response.status == 200
            assert (await response.json())["peer"] == "alice"
    finally:
        await server.close()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert failures == [], [r.getMessage() for r in failures]
    assert [e for e in agent.events.since(0) if e["kind"] == "error"] == []
