"""`Agent`: one PeerLab peer — signaling client, connection manager, histories and event log.

The agent is what scenario scripts drive (through the control API in peer/control.py)
and what `python -m peerlab.peer` runs. It records every observation of its parts in its event
log and keeps, per remote peer, the conversation history a chat app would show.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerlab.peer import ice_nomination
from peerlab.peer.events import EventLog
from peerlab.peer.history import ConversationHistory
from peerlab.peer.manager import ManagerConfig, PeerConnectionManager
from peerlab.peer.protocol import (
    RELIABLE_TYPES,
    ChannelMessage,
    MessageType,
    ProtocolError,
    check_peer_id,
    decode,
)
from peerlab.peer.signaling_client import SignalingClient, SignalingUnavailable
from peerlab.peer.state import P2PConnectionState
from peerlab.peer.store import Store

# aioice sends on the latest nominated ICE pair, not the best one: under load a relay pair
# replaced the host pair on 71-130 of 240 link ends of a 16-agent mesh (ice_nomination.py).
ice_nomination.install()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    peer_id: str
    room: str
    signaling_url: str
    token: str
    event_log: Path | None = None
    store: Path | None = None
    """The durable store (peer/store.py, docs/store.md); None keeps everything in memory."""
    store_sync_ms: float | None = None
    """None: commit every accepted message and delivery; N: at most every N ms."""
    file_owner: tuple[int, int] | None = None
    """(uid, gid) the event log and the store are handed to (both are 0600)."""
    signaling_ping: float = 20.0
    """Keepalive ping interval and timeout (s) of the signaling WebSocket: a connection
    that died silently (the agent changed networks) is noticed within twice this."""
    manager: ManagerConfig = field(default_factory=ManagerConfig)


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.peer_id = config.peer_id
        self.events = EventLog(config.peer_id, config.event_log, owner=config.file_owner)
        self.store = (
            Store.open(config.store, config.store_sync_ms, config.file_owner)
            if config.store
            else None
        )
        # The sender's streams continue across restarts with the store that holds their
        # unacked messages; without one, a restarted agent starts new streams.
        self.epoch = self.store.epoch if self.store else uuid.uuid4().hex[:16]
        self.signaling = SignalingClient(
            config.signaling_url,
            config.room,
            config.peer_id,
            config.token,
            observer=self.events.record,
            ping=config.signaling_ping,
        )
        self.manager = PeerConnectionManager(
            config.peer_id,
            self.signaling,
            epoch=self.epoch,
            config=config.manager,
            observer=self._observe_fields,
            store=self.store,
        )
        self._histories: dict[str, ConversationHistory] = {}
        self._unapplied: list[tuple[str, ChannelMessage]] = []
        """(peer, message) sent or delivered since the histories were last read, in order:
        they are applied when one is read (`history`), off the message path."""
        self.stopped = asyncio.Event()
        self._committer: asyncio.Task | None = None
        self._stopping: asyncio.Future | None = None
        logged = self._resume_histories(self.events.since(0))
        if self.store is not None:
            self._resume_store(logged)

    def _resume_histories(self, events: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """The chat view a previous incarnation (same event log) showed; returns the
        (kind, message id) of every `sent` and `delivered` event in the log."""
        logged = set()
        unreadable = []
        for event in events:
            if event["kind"] not in ("sent", "delivered") or "message" not in event:
                continue
            try:
                message = decode(json.dumps(event["message"]))
                peer = check_peer_id("peer", event["peer"])
            except (ProtocolError, KeyError, TypeError, ValueError):
                # A record that reads as an event but not as a message: as with a damaged
                # line (docs/event-log.md), skip it and say so, keeping what follows.
                unreadable.append(event["seq"])
                continue
            if message.type not in RELIABLE_TYPES:
                continue
            logged.add((event["kind"], message.id))
            self._histories.setdefault(peer, ConversationHistory()).apply(message)
        if unreadable:
            print(
                f"event log {self.config.event_log}: skipped {len(unreadable)} sent/delivered "
                f"event(s) whose message or peer cannot be read (seq {unreadable[:10]})",
                file=sys.stderr,
            )
        return logged

    def _resume_store(self, logged: set[tuple[str, str]]) -> None:
        """Take over the store's unacked messages and delivery state. A crash between a
        store commit and the event it is reported by leaves a message in the store that
        the log lacks: its event is recorded now, marked `recovered`."""
        for remote, state in self.store.load().items():
            self.manager.channel(remote).restore(state)
            for kind, messages in (("sent", state.unacked), ("delivered", state.unlogged)):
                for message in messages:
                    if (kind, message.id) not in logged:
                        self._observe_fields(
                            kind, {"peer": remote, "message": message, "recovered": True}
                        )

    async def start(self) -> None:
        self.events.record(
            "started",
            room=self.config.room,
            epoch=self.epoch,
            signaling_url=self.config.signaling_url,
            store=str(self.config.store) if self.store else None,
        )
        if self.store is not None and self.store.sync_ms is not None:
            self._committer = asyncio.create_task(self._commit_every(self.store.sync_ms / 1000))
        try:
            await self.signaling.start(self.manager.handle_signal)
        except SignalingUnavailable as exc:
            # Not fatal: the client keeps retrying in the background; /healthz tells.
            self.events.record("error", error=str(exc))
        except asyncio.CancelledError:
            # stop() (SIGTERM, POST /shutdown) closed the signaling client while it was
            # still trying to register, and the client's own cancellation surfaces here:
            # starting is over, not failed. Only a cancellation of this task goes on.
            if asyncio.current_task().cancelling():
                raise

    async def stop(self) -> None:
        """Stop once: a second call (two signals in a row) waits for the first."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        await self.manager.close()  # the byes go out through signaling first
        # Both wait on the network (the links' TURN deallocations, signaling's closing
        # handshake): side by side, a stop into a dead network (a stack torn down all at
        # once) takes the longer of the two, 1 s, not their sum.
        await asyncio.gather(self.manager.wait_closed(), self.signaling.close())
        if self._committer is not None:
            self._committer.cancel()
        if self.store is not None:
            self.store.close()
        self.events.record("stopped")
        self.events.close()
        self.stopped.set()

    async def _commit_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.store.commit()

    async def connect(
        self,
        remote_id: str,
        *,
        relay_only: bool | None = None,
        turn: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        await self.manager.connect(remote_id, relay_only=relay_only, turn=turn, timeout=timeout)

    def send(
        self, remote_id: str, message_type: MessageType, **fields: Any
    ) -> ChannelMessage | None:
        """Send one message through the MessageChannel's typed API; None if typing was held."""
        channel = self.manager.channel(remote_id)
        senders = {
            MessageType.TEXT: channel.send_text,
            MessageType.EDIT: channel.send_edit,
            MessageType.DELETE: channel.send_delete,
            MessageType.REACTION: channel.send_reaction,
            MessageType.TYPING: channel.send_typing,
        }
        if message_type not in senders:
            raise ValueError(f"cannot send {message_type!r} messages by hand")
        return senders[message_type](**fields)

    def state(self) -> dict[str, Any]:
        links = {}
        for remote in self.manager.remote_ids():
            channel = self.manager.channel(remote)
            links[remote] = {
                "state": self.manager.state(remote).value,
                "unacked": len(channel.unacked),
                "candidate_pair": self.manager.selected_candidate_pair(remote),
            }
        return {
            "peer": self.peer_id,
            "room": self.config.room,
            "epoch": self.epoch,
            "signaling": {
                "registered": self.signaling.connected,
                "peers": sorted(self.signaling.peers),
            },
            "links": links,
            "last_event": self.events.last_seq,
        }

    def link_state(self, remote_id: str) -> P2PConnectionState:
        return self.manager.state(remote_id)

    def history(self, remote_id: str, conversation: str) -> dict[str, Any]:
        unapplied, self._unapplied = self._unapplied, []
        for peer, message in unapplied:
            self._histories.setdefault(peer, ConversationHistory()).apply(message)
        history = self._histories.get(remote_id, ConversationHistory())
        return {
            "peer": remote_id,
            "conversation": conversation,
            "entries": history.to_json(conversation),
            "anomalies": history.anomalies,
        }

    def _observe_fields(self, kind: str, fields: dict[str, Any], at: float | None = None) -> None:
        # Histories follow what a user would see: own messages when sent, others' when
        # delivered (exactly once, in order), never raw receptions. Only reliable
        # messages count: `ConversationHistory.apply` skips the others.
        if kind == "sent" or kind == "delivered":
            message = fields.get("message")
            if message is not None:
                self._unapplied.append((fields["peer"], message))
        self.events.record_fields(kind, fields, at)
