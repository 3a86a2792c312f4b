"""What a chat app would show: conversations with edits, deletions and reactions applied. Pure.

The agent keeps one per remote peer. Both ends of a link feed it the same reliable
messages (their own as sent, the other's as delivered), so two histories that differ mean
something was lost, duplicated or reordered. Edits, deletes and reactions of an unknown or
deleted target are recorded as anomalies rather than dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peerlab.peer.protocol import ChannelMessage, MessageType, ReactionAction


@dataclass(slots=True)
class Entry:
    id: str
    sender: str
    body: str
    edits: int = 0
    deleted: bool = False
    reactions: dict[str, set[str]] = field(default_factory=dict)
    """emoji → senders who reacted with it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sender": self.sender,
            "body": self.body,
            "edits": self.edits,
            "deleted": self.deleted,
            "reactions": {e: sorted(s) for e, s in sorted(self.reactions.items()) if s},
        }


class ConversationHistory:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {}
        self.anomalies: list[str] = []

    def apply(self, message: ChannelMessage) -> None:
        if not message.reliable:
            return
        entries = self._entries.setdefault(message.conversation, {})
        if message.type is MessageType.TEXT:
            if message.id in entries:
                self.anomalies.append(f"text {message.id} applied twice")
            else:
                entries[message.id] = Entry(message.id, message.sender, message.body)
            return
        target = entries.get(message.target)
        if target is None:
            self.anomalies.append(f"{message.type} {message.id} targets unknown {message.target}")
            return
        if target.deleted:
            self.anomalies.append(f"{message.type} {message.id} targets deleted {message.target}")
            return
        if message.type is MessageType.EDIT:
            target.body = message.body
            target.edits += 1
        elif message.type is MessageType.DELETE:
            target.deleted = True
            target.body = ""
            target.reactions.clear()
        elif message.action is ReactionAction.ADD:
            target.reactions.setdefault(message.emoji, set()).add(message.sender)
        else:
            target.reactions.get(message.emoji, set()).discard(message.sender)

    def conversations(self) -> list[str]:
        return sorted(self._entries)

    def to_json(self, conversation: str) -> list[dict[str, Any]]:
        """Entries grouped by sender, each sender's in send order (a stable sort): the two
        ends of a link interleave concurrent senders differently, but agree on this."""
        entries = self._entries.get(conversation, {}).values()
        return [e.to_json() for e in sorted(entries, key=lambda e: e.sender)]
