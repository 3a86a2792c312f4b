"""Checks over agents' event logs: what was sent, delivered and acked between two peers. Pure.

A scenario collects both agents' events (docs/control-api.md) and asks `delivery_report`
what happened to every reliable message one sent the other: acked or not, delivered how
many times, in order or not. `assert_delivered` turns a bad report into an AssertionError
whose text names the messages at fault, e.g. "peer1 → peer2: 3 of 10 messages were never
acked: text 5f2a… (conversation c, seq 4), ...".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
RELIABLE = ("text", "edit", "delete", "reaction")


def _describe(message: dict[str, Any]) -> str:
    return (
        f"{message['type']} {message['id'][:8]}… (conversation "
        f"{message['conversation']}, seq {message['seq']})"
    )


def _messages(events: Iterable[Event], kind: str, peer: str) -> list[dict[str, Any]]:
    return [
        e["message"]
        for e in events
        if e["kind"] == kind and e.get("peer") == peer and e["message"]["type"] in RELIABLE
    ]


@dataclass
class DeliveryReport:
    sender: str
    receiver: str
    sent: list[dict[str, Any]]
    unacked: list[dict[str, Any]] = field(default_factory=list)
    undelivered: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unacked
            or self.undelivered
            or self.duplicated
            or self.out_of_order
            or self.unexpected
        )

    def problems(self, limit: int = 5) -> list[str]:
        def listing(messages: Sequence[dict[str, Any]]) -> str:
            shown = ", ".join(_describe(m) for m in messages[:limit])
            return shown + (f", and {len(messages) - limit} more" if len(messages) > limit else "")

        head = f"{self.sender} → {self.receiver}"
        total = len(self.sent)
        out = []
        if self.unacked:
            out.append(
                f"{head}: {len(self.unacked)} of {total} messages were never acked: "
                f"{listing(self.unacked)}"
            )
        if self.undelivered:
            out.append(
                f"{head}: {len(self.undelivered)} of {total} messages were never "
                f"delivered: {listing(self.undelivered)}"
            )
        if self.duplicated:
            out.append(
                f"{head}: {len(self.duplicated)} messages were delivered more than "
                f"once: {listing(self.duplicated)}"
            )
        if self.out_of_order:
            out.append(
                f"{head}: delivered out of send order in conversation(s) "
                f"{', '.join(self.out_of_order)}"
            )
        if self.unexpected:
            out.append(
                f"{head}: {len(self.unexpected)} delivered messages were never sent: "
                f"{listing(self.unexpected)}"
            )
        return out


def delivery_report(
    sender_events: Iterable[Event], receiver_events: Iterable[Event], sender: str, receiver: str
) -> DeliveryReport:
    """Compare what `sender` sent to `receiver` with what was acked and delivered."""
    sender_events, receiver_events = list(sender_events), list(receiver_events)
    sent = _messages(sender_events, "sent", receiver)
    acked = {m["id"] for m in _messages(sender_events, "acked", receiver)}
    delivered = _messages(receiver_events, "delivered", sender)
    report = DeliveryReport(sender, receiver, sent)
    counts = Counter(m["id"] for m in delivered)
    sent_ids = {m["id"] for m in sent}
    report.unacked = [m for m in sent if m["id"] not in acked]
    report.undelivered = [m for m in sent if counts[m["id"]] == 0]
    report.duplicated = [m for m in sent if counts[m["id"]] > 1]
    report.unexpected = [m for m in delivered if m["id"] not in sent_ids]
    for conversation in sorted({m["conversation"] for m in sent}):
        order = [m["id"] for m in sent if m["conversation"] == conversation]
        seen = [
            m["id"] for m in delivered if m["conversation"] == conversation and m["id"] in sent_ids
        ]
        first_seen = list(dict.fromkeys(seen))
        if first_seen != [i for i in order if i in counts]:
            report.out_of_order.append(conversation)
    return report


def assert_delivered(reports: Iterable[DeliveryReport]) -> None:
    """Raise AssertionError listing every problem of every report (none: all good)."""
    problems = [p for r in reports for p in r.problems()]
    if problems:
        raise AssertionError("\n".join(problems))
