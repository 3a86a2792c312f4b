"""The baseline: two bare aiortc RTCPeerConnections with one ordered, reliable data channel.

No signaling server: the offer and the answer cross a multiprocessing pipe between the two
processes. No STUN either (`iceServers=[]`), so only host candidates are gathered.

Connect time is measured as the agent's is: from the moment both ends are up (the
receiver says so through the pipe) to the open data channel, each RTCPeerConnection made
on the clock (the agent makes a fresh one, DTLS certificate included, for each attempt,
and its answerer only when the offer comes).

Phases, in the order the receiving end counts them: `Workload.round_trips` ping-pongs
(the receiver echoes each message; the last `rtt_samples` are measured), then
`Workload.messages` messages one way as fast as the channel takes them, with the same
backpressure as `MessageChannel.drain`: stop sending while `bufferedAmount` is over
`BUFFERED_LOW` and resume on `bufferedamountlow`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from bench import wire
from bench.processes import Control, receive
from bench.workload import Workload
from peerlab.peer.connection import enlarge_udp_receive_buffers
from peerlab.peer.message_channel import ChannelConfig

BUFFERED_LOW = ChannelConfig().buffered_low

READY = "ready"
"""What the receiver sends through the pipe once it is up and waiting for the offer."""


def _peer_connection() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def sender(control: Control, peer: Connection, workload: Workload) -> None:
    if (ready := await receive(peer)) != READY:
        raise RuntimeError(f"expected {READY!r} from the receiver, got {ready!r}")
    started = time.perf_counter()
    pc = _peer_connection()
    try:
        channel = pc.createDataChannel("bench", ordered=True)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        enlarge_udp_receive_buffers(pc)  # as the agent does: compare messaging, not drops
        peer.send(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(await receive(peer), "answer"))
        await opened.wait()
        connect_s = time.perf_counter() - started
        control.progress(f"connected in {connect_s * 1000:.0f} ms")

        frame = workload.raw_frame()
        rtts = await _ping_pong(channel, frame, workload)
        control.progress(f"{len(rtts)} round trips done")

        # The receiver answers the last message, so the sender's CPU time covers the
        # acknowledgements (SACKs) of everything, as the agent's covers its acks.
        done = asyncio.get_running_loop().create_future()
        channel.on("message", lambda _message: done.done() or done.set_result(None))
        control.start_profile("throughput")
        wire_before = wire.sent(pc)
        cpu = time.process_time()
        first_sent = time.monotonic()
        await _send_bulk(channel, frame, workload.messages)
        last_sent = time.monotonic()
        await done
        cpu = time.process_time() - cpu
        on_wire = wire.since(wire_before, wire.sent(pc))
        control.stop_profile()

        control.result(
            {
                "connect_s": connect_s,
                "rtts": rtts,
                "first_sent": first_sent,
                "last_sent": last_sent,
                "cpu_s": cpu,
                "frames": workload.messages,  # one frame per message, nothing back
                "frame_bytes": len(frame.encode()),
                "wire": on_wire,
            }
        )
        await control.stopped()
    finally:
        await pc.close()


async def _ping_pong(channel: RTCDataChannel, frame: str, workload: Workload) -> list[float]:
    loop = asyncio.get_running_loop()
    echo: asyncio.Future | None = None

    def on_echo(_message: str | bytes) -> None:
        if echo is not None and not echo.done():
            echo.set_result(time.perf_counter())

    channel.on("message", on_echo)
    rtts = []
    for i in range(workload.round_trips):
        echo = loop.create_future()
        sent = time.perf_counter()
        channel.send(frame)
        received = await echo
        if i >= workload.warmup:
            rtts.append(received - sent)
    channel.remove_listener("message", on_echo)
    return rtts


async def _send_bulk(channel: RTCDataChannel, frame: str, count: int) -> None:
    low = asyncio.Event()
    channel.bufferedAmountLowThreshold = BUFFERED_LOW
    channel.on("bufferedamountlow", low.set)
    for _ in range(count):
        channel.send(frame)
        while channel.bufferedAmount > BUFFERED_LOW:
            low.clear()
            await low.wait()


async def receiver(control: Control, peer: Connection, workload: Workload) -> None:
    peer.send(READY)
    offer = await receive(peer)
    pc = _peer_connection()
    received = 0
    last_received = 0.0
    cpu = 0.0
    wire_before: tuple[int, int] | None = None
    done = asyncio.Event()

    def on_message(message: str | bytes) -> None:
        nonlocal received, last_received, cpu, wire_before
        received += 1
        if received <= workload.round_trips:
            channel.send(message)
            if received == workload.round_trips:
                control.start_profile("throughput")
                wire_before = wire.sent(pc)
                cpu = time.process_time()
        elif received == workload.total_messages:
            last_received = time.monotonic()
            channel.send("done")
            cpu = time.process_time() - cpu
            control.stop_profile()
            done.set()

    channel: RTCDataChannel | None = None

    @pc.on("datachannel")
    def on_channel(opened: RTCDataChannel) -> None:
        nonlocal channel
        channel = opened
        channel.on("message", on_message)

    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        enlarge_udp_receive_buffers(pc)
        peer.send(pc.localDescription.sdp)
        await done.wait()
        control.result(
            {
                "last_received": last_received,
                "cpu_s": cpu,
                "frames": 1,  # "done"
                "wire": wire.since(wire_before, wire.sent(pc)),
            }
        )
        await control.stopped()
    finally:
        await pc.close()


def pipe() -> tuple[Connection, Connection]:
    """The link the two ends exchange their SDP over (sender's end, receiver's end)."""
    return multiprocessing.get_context("spawn").Pipe()
