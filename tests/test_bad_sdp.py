"""An offer or answer whose SDP is not a usable description fails at once, saying so,
instead of after the ICE gathering timeout with advice about STUN/TURN servers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from peerlab.peer.connection import ConnectionSetupError, PeerConnection
from peerlab.signaling.auth import make_token

AT_ONCE = 1.0  # seconds; the gathering timeout it used to take is 10


@pytest.fixture
async def real_offer() -> AsyncIterator[str]:
    offerer = PeerConnection()
    yield await offerer.create_offer_and_wait()
    await offerer.close()


def _truncations(offer: str) -> list[str]:
    """Cut inside the data channel's media section, and before it."""
    return [offer[: len(offer) // 2], offer[: offer.index("m=application")]]


async def _refused(pc: PeerConnection, apply) -> str:
    started = time.monotonic()
    with pytest.raises(ConnectionSetupError) as info:
        await apply()
    assert time.monotonic() - started < AT_ONCE
    await pc.close()
    return str(info.value)


async def test_a_garbage_offer_is_refused_at_once():
    pc = PeerConnection()
    error = await _refused(pc, lambda: pc.create_answer_and_wait("garbage"))
    assert error.startswith("invalid remote description (offer SDP)")
    assert "STUN" not in error


async def test_a_truncated_offer_is_refused_at_once(real_offer):
    for sdp in _truncations(real_offer):
        pc = PeerConnection()
        error = await _refused(pc, lambda sdp=sdp, pc=pc: pc.create_answer_and_wait(sdp))
        assert error.startswith("invalid remote description (offer SDP): "), sdp


async def test_a_garbage_answer_is_refused_at_once():
    pc = PeerConnection()
    await pc.create_offer_and_wait()
    error = await _refused(pc, lambda: pc.accept_answer("garbage"))
    assert error.startswith("invalid remote description (answer SDP): ")


async def test_the_agent_reports_a_garbage_offer_at_once(make_agent, signaling_server):
    alice = await make_agent("alice")
    room = alice.config.room
    token = make_token(signaling_server.config.secret, room, "mallory")
    async with connect(signaling_server.url) as mallory:
        await mallory.send(
            json.dumps({"type": "register", "room": room, "peer": "mallory", "token": token})
        )
        await mallory.recv()  # registered
        since = alice.events.last_seq
        started = time.monotonic()
        await mallory.send(
            json.dumps({"type": "offer", "to": "alice", "sdp": "garbage", "session": "s1"})
        )
        [event] = await alice.events.wait_for(
            {"kind": "error", "peer": "mallory"}, since=since, timeout=AT_ONCE
        )
    assert time.monotonic() - started < AT_ONCE
    assert event["error"].startswith(
        "answering failed: invalid remote description (offer SDP): no data channel"
    )
