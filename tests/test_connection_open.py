"""Waiting for the data channel (peer/connection.py) ends as soon as the connection it
waits on has failed or closed for good, not at its timeout; real aiortc connections in
one process, no signaling."""

from __future__ import annotations

import asyncio
import time

import pytest

from peerlab.peer.connection import SCTP_RTO_INITIAL, ConnectionSetupError, PeerConnection


async def _negotiated() -> tuple[PeerConnection, PeerConnection]:
    offerer, answerer = PeerConnection(), PeerConnection()
    answer = await answerer.create_answer_and_wait(await offerer.create_offer_and_wait())
    await offerer.accept_answer(answer)
    return offerer, answerer


async def test_the_channel_opens_over_a_negotiated_connection():
    offerer, answerer = await _negotiated()
    channel = await offerer.wait_channel_open(10.0)
    assert channel.readyState == "open"
    await asyncio.gather(offerer.close(), answerer.close())


async def test_a_connection_closed_before_its_channel_opens_ends_the_wait_at_once():
    """Seen under `lossy`: an attempt whose connection aiortc had closed waited out its
    whole 15 s before the agent tried again."""
    offerer, answerer = await _negotiated()
    waiting = asyncio.create_task(offerer.wait_channel_open(10.0))
    await asyncio.sleep(0)
    started = time.monotonic()
    await offerer.pc.close()  # aiortc's own object: as when aiortc ends the connection
    with pytest.raises(ConnectionSetupError, match="connection closed before the data channel"):
        await waiting
    assert time.monotonic() - started < 1.0
    await answerer.close()


async def test_a_new_association_retransmits_after_rfc_9260s_initial_timeout():
    pc = PeerConnection()
    await pc.create_offer_and_wait()
    # aiortc's private attribute: should it move, this fails rather than the tuning
    # silently doing nothing.
    assert pc.pc.sctp._rto == SCTP_RTO_INITIAL == 1.0
    await pc.close()
