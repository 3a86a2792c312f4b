"""PeerLab's messaging path: a `peer.agent.Agent` per process, connected through a real
signaling server, sending with `MessageChannel.send_text` and counting what is delivered.

Phases, as in bench/raw_end.py: `Workload.round_trips` send→ack round trips one at a time
(the last `rtt_samples` are measured: from `send_text` to the ACK handler receiving the
message), then `Workload.messages` texts as fast as `MessageChannel.drain` lets them go.
The receiving end counts deliveries (its TEXT handler); the sending end also records when
the last message was acked. Connect time runs from the moment the receiver is present in
the room (both ends up, as in bench/raw_end.py) to the connected link.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench import wire
from bench.processes import Control
from bench.workload import CONVERSATION, Workload
from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.message_channel import MessageChannel
from peerlab.peer.protocol import ChannelMessage, MessageType, encode
from peerlab.peer.store import parse_sync
from peerlab.signaling.auth import make_token


def _connection(agent: Agent, remote: str) -> Any:
    """The link's current RTCPeerConnection, for its wire counters (bench/wire.py): the
    manager keeps it private, so None if that ever moves."""
    try:
        return agent.manager._links[remote].pc.pc
    except (AttributeError, KeyError):
        return None


async def _present(agent: Agent, remote: str, timeout: float = 30.0) -> None:
    """Return once `remote` is registered in the room: the other end is up."""
    since = agent.events.last_seq
    if remote not in agent.signaling.peers:
        match = {"kind": "presence", "event": "joined", "peer": remote}
        await agent.events.wait_for(match, since=since, timeout=timeout)


def _agent(url: str, room: str, secret: str, peer_id: str, store: str | None, folder: str) -> Agent:
    """An agent in memory (`store` None) or with a durable store synced as `store` says
    ("always", or milliseconds: docs/store.md), kept in `folder`."""
    return Agent(
        AgentConfig(
            peer_id,
            room,
            url,
            make_token(secret, room, peer_id),
            store=Path(folder) / f"{peer_id}.db" if store else None,
            store_sync_ms=parse_sync(store) if store else None,
        )
    )


async def sender(
    control: Control,
    workload: Workload,
    url: str,
    room: str,
    secret: str,
    local: str,
    remote: str,
    store: str | None,
    folder: str,
) -> None:
    agent = _agent(url, room, secret, local, store, folder)
    channel = agent.manager.channel(remote)
    acked = 0
    all_acked = asyncio.Event()
    last_acked = 0.0
    awaited_id: str | None = None
    ack: asyncio.Future | None = None

    def on_ack(message: ChannelMessage) -> None:
        nonlocal acked, last_acked
        acked += 1
        if message.id == awaited_id and not ack.done():
            ack.set_result(time.perf_counter())
        if acked == workload.total_messages:
            last_acked = time.monotonic()
            all_acked.set()

    channel.on(MessageType.ACK, on_ack)
    try:
        await agent.start()
        await _present(agent, remote)
        started = time.perf_counter()
        await agent.connect(remote)
        connect_s = time.perf_counter() - started
        control.progress(f"connected in {connect_s * 1000:.0f} ms")

        body = workload.body()
        loop = asyncio.get_running_loop()
        rtts = []
        control.start_profile("round-trips")
        for i in range(workload.round_trips):
            ack = loop.create_future()
            sent = time.perf_counter()
            awaited_id = channel.send_text(CONVERSATION, body).id
            received = await ack
            if i >= workload.warmup:
                rtts.append(received - sent)
        control.stop_profile()
        control.progress(f"{len(rtts)} round trips done")

        control.start_profile("throughput")
        pc = _connection(agent, remote)
        wire_before = wire.sent(pc)
        cpu = time.process_time()
        frames = channel.frames_sent
        first_sent = time.monotonic()
        last_message = await _send_bulk(channel, body, workload.messages)
        last_sent = time.monotonic()
        await all_acked.wait()
        cpu = time.process_time() - cpu
        frames = channel.frames_sent - frames
        on_wire = wire.since(wire_before, wire.sent(pc))
        control.stop_profile()

        control.result(
            {
                "connect_s": connect_s,
                "rtts": rtts,
                "first_sent": first_sent,
                "last_sent": last_sent,
                "last_acked": last_acked,
                "cpu_s": cpu,
                "frames": frames,
                "frame_bytes": len(encode(last_message).encode()),
                "wire": on_wire,
                "retransmissions": len(agent.events.since(0, {"kind": "retransmitted"})),
            }
        )
        await control.stopped()
    finally:
        await agent.stop()


async def _send_bulk(channel: MessageChannel, body: str, count: int) -> ChannelMessage:
    """Send `count` texts with `drain()` backpressure; returns the last one sent."""
    for _ in range(count):
        message = channel.send_text(CONVERSATION, body)
        await channel.drain()
    return message


async def receiver(
    control: Control,
    workload: Workload,
    url: str,
    room: str,
    secret: str,
    local: str,
    remote: str,
    store: str | None,
    folder: str,
) -> None:
    agent = _agent(url, room, secret, local, store, folder)
    delivered = 0
    last_delivered = 0.0
    cpu = 0.0
    frames = 0
    wire_before: tuple[int, int] | None = None
    done = asyncio.Event()
    channel = agent.manager.channel(remote)

    def on_text(_message: ChannelMessage) -> None:
        nonlocal delivered, last_delivered, cpu, frames, wire_before
        delivered += 1
        if delivered == workload.round_trips:
            control.start_profile("throughput")
            wire_before = wire.sent(_connection(agent, remote))
            cpu = time.process_time()
            frames = channel.frames_sent
        elif delivered == workload.total_messages:
            last_delivered = time.monotonic()
            cpu = time.process_time() - cpu
            frames = channel.frames_sent - frames
            control.stop_profile()
            done.set()

    # Registered before the agent is reachable, so no delivery is missed.
    channel.on(MessageType.TEXT, on_text)
    try:
        await agent.start()
        await done.wait()
        control.result(
            {
                "last_delivered": last_delivered,
                "cpu_s": cpu,
                "frames": frames,
                "wire": wire.since(wire_before, wire.sent(_connection(agent, remote))),
                "duplicates": len(agent.events.since(0, {"kind": "duplicate"})),
            }
        )
        await control.stopped()
    finally:
        await agent.stop()
