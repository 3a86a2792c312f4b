"""`PeerConnection`: one aiortc RTCPeerConnection carrying PeerLab's data channel.

Follows the messaging app's design: the offerer creates the data channel before the
offer, and the SDP is handed out only once ICE gathering is complete (no trickle), so one
offer and one answer through the signaling server are all a connection needs. ICE
servers are always explicit; aiortc's default (a public Google STUN server) is never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    rtcsctptransport,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from peerlab.peer.protocol import FEATURES, announce_features, sdp_features

CHANNEL_LABEL = "peerlab"

SCTP_RTO_INITIAL = 1.0
"""SCTP's retransmission timeout before its first round trip is measured: RFC 9260
(2022) lowered RFC 4960's 3 s to 1 s; aiortc keeps 3 s. It times the association's INIT
and COOKIE exchanges, where one lost packet cost 3 s and two 9 s: under `lossy` (10 %
loss each way) data channels took over 15 s to open with ICE and DTLS long through.
aiortc reads the module's constant for each new association, hence setting it there."""
rtcsctptransport.SCTP_RTO_INITIAL = SCTP_RTO_INITIAL

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
"""SO_RCVBUF asked for the ICE sockets; the kernel caps it at net.core.rmem_max."""


class ConnectionSetupError(RuntimeError):
    """The remote's offer or answer is invalid, or ICE gathering, negotiation or channel
    opening did not finish in time."""


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN/TURN server, as the signaling server hands them out."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> IceServer:
        urls = obj["urls"]
        return cls(
            tuple([urls] if isinstance(urls, str) else urls),
            obj.get("username"),
            obj.get("credential"),
        )


@dataclass(frozen=True, slots=True)
class IceOptions:
    """Which candidates one link may use: `relay_only` forces TURN relays; `turn=False`
    leaves the TURN servers out (STUN only), as an app without a TURN service would."""

    relay_only: bool = False
    turn: bool = True

    def __post_init__(self) -> None:
        if self.relay_only and not self.turn:
            raise ValueError("relay_only needs TURN: relay_only=true with turn=false")

    def servers(self, ice_servers: Sequence[IceServer]) -> list[RTCIceServer]:
        chosen = []
        for server in ice_servers:
            urls = [u for u in server.urls if self.turn or not u.startswith(("turn:", "turns:"))]
            if urls:
                chosen.append(RTCIceServer(urls, server.username, server.credential))
        return chosen


def open_deadline(waited: float, path_found_timeout: float | None, state: str) -> float:
    """How long, in all, to wait for the data channel once `waited` seconds have gone by:
    no longer, unless the connection (ICE and DTLS, aiortc's `connectionState`) is
    "connected" and `path_found_timeout` allows more. Pure.

    A short wait suits a search for a path (aioice's checks back off and do not start
    again when a path comes back, so a fresh attempt finds it sooner), and a DTLS
    handshake that stalled (its retransmissions back off too: seen right after a
    partition healed), not what is left once DTLS is up: SCTP's and the channel's
    handshakes, a few round trips that take seconds on a long path, where starting over
    starts everything over. Over a satellite link (~0.6 s round trip) every reconnection
    gave up after 4 s with ICE completed and DTLS connected, and tried again, for good.
    Extended as soon as ICE alone was through, a reconnection on the default network once
    waited 3.5 s for a stalled DTLS handshake (partition_heal: 5.35 s, its limit 5)."""
    if path_found_timeout is not None and state == "connected":
        return max(waited, path_found_timeout)
    return waited


def next_open_timeout(current: float, ice_state: str, ceiling: float) -> float:
    """How long the next reconnection attempt waits for ICE and DTLS, after one that
    waited `current` and failed with ICE in `ice_state`. Pure.

    An attempt whose ICE found a path ("completed") but whose DTLS handshake did not
    finish was too short for this path's round trips, not searching for a path: the next
    gets twice as long, at most `ceiling`. Relayed over TURN/TCP across a satellite link
    (round trips of 1.5 to 2 s), every 4 s attempt gave up with DTLS still connecting,
    for good. One that found no path keeps its short wait: starting over finds a path
    that came back sooner than ICE's backed-off checks would."""
    return min(current * 2, ceiling) if ice_state == "completed" else current


class PeerConnection:
    def __init__(
        self,
        ice_servers: Sequence[IceServer] = (),
        *,
        ice: IceOptions = IceOptions(),
        gather_timeout: float = 10.0,
    ):
        config = RTCConfiguration(
            iceServers=ice.servers(ice_servers),
            iceTransportPolicy=RTCIceTransportPolicy.RELAY
            if ice.relay_only
            else RTCIceTransportPolicy.ALL,
        )
        self.pc = RTCPeerConnection(configuration=config)
        self._gather_timeout = gather_timeout
        self._gathered = asyncio.Event()
        self._channel_open = asyncio.get_running_loop().create_future()
        self._ended = asyncio.get_running_loop().create_future()
        """Set to aiortc's connection state once it is failed or closed: for good (aiortc
        has no ICE restart)."""
        self.features: frozenset[str] = frozenset()
        """The protocol extensions both ends announced for this connection."""
        self.pc.on("icegatheringstatechange", self._on_gathering_state)
        self.pc.on("datachannel", self._on_remote_channel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def create_offer_and_wait(self) -> str:
        """Create the data channel, then an offer; return its SDP once gathering completed."""
        self._watch_channel(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        await self._set_local_and_gather(await self.pc.createOffer())
        return announce_features(self.pc.localDescription.sdp)

    async def create_answer_and_wait(self, offer_sdp: str) -> str:
        """Apply a remote offer; return the answer's SDP once gathering completed."""
        await self._set_remote(offer_sdp, "offer")
        if self.pc.sctp is None:
            # aiortc takes an offer without media sections, and its answer would then wait
            # for a gathering that never starts: refuse it now, for what it is.
            raise ConnectionSetupError(
                "invalid remote description (offer SDP): no data channel (m=application)"
            )
        await self._set_local_and_gather(await self.pc.createAnswer())
        return announce_features(self.pc.localDescription.sdp)

    async def accept_answer(self, answer_sdp: str) -> None:
        await self._set_remote(answer_sdp, "answer")

    async def wait_channel_open(
        self, timeout: float, path_found_timeout: float | None = None
    ) -> RTCDataChannel:
        """The open data channel, waited for up to `timeout` seconds, or, when ICE and
        DTLS are through by then, up to `path_found_timeout` (see `open_deadline`). A
        connection that fails or closes meanwhile ends the wait at once: under `lossy`,
        an attempt whose connection had closed waited out its 15 s all the same."""
        waited = 0.0
        while True:
            try:
                async with asyncio.timeout(timeout - waited):
                    await asyncio.wait(
                        (self._channel_open, self._ended), return_when=asyncio.FIRST_COMPLETED
                    )
                if self._channel_open.done():
                    return self._channel_open.result()
                raise ConnectionSetupError(
                    f"connection {self._ended.result()} before the data channel opened "
                    f"(ICE state {self.pc.iceConnectionState})"
                )
            except TimeoutError:
                waited = timeout
                timeout = open_deadline(waited, path_found_timeout, self.pc.connectionState)
                if timeout <= waited:
                    raise ConnectionSetupError(
                        f"data channel not open after {waited:g}s (ICE state "
                        f"{self.pc.iceConnectionState}, connection state "
                        f"{self.pc.connectionState})"
                    ) from None

    def selected_candidate_pair(self) -> dict[str, Any] | None:
        """The nominated ICE pair, e.g. {"local": {"type": "relay", ...}, "remote": {...}}.

        aiortc keeps this only in private attributes, hence the guard: None if it moved.
        """
        try:
            ice = self.pc.sctp.transport.transport
            pair = ice._connection._nominated.get(1)
            if pair is None:
                return None
            return {
                "local": _describe(pair.local_candidate),
                "remote": _describe(pair.remote_candidate),
            }
        except AttributeError:
            return None

    async def close(self) -> None:
        if not self._channel_open.done():
            self._channel_open.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
        except Exception as exc:
            # aiortc's SDP parser fails on malformed text with whatever it hits first
            # (ValueError, KeyError, AttributeError, AssertionError...).
            raise ConnectionSetupError(f"invalid remote description ({kind} SDP): {exc!r}") from exc
        self.features = FEATURES & sdp_features(sdp)

    def _on_gathering_state(self) -> None:
        if self.pc.iceGatheringState == "complete":
            self._gathered.set()

    async def _set_local_and_gather(self, description: RTCSessionDescription) -> None:
        try:
            async with asyncio.timeout(self._gather_timeout):
                # aiortc gathers inside setLocalDescription; the event makes the wait explicit
                # and keeps it correct should gathering ever finish later.
                await self.pc.setLocalDescription(description)
                await self._gathered.wait()
            enlarge_udp_receive_buffers(self.pc)
        except TimeoutError:
            raise ConnectionSetupError(
                f"ICE gathering did not complete within {self._gather_timeout:g}s; "
                "check that the STUN/TURN servers are reachable"
            ) from None

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self._ended.done():
            self._ended.set_result(self.pc.connectionState)

    def _on_remote_channel(self, channel: RTCDataChannel) -> None:
        if channel.label == CHANNEL_LABEL:
            self._watch_channel(channel)

    def _watch_channel(self, channel: RTCDataChannel) -> None:
        def opened() -> None:
            if not self._channel_open.done():
                self._channel_open.set_result(channel)

        if channel.readyState == "open":
            opened()
        else:
            channel.on("open", opened)


def _describe(candidate: Any) -> dict[str, Any]:
    return {
        "type": candidate.type,
        "protocol": candidate.transport.lower(),
        "address": candidate.host,
        "port": candidate.port,
    }


def enlarge_udp_receive_buffers(pc: RTCPeerConnection, size: int = UDP_RECEIVE_BUFFER) -> None:
    """Give the connection's UDP sockets a large receive buffer.

    aiortc's SCTP sends in bursts, with no pacing. With Linux's default 208 KiB buffer
    a busy receiver drops datagrams even on loopback (seen: 13,000 drops in one
    5,000-message run), and SCTP's loss recovery in Python then costs several times the
    transfer itself. The sockets are reachable only through private attributes, hence the
    guard: if aiortc or aioice change, this does nothing.
    """
    try:
        protocols = pc.sctp.transport.transport.iceGatherer._connection._protocols
    except AttributeError:
        return
    for protocol in protocols:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.type == socket.SOCK_DGRAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
