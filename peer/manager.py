"""`PeerConnectionManager`: one link per remote peer, kept up until closed on purpose.

A link owns a `MessageChannel` for its whole life and a `PeerConnection` per attempt.
aiortc has no ICE restart, so a link that failed is rebuilt with a fresh
RTCPeerConnection, and its MessageChannel resends what was not acked.

Offers from both sides at once (glare) are resolved by `wins_glare`: the smaller peer id
keeps its offer and ignores the other's; the larger id drops its own attempt and answers.
The signaling server relays each pair's frames in order, so both sides see the same
conflict and make complementary decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peerlab.peer.connection import (
    ConnectionSetupError,
    IceOptions,
    PeerConnection,
    next_open_timeout,
)
from peerlab.peer.message_channel import ChannelConfig, MessageChannel, Observer
from peerlab.peer.protocol import check_peer_id
from peerlab.peer.signaling_client import SignalingClient, SignalingUnavailable
from peerlab.peer.state import P2PConnectionState, check_transition, wins_glare
from peerlab.peer.store import Store

StateCallback = Callable[[str, P2PConnectionState, P2PConnectionState], Any]
PC_CLOSE_GRACE = 0.5
"""How long shutting down waits for connections still closing in the background: what they
wait for is the TURN server's answer to a deallocation, one round trip on a live path and
never on a dead one (a peer that changed networks), where waiting longer only held up the
container's stop (network_handover's teardown took 3 s, 2 of them here)."""


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    connect_timeout: float = 15.0
    """Longest one attempt (offer → answer → open channel) may take."""
    gather_timeout: float = 10.0
    failed_after: float = 5.0
    """A link silent this long after being reported disconnected is rebuilt."""
    retry_backoff: tuple[float, float] = (0.25, 4.0)
    """First and largest pause between failed attempts (the first one again whenever the
    remote answered: it is there, only the path is not)."""
    reconnect_open_timeout: float = 4.0
    """After a link failed, how long one attempt waits for ICE to find a path before
    offering again. Short, because aioice's checks back off (0.5, 1, 2, 4, 8 s after the
    first) and do not restart when the remote's checks start getting through: a path
    that comes back mid-attempt would be found only at the next retransmission. Doubled
    after an attempt whose ICE found a path but whose DTLS did not finish (a long path:
    connection.next_open_timeout); once ICE and DTLS are through, the channel gets up to
    `connect_timeout` to open (connection.open_deadline)."""
    relay_only: bool = False
    channel: ChannelConfig = field(default_factory=ChannelConfig)


@dataclass(eq=False)
class _Link:
    remote_id: str
    channel: MessageChannel
    state: P2PConnectionState = P2PConnectionState.NEW
    wanted: bool = False
    ice: IceOptions = field(default_factory=IceOptions)
    pc: PeerConnection | None = None
    session: str | None = None
    offering: bool = False
    answer: asyncio.Future | None = None
    task: asyncio.Task | None = None
    """The attempt in progress (offering, or waiting for an answered channel to open)."""
    failure_timer: asyncio.TimerHandle | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0
    since_close: set[str] | None = None
    """The sessions this side began or answered since it last closed the link on purpose
    (reset to the connected one on connecting); None while no close of ours can still be
    echoed (it never closed the link, or the remote closed it since)."""


class PeerConnectionManager:
    def __init__(
        self,
        local_id: str,
        signaling: SignalingClient,
        *,
        epoch: str,
        config: ManagerConfig = ManagerConfig(),
        observer: Observer | None = None,
        store: Store | None = None,
    ):
        self.local_id = local_id
        self.signaling = signaling
        self.epoch = epoch
        self.config = config
        self._observer: Observer = observer or (lambda kind, fields, at: None)
        self._store = store
        self._links: dict[str, _Link] = {}
        self._state_callbacks: list[StateCallback] = []
        self._closing = False
        self._closing_pcs: set[asyncio.Task] = set()

    # ---- public API ----

    def on_state(self, callback: StateCallback) -> None:
        """Call `callback(remote_id, old_state, new_state)` on every state change."""
        self._state_callbacks.append(callback)

    def channel(self, remote_id: str) -> MessageChannel:
        """The MessageChannel to `remote_id` (created on first use; sends queue until connected)."""
        return self._link(remote_id).channel

    def state(self, remote_id: str) -> P2PConnectionState:
        link = self._links.get(remote_id)
        return link.state if link else P2PConnectionState.NEW

    def remote_ids(self) -> list[str]:
        return sorted(self._links)

    def selected_candidate_pair(self, remote_id: str) -> dict[str, Any] | None:
        link = self._links.get(remote_id)
        return link.pc.selected_candidate_pair() if link and link.pc else None

    def set_ice_options(
        self, remote_id: str, *, relay_only: bool | None = None, turn: bool | None = None
    ) -> IceOptions:
        """Change which candidates the link to `remote_id` uses from its next connection on
        (offered or answered); None keeps a setting. Raises ValueError for a bad mix."""
        link = self._link(remote_id)
        link.ice = IceOptions(
            link.ice.relay_only if relay_only is None else relay_only,
            link.ice.turn if turn is None else turn,
        )
        return link.ice

    async def connect(
        self,
        remote_id: str,
        *,
        relay_only: bool | None = None,
        turn: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        """Connect to `remote_id` and keep the link up; returns once it is connected."""
        self.set_ice_options(remote_id, relay_only=relay_only, turn=turn)
        link = self._link(remote_id)
        link.wanted = True
        if link.state is not P2PConnectionState.CONNECTED and link.task is None:
            self._start_offering(link)
        timeout = timeout or self.config.connect_timeout * 2
        try:
            async with asyncio.timeout(timeout):
                await link.connected.wait()
        except TimeoutError:
            present = sorted(self.signaling.peers)
            why = (
                f"{link.attempts} attempts"
                if remote_id in present
                else f"it is not in the room; present: {present or 'nobody'}"
            )
            raise ConnectionSetupError(
                f"{self.local_id} could not connect to {remote_id} within {timeout:g}s "
                f"(state {link.state}, {why})"
            ) from None

    async def disconnect(self, remote_id: str, reason: str = "disconnect") -> None:
        """Close the link on purpose; the remote is told (bye) and nobody reconnects it."""
        link = self._links.get(remote_id)
        if link is None:
            return
        link.wanted = False
        link.since_close = set()
        with contextlib.suppress(SignalingUnavailable):
            await self.signaling.send(
                {"type": "bye", "to": remote_id, "session": link.session or "", "reason": reason}
            )
        await self._teardown(link, P2PConnectionState.CLOSED)

    async def close(self) -> None:
        """Say bye on every link and start closing them (wait_closed waits for that)."""
        self._closing = True
        await asyncio.gather(*(self.disconnect(r, "shutdown") for r in list(self._links)))

    async def wait_closed(self) -> None:
        if self._closing_pcs:
            # Bounded: a TURN deallocation into a dead network waits out its transaction.
            await asyncio.wait(self._closing_pcs, timeout=PC_CLOSE_GRACE)

    # ---- signaling ----

    async def handle_signal(self, frame: dict[str, Any]) -> None:
        """Act on one frame from the signaling server (called in arrival order)."""
        kind = frame.get("type")
        if kind == "registered":
            self._on_registered()
        elif kind == "presence":
            await self._on_presence(frame["event"], frame["peer"])
        elif kind == "offer":
            await self._on_offer(frame["from"], frame["sdp"], frame.get("session", ""))
        elif kind == "answer":
            self._on_answer(frame["from"], frame["sdp"], frame.get("session", ""))
        elif kind == "bye":
            await self._on_bye(frame["from"], frame.get("session", ""))

    async def _on_bye(self, remote_id: str, session: str) -> None:
        link = self._links.get(remote_id)
        if link is None:
            return
        if link.wanted and link.since_close is not None and session not in link.since_close:
            # This side closed the link itself and wants it again since (a new connect,
            # or the remote's new offer), and the bye names none of the sessions begun
            # since: it was sent before the remote knew, most often by a remote closing
            # at the same moment as we did, naming the session it then had (ours, or an
            # attempt of its own we never saw). Obeying it would kill the new attempt
            # with nobody left to retry (seen: a disconnect followed at once by a
            # connect, the remote's bye arriving in between; over satellite links, for
            # an attempt of its own that never reached us).
            self._observe("stale_bye", peer=remote_id, session=session)
            return
        # Any other bye: the remote is done with us, whatever session it names: stop
        # reconnecting (a new offer from either side starts the link again).
        link.wanted = False
        link.since_close = None
        await self._teardown(link, P2PConnectionState.CLOSED)

    def _on_registered(self) -> None:
        # An offer sent just before the signaling connection died may have died with it
        # (a write into a dead TCP connection succeeds locally). Waiting for its answer
        # would take the whole answer timeout, and a remote that offers meanwhile loses
        # the glare to an offer it never got: offer again, on the new connection.
        for link in self._links.values():
            if link.offering and link.answer is not None and not link.answer.done():
                link.answer.set_exception(
                    ConnectionSetupError("signaling reconnected before the answer came")
                )

    async def _on_presence(self, event: str, remote_id: str) -> None:
        link = self._links.get(remote_id)
        if link is None or not link.wanted:
            return
        if (
            event == "joined"
            and link.pc is not None
            and link.state is not P2PConnectionState.CONNECTED
        ):
            # A new instance of the peer registered: the connection we had or were
            # building with the old one is dead.
            await self._fail(link, "peer re-registered")
        link.wake.set()

    async def _on_offer(self, remote_id: str, sdp: str, session: str) -> None:
        if self._closing:
            return
        link = self._link(remote_id)
        if link.offering and wins_glare(self.local_id, remote_id):
            self._observe("glare", peer=remote_id, kept="ours", session=session)
            return
        if link.offering:
            self._observe("glare", peer=remote_id, kept="theirs", session=session)
        link.wanted = True
        await self._drop_attempt(link)
        self._set_state(link, P2PConnectionState.CONNECTING)
        pc = PeerConnection(
            self.signaling.ice_servers,
            ice=link.ice,
            gather_timeout=self.config.gather_timeout,
        )
        link.pc, link.session = pc, session
        _began(link, session)
        # Answering waits for ICE gathering (seconds when a STUN server does not answer):
        # in a task of the link's own, so that the signaling frames behind this offer —
        # other peers' offers, keepalives — are not held up meanwhile.
        link.task = asyncio.create_task(self._answer(link, pc, sdp, session))

    async def _answer(self, link: _Link, pc: PeerConnection, sdp: str, session: str) -> None:
        try:
            answer = await pc.create_answer_and_wait(sdp)
            await self.signaling.send(
                {"type": "answer", "to": link.remote_id, "sdp": answer, "session": session}
            )
            channel = await pc.wait_channel_open(self.config.connect_timeout)
        except (ConnectionSetupError, SignalingUnavailable, ValueError) as exc:
            self._observe("error", peer=link.remote_id, error=f"answering failed: {exc}")
            await self._fail(link, f"answering failed: {exc}", pc)
            return
        self._attach(link, pc, channel)

    def _on_answer(self, remote_id: str, sdp: str, session: str) -> None:
        link = self._links.get(remote_id)
        if link is None or not link.offering or session != link.session:
            self._observe("stale_answer", peer=remote_id, session=session)
            return
        if link.answer is not None and not link.answer.done():
            link.answer.set_result(sdp)

    # ---- establishing ----

    def _start_offering(self, link: _Link, *, after_failure: bool = False) -> None:
        link.task = asyncio.create_task(self._offer_until_connected(link, after_failure))

    async def _offer_until_connected(self, link: _Link, after_failure: bool) -> None:
        low, high = self.config.retry_backoff
        pause = low
        open_timeout = (
            self.config.reconnect_open_timeout if after_failure else self.config.connect_timeout
        )
        if after_failure:
            # A remote that closed on purpose sends `bye` right after closing; give it the
            # time to arrive before offering a connection it does not want.
            await asyncio.sleep(low)
        while link.wanted and not self._closing:
            if link.remote_id not in self.signaling.peers:
                # Wait for its presence (or a retry tick) rather than offering into the void.
                link.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await link.wake.wait()
                pause = min(pause * 2, high)
                continue
            try:
                await self._offer_once(link, open_timeout)
                return
            except (ConnectionSetupError, SignalingUnavailable) as exc:
                self._observe("error", peer=link.remote_id, error=f"attempt failed: {exc}")
                if link.pc is not None:
                    open_timeout = next_open_timeout(
                        open_timeout, link.pc.pc.iceConnectionState, self.config.connect_timeout
                    )
                await self._close_pc(link)
                self._set_state(link, P2PConnectionState.FAILED)
                if _answered(link):
                    pause = low
            link.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await link.wake.wait()
            pause = min(pause * 2, high)

    async def _offer_once(self, link: _Link, open_timeout: float) -> None:
        link.attempts += 1
        self._set_state(link, P2PConnectionState.CONNECTING)
        session = uuid.uuid4().hex
        pc = PeerConnection(
            self.signaling.ice_servers,
            ice=link.ice,
            gather_timeout=self.config.gather_timeout,
        )
        link.pc, link.session, link.offering = pc, session, True
        _began(link, session)
        link.answer = asyncio.get_running_loop().create_future()
        try:
            sdp = await pc.create_offer_and_wait()
            await self.signaling.send(
                {"type": "offer", "to": link.remote_id, "sdp": sdp, "session": session}
            )
            self._observe("offer_sent", peer=link.remote_id, session=session)
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    answer = await link.answer
            except TimeoutError:
                raise ConnectionSetupError(
                    f"no answer from {link.remote_id} within {self.config.connect_timeout:g}s"
                ) from None
            link.offering = False
            await pc.accept_answer(answer)
            channel = await pc.wait_channel_open(open_timeout, self.config.connect_timeout)
        finally:
            link.offering = False
        self._attach(link, pc, channel)

    def _attach(self, link: _Link, pc: PeerConnection, channel: Any) -> None:
        link.task = None
        if link.since_close is not None:
            # The sessions superseded by this one can only name closes from before it.
            link.since_close = {link.session}
        channel.on("close", lambda: asyncio.ensure_future(self._on_channel_closed(link, pc)))
        pc.pc.on(
            "connectionstatechange", lambda: asyncio.ensure_future(self._on_pc_state(link, pc))
        )
        link.channel.attach(
            channel, lambda alive: self._on_liveness(link, pc, alive), features=pc.features
        )
        self._set_state(
            link, P2PConnectionState.CONNECTED, candidate_pair=pc.selected_candidate_pair()
        )

    # ---- losing a link ----

    def _on_liveness(self, link: _Link, pc: PeerConnection, alive: bool) -> None:
        if link.pc is not pc:
            return
        if link.failure_timer is not None:
            link.failure_timer.cancel()
            link.failure_timer = None
        if alive:
            self._set_state(link, P2PConnectionState.CONNECTED)
            return
        self._set_state(link, P2PConnectionState.DISCONNECTED, reason="no heartbeat")
        link.failure_timer = asyncio.get_running_loop().call_later(
            self.config.failed_after,
            lambda: asyncio.ensure_future(self._fail(link, "no heartbeat", pc)),
        )

    async def _on_channel_closed(self, link: _Link, pc: PeerConnection) -> None:
        if link.pc is pc:
            await self._fail(link, "data channel closed", pc)

    async def _on_pc_state(self, link: _Link, pc: PeerConnection) -> None:
        if link.pc is pc and pc.pc.connectionState in ("failed", "closed"):
            await self._fail(link, f"connection {pc.pc.connectionState}", pc)

    async def _fail(self, link: _Link, reason: str, pc: PeerConnection | None = None) -> None:
        """Replace a dead connection: tear it down and, if the link is wanted, offer again."""
        if pc is not None and link.pc is not pc:
            return  # already replaced
        if link.state is P2PConnectionState.CLOSED:
            return
        self._set_state(link, P2PConnectionState.FAILED, reason=reason)
        await self._drop_attempt(link)
        # A `bye` may have closed the link while the old connection was being torn down.
        if link.wanted and link.state is P2PConnectionState.FAILED and not self._closing:
            self._start_offering(link, after_failure=True)

    async def _drop_attempt(self, link: _Link) -> None:
        task, link.task = link.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        link.offering = False
        await self._close_pc(link)

    async def _close_pc(self, link: _Link) -> None:
        if link.failure_timer is not None:
            link.failure_timer.cancel()
            link.failure_timer = None
        link.channel.detach()
        pc, link.pc = link.pc, None
        if pc is not None:
            # In the background: closing deallocates the TURN allocation, which over a
            # dead path (a peer that changed networks) waits ~30 s for the TURN server's
            # answer, and the next attempt must not wait for that.
            task = asyncio.create_task(pc.close())
            self._closing_pcs.add(task)
            task.add_done_callback(self._closing_pcs.discard)

    async def _teardown(self, link: _Link, state: P2PConnectionState) -> None:
        await self._drop_attempt(link)
        self._set_state(link, state)

    # ---- bookkeeping ----

    def _link(self, remote_id: str) -> _Link:
        link = self._links.get(remote_id)
        if link is None:
            check_peer_id("peer", remote_id)
            if remote_id == self.local_id:
                raise ValueError("a peer cannot connect to itself")
            channel = MessageChannel(
                self.local_id,
                remote_id,
                epoch=self.epoch,
                config=self.config.channel,
                observer=self._observer,  # the channel's events carry the `peer`
                store=self._store,
            )
            link = self._links[remote_id] = _Link(
                remote_id, channel, ice=IceOptions(relay_only=self.config.relay_only)
            )
        return link

    def _observe(self, kind: str, **fields: Any) -> None:
        self._observer(kind, fields, None)

    def _set_state(self, link: _Link, state: P2PConnectionState, **details: Any) -> None:
        if state is P2PConnectionState.CONNECTED:
            link.connected.set()
        else:
            link.connected.clear()
        if state is link.state:
            return
        check_transition(link.state, state)
        old, link.state = link.state, state
        self._observe("state", peer=link.remote_id, old=old.value, new=state.value, **details)
        for callback in self._state_callbacks:
            callback(link.remote_id, old, state)


def _answered(link: _Link) -> bool:
    """Did the remote answer the link's last offer?"""
    answer = link.answer
    return (
        answer is not None
        and answer.done()
        and not answer.cancelled()
        and answer.exception() is None
    )


def _began(link: _Link, session: str) -> None:
    """Count `session` among those begun since this side last closed the link itself."""
    if link.since_close is not None:
        link.since_close.add(session)
