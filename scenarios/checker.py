"""A Jepsen-style history checker over a whole run: every agent's event log plus the harness's
history, checked for every anomaly class the protocol rules out. Pure: data in, data out.

`checks.delivery_report` answers "did these messages from A reach B" for a pair a scenario
names; `check` looks at everything the agents logged, every sender → receiver pair and
conversation, and also at what the logs cannot prove: a cut last line, a missing log. Its
verdict is Jepsen's: valid (exit 0), invalid (1), or unknown (2) when the evidence is
incomplete. Anomalies are counted and listed per sender → receiver and conversation, each
with the faults (read from the harness's history by `history.fault_windows`, as the
report does) active at either end while it happened. docs/checker.md defines each anomaly
class and the output; scenarios/check_run.py reads a results folder and serves
`peerlab check`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peerlab.peer.history import ConversationHistory
from peerlab.peer.protocol import ProtocolError, decode
from peerlab.scenarios.checks import RELIABLE, Event
from peerlab.scenarios.history import FaultWindow, fault_windows

CLOCK_TOLERANCE = 0.050
"""Seconds an `acked` may seem to precede the `delivered` it answers before it counts.

Causally the receiver logs `delivered` before its ack leaves, and the sender logs `acked`
after it arrives. The containers share the host's kernel clock (CLOCK_REALTIME is not
namespaced), so there is no skew between agents; what is left is the microsecond rounding of
`t_wall` and a possible step of the host clock by NTP, which 50 ms covers while staying far
below the shortest real ack round trip a reversed order would need to hide in."""

HISTORY = "history.jsonl"
"""Key of the harness's history in `damaged` (not a peer id anyone would choose)."""

# Anomaly classes, in report order. An anomaly of any of these makes the run invalid.
INVALID_CLASSES = (
    "lost_after_ack",
    "lost",
    "never_acked",
    "duplicated",
    "out_of_order",
    "phantom",
    "acked_before_delivered",
    "bad_target",
    "typing_acked",
    "diverged",
)
# Listed, but allowed: the protocol promises nothing for them (docs/protocol.md §8.5).
ALLOWED_CLASSES = ("lost_with_dead_sender",)
CLASSES = INVALID_CLASSES + ALLOWED_CLASSES

_EXIT_CODES = {True: 0, False: 1, None: 2}

EXAMPLES = 5
"""Anomalies shown per class and per sender → receiver and conversation; counts cover all."""

Pair = tuple[str, str, str | None]
"""(sender, receiver, conversation): how anomalies are grouped."""


@dataclass(frozen=True)
class Anomaly:
    """One message (or view entry) at fault between `sender` and `receiver`."""

    kind: str
    sender: str
    receiver: str
    conversation: str | None
    type: str | None
    id: str | None
    seq: int | None
    detail: str
    start: float | None = None
    end: float | None = None
    """When it happened (`t_wall`): from the first to the last event it is made of, or to
    the run's end when nothing settled the message's fate (docs/checker.md)."""
    during: tuple[str, ...] = ()
    """The faults active at the sender or the receiver meanwhile, as labels."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "receiver": self.receiver,
            "conversation": self.conversation,
            "type": self.type,
            "id": self.id,
            "seq": self.seq,
            "detail": self.detail,
            "start": self.start,
            "end": self.end,
            "during": list(self.during),
        }

    def describe(self) -> str:
        """The message and what is wrong with it; its pair and conversation head its group."""
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        during = f"; during {', '.join(self.during)}" if self.during else ""
        return f"{self.type or 'message'} {(self.id or '?')[:8]}…{seq}: {self.detail}{during}"


@dataclass
class CheckResult:
    anomalies: dict[str, list[Anomaly]]
    """Class → anomalies found; every class of CLASSES is a key."""
    incomplete: dict[str, list[str]]
    """Agent (or HISTORY) → why its evidence is incomplete, as "<agent>'s event log ..."."""
    notes: list[str] = field(default_factory=list)
    senders: int = 0
    messages: int = 0
    """Reliable messages sent between agents that both have a log."""
    faults: list[FaultWindow] = field(default_factory=list)
    """When each fault in the harness's history was active."""

    def _proven(self, anomaly: Anomaly) -> bool:
        # An anomaly read from complete logs is a fact; one that involves an incomplete log
        # may be an artifact of the missing lines (a cut `sent` makes a phantom, ...).
        if HISTORY in self.incomplete:
            return False
        return anomaly.sender not in self.incomplete and anomaly.receiver not in self.incomplete

    @property
    def invalid_count(self) -> int:
        return sum(len(self.anomalies[kind]) for kind in INVALID_CLASSES)

    @property
    def valid(self) -> bool | None:
        proven = any(self._proven(a) for kind in INVALID_CLASSES for a in self.anomalies[kind])
        if proven:
            return False
        if self.incomplete:
            return None
        return True

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self.valid]

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.anomalies.items()}

    def reasons(self) -> list[str]:
        return [reason for found in self.incomplete.values() for reason in found]

    def by_pair(self) -> dict[Pair, dict[str, list[Anomaly]]]:
        """The anomalies by (sender, receiver, conversation), then by class (CLASSES order)."""
        groups: dict[Pair, dict[str, list[Anomaly]]] = defaultdict(dict)
        for kind in CLASSES:
            for a in self.anomalies[kind]:
                groups[(a.sender, a.receiver, a.conversation)].setdefault(kind, []).append(a)
        return dict(sorted(groups.items(), key=lambda item: (*item[0][:2], item[0][2] or "")))

    def to_json(self, limit: int = EXAMPLES) -> dict[str, Any]:
        return {
            "valid": "unknown" if self.valid is None else self.valid,
            "exit_code": self.exit_code,
            "counts": self.counts,
            "anomalies": {
                kind: [a.to_json() for a in found] for kind, found in self.anomalies.items()
            },
            "by_pair": [
                {
                    "sender": sender,
                    "receiver": receiver,
                    "conversation": conversation,
                    "counts": {kind: len(found) for kind, found in classes.items()},
                    "examples": {
                        kind: [a.to_json() for a in found[:limit]]
                        for kind, found in classes.items()
                    },
                }
                for (sender, receiver, conversation), classes in self.by_pair().items()
            ],
            "faults": [window.to_json() for window in self.faults],
            "notes": self.reasons() + self.notes,
        }

    def _tally(self, classes: Sequence[str]) -> str:
        return ", ".join(f"{k} {len(self.anomalies[k])}" for k in classes if self.anomalies[k])

    def render(self, limit: int = EXAMPLES) -> str:
        """A human report: the verdict on the first line, then per sender → receiver and
        conversation the count of each class found and up to `limit` of each."""
        reasons = self.reasons()
        if self.valid is False:
            lines = [f"INVALID: {self.invalid_count} anomalies ({self._tally(INVALID_CLASSES)})"]
        elif self.valid is None:
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            lines = [f"UNKNOWN: {reasons[0]}{more}"]
            if self.invalid_count:
                lines.append(
                    f"{self.invalid_count} anomalies found that the missing evidence may "
                    f"explain ({self._tally(INVALID_CLASSES)})"
                )
        else:
            lines = [f"VALID: {self.senders} senders, {self.messages} messages checked"]
        if allowed_tally := self._tally(ALLOWED_CLASSES):
            lines.append(f"allowed: {allowed_tally}")
        for (sender, receiver, conversation), classes in self.by_pair().items():
            where = f", conversation {conversation}" if conversation else ""
            tally = ", ".join(f"{kind} {len(found)}" for kind, found in classes.items())
            lines.append(f"{sender} → {receiver}{where}: {tally}")
            for kind, found in classes.items():
                allowed = ", allowed" if kind in ALLOWED_CLASSES else ""
                lines.append(f"  {kind} ({len(found)}{allowed}):")
                lines.extend(f"    {a.describe()}" for a in found[:limit])
                if len(found) > limit:
                    lines.append(f"    … and {len(found) - limit} more")
        lines.extend(f"note: {note}" for note in [*reasons[1:], *self.notes])
        return "\n".join(lines)


# ---- reading the logs ----


def _is_reliable(event: Event) -> bool:
    return event["message"]["type"] in RELIABLE


def _message_events(events: Iterable[Event], kind: str, peer: str) -> list[Event]:
    return [e for e in events if e.get("kind") == kind and e.get("peer") == peer and "message" in e]


def _died_after(events: Sequence[Event], position: int) -> str | None:
    """How the process that logged events[position] died before a clean stop, or None.

    A later `started` is a restart (the outbox, and its unacked messages, are gone); a log
    that ends with no `stopped` after that point is a process that was killed for good."""
    stopped = False
    for event in events[position + 1 :]:
        if event.get("kind") == "started":
            return f"restarted (its event {event.get('seq')}, epoch {event.get('epoch')})"
        stopped = stopped or event.get("kind") == "stopped"
    return None if stopped else "its log ends without a `stopped` event"


def _kills(history: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    kills: dict[str, list[float]] = defaultdict(list)
    for entry in history:
        value = entry.get("value")
        if entry.get("f") == "kill" and entry.get("type") == "ok" and isinstance(value, dict):
            kills[value.get("peer")].append(entry.get("t_wall", 0.0))
    return kills


def _difference(
    a: str, entry_a: dict[str, Any] | None, b: str, entry_b: dict[str, Any] | None
) -> str:
    """How two members' views of one entry differ, e.g. "edits: 1 at peer1, 2 at peer2"."""
    if entry_a is None or entry_b is None:
        shown, missing = (b, a) if entry_a is None else (a, b)
        body = (entry_b if entry_a is None else entry_a)["body"]
        return f"{shown} shows it ({body!r}), {missing} does not"
    return "; ".join(
        f"{name}: {entry_a[name]!r} at {a}, {entry_b[name]!r} at {b}"
        for name in entry_a
        if entry_a[name] != entry_b.get(name)
    )


class _Checker:
    def __init__(
        self,
        events_by_agent: Mapping[str, list[Event]],
        history: list[dict],
        damaged: Mapping[str, list[str]],
    ):
        self.logs = events_by_agent
        self.history = history
        self.kills = _kills(history)
        stamps = [
            e["t_wall"]
            for log in (*events_by_agent.values(), history)
            for e in log
            if "t_wall" in e
        ]
        self.run_end = max(stamps, default=0.0)
        """The run's last `t_wall`: when a fault never ended, and a lost message's fate, end."""
        self.faults = fault_windows(history, self.run_end)
        # Every peer the logs name: a fault whose targets are none of them hit a service
        # all peers use (signaling, TURN over TCP).
        self.members = set(events_by_agent) | {
            e["peer"] for log in events_by_agent.values() for e in log if "peer" in e
        }
        self.positions = {
            agent: {id(event): i for i, event in enumerate(events)}
            for agent, events in events_by_agent.items()
        }
        self.anomalies: dict[str, list[Anomaly]] = {kind: [] for kind in CLASSES}
        self.incomplete: dict[str, list[str]] = defaultdict(list)
        self.notes: list[str] = []
        for agent, descriptions in damaged.items():
            owner = HISTORY if agent == HISTORY else f"{agent}'s event log"
            self.incomplete[agent].extend(f"{owner} {d}" for d in descriptions)
        # Messages never delivered (lost, with or without their sender): left out of the
        # sender's view as well, so that the convergence check does not report them again.
        self.undelivered: set[tuple[str, str, str]] = set()
        """(sender, receiver, message id)"""

    def add(
        self,
        kind: str,
        sender: str,
        receiver: str,
        message: Mapping,
        detail: str,
        start: float | None,
        end: float | None = None,
    ) -> None:
        """Record an anomaly that happened from `start` to `end` (`t_wall`; an instant
        without `end`)."""
        end = start if end is None else end
        self.anomalies[kind].append(
            Anomaly(
                kind,
                sender,
                receiver,
                message.get("conversation"),
                message.get("type"),
                message.get("id"),
                message.get("seq"),
                detail,
                start,
                end,
                self.during(sender, receiver, start, end),
            )
        )

    def during(
        self, sender: str, receiver: str, start: float | None, end: float | None
    ) -> tuple[str, ...]:
        """The faults active between `start` and `end` at the sender or the receiver, or
        at a service every peer uses."""
        if start is None or end is None:
            return ()
        ends = {sender, receiver}
        return tuple(
            w.label
            for w in self.faults
            if w.start <= end
            and w.end >= start
            and (ends & set(w.peers) or not self.members & set(w.peers))
        )

    def run(self) -> CheckResult:
        if not self.logs:
            self.incomplete["run"].append("the run has no event logs at all")
        for agent, events in self.logs.items():
            self.check_log_is_whole(agent, events)
        self.check_history_sends()
        pairs = self.pairs()
        senders, messages = set(), 0
        for sender, receiver in sorted(pairs):
            missing = [a for a in (sender, receiver) if a not in self.logs]
            for agent in missing:
                other = receiver if agent == sender else sender
                reason = f"{agent} appears in {other}'s event log but has no event log"
                if reason not in self.incomplete[agent]:
                    self.incomplete[agent].append(reason)
            if missing:
                continue
            checked = self.check_pair(sender, receiver)
            messages += checked
            if checked:
                senders.add(sender)
        for a, b in sorted({tuple(sorted(p)) for p in pairs}):
            if a in self.logs and b in self.logs:
                self.check_convergence(a, b)
        return CheckResult(
            self.anomalies,
            {agent: reasons for agent, reasons in self.incomplete.items() if reasons},
            self.notes,
            len(senders),
            messages,
            self.faults,
        )

    def check_log_is_whole(self, agent: str, events: list[Event]) -> None:
        if not events:
            self.incomplete[agent].append(f"{agent}'s event log has no events")
            return
        # An agent numbers its events 1, 2, ... across restarts, continuing after the
        # newest event it could read (docs/event-log.md): a jump means records are
        # missing, a number that does not grow is a record the agent itself skipped.
        previous = 0
        for event in events:
            seq = event.get("seq")
            if not isinstance(seq, int):
                continue
            if seq <= previous:
                self.incomplete[agent].append(
                    f"{agent}'s event log repeats or reorders event {seq} (after event {previous})"
                )
                continue
            if seq > previous + 1:
                self.incomplete[agent].append(
                    f"{agent}'s event log lacks events {previous + 1} to {seq - 1}"
                )
            previous = seq

    def check_history_sends(self) -> None:
        """A send the harness saw succeed was logged as `sent` first: if it is not in the
        sender's log, that log is missing lines."""
        for entry in self.history:
            value = entry.get("value")
            process = entry.get("process")
            if entry.get("f") != "send" or entry.get("type") != "ok" or process not in self.logs:
                continue
            if not isinstance(value, dict) or not value.get("id"):
                continue
            sent_ids = {e["message"]["id"] for e in self.logs[process] if e.get("kind") == "sent"}
            if value["id"] not in sent_ids:
                self.incomplete[process].append(
                    f"{process}'s event log lacks the {value.get('type')} {value['id'][:8]}… "
                    f"to {value.get('to')} that {HISTORY} says it sent"
                )

    def pairs(self) -> set[tuple[str, str]]:
        pairs = set()
        for agent, events in self.logs.items():
            for event in events:
                if "message" not in event or "peer" not in event:
                    continue
                if event.get("kind") in ("sent", "acked"):
                    pairs.add((agent, event["peer"]))
                elif event.get("kind") == "delivered":
                    pairs.add((event["peer"], agent))
        return pairs

    def sender_death(self, sender: str, position: int, sent_at: float) -> str | None:
        how = _died_after(self.logs[sender], position)
        if how is not None:
            return how
        for killed_at in self.kills.get(sender, []):
            if killed_at >= sent_at - CLOCK_TOLERANCE:
                return f"killed (history.jsonl, t_wall {killed_at:.3f})"
        return None

    def check_pair(self, sender: str, receiver: str) -> int:
        """Every anomaly between one sender and one receiver; returns the messages checked."""
        sender_log, receiver_log = self.logs[sender], self.logs[receiver]
        position = self.positions[sender]
        sent = [e for e in _message_events(sender_log, "sent", receiver) if _is_reliable(e)]
        typing_ids = {
            e["message"]["id"]
            for e in _message_events(sender_log, "sent", receiver)
            if e["message"]["type"] == "typing"
        }
        acked: dict[str, Event] = {}
        for event in _message_events(sender_log, "acked", receiver):
            acked.setdefault(event["message"]["id"], event)
            if event["message"]["type"] == "typing" or event["message"]["id"] in typing_ids:
                self.add(
                    "typing_acked",
                    sender,
                    receiver,
                    event["message"],
                    f"acked by ack frame {event.get('ack_id', '?')[:8]}…; typing is never acked",
                    event.get("t_wall"),
                )
        deliveries: dict[str, list[Event]] = defaultdict(list)
        for event in _message_events(receiver_log, "delivered", sender):
            if _is_reliable(event):
                deliveries[event["message"]["id"]].append(event)

        for event in sent:
            message = event["message"]
            copies = deliveries.get(message["id"], [])
            ack = acked.get(message["id"])
            if not copies:
                self.check_undelivered(sender, receiver, event, ack, position[id(event)])
                continue
            if len(copies) > 1:
                seqs = ", ".join(str(c.get("seq")) for c in copies)
                self.add(
                    "duplicated",
                    sender,
                    receiver,
                    message,
                    f"delivered {len(copies)} times ({receiver}'s events {seqs})",
                    copies[0].get("t_wall"),
                    copies[-1].get("t_wall"),
                )
            if ack is None:
                self.check_unacked(sender, receiver, event, copies[0], position[id(event)])
            elif ack["t_wall"] < copies[0]["t_wall"] - CLOCK_TOLERANCE:
                self.add(
                    "acked_before_delivered",
                    sender,
                    receiver,
                    message,
                    f"acked {copies[0]['t_wall'] - ack['t_wall']:.3f} s before its first "
                    f"delivery (tolerance {CLOCK_TOLERANCE:.3f} s)",
                    ack["t_wall"],
                    copies[0]["t_wall"],
                )

        sent_ids = {e["message"]["id"] for e in sent}
        for message_id, copies in deliveries.items():
            if message_id not in sent_ids:
                times = f", {len(copies)} times" if len(copies) > 1 else ""
                self.add(
                    "phantom",
                    sender,
                    receiver,
                    copies[0]["message"],
                    f"delivered{times} but {sender} never sent it to {receiver}",
                    copies[0].get("t_wall"),
                )
        self.check_order(sender, receiver, sent, receiver_log)
        return len(sent)

    def check_undelivered(
        self, sender: str, receiver: str, event: Event, ack: Event | None, position: int
    ) -> None:
        message = event["message"]
        self.undelivered.add((sender, receiver, message["id"]))
        sent_at = event.get("t_wall")
        if ack is not None:
            detail = f"acked (ack frame {ack.get('ack_id', '?')[:8]}…) but never delivered"
            self.add(
                "lost_after_ack", sender, receiver, message, detail, sent_at, ack.get("t_wall")
            )
            return
        # Unsettled: whatever happened from the send to the run's end may have lost it.
        death = self.sender_death(sender, position, event["t_wall"])
        if death is None:
            detail = "never acked and never delivered"
            self.add("lost", sender, receiver, message, detail, sent_at, self.run_end)
        else:
            detail = f"never acked nor delivered; {sender} died after sending it: {death}"
            self.add(
                "lost_with_dead_sender", sender, receiver, message, detail, sent_at, self.run_end
            )

    def check_unacked(
        self, sender: str, receiver: str, event: Event, delivery: Event, position: int
    ) -> None:
        # An ack cannot reach a sender that died, nor leave a receiver that died for good
        # (one that came back re-acks the sender's retransmission, docs/protocol.md §8.5).
        if self.sender_death(sender, position, event["t_wall"]) is not None:
            return
        after_delivery = self.logs[receiver][self.positions[receiver][id(delivery)] + 1 :]
        if not any(e.get("kind") == "stopped" for e in after_delivery):
            return
        detail = f"delivered ({receiver}'s event {delivery.get('seq')}) but never acked"
        # The ack could have left, or a retransmission been re-acked, until the run's end.
        start = delivery.get("t_wall")
        self.add("never_acked", sender, receiver, event["message"], detail, start, self.run_end)

    def check_order(
        self, sender: str, receiver: str, sent: list[Event], receiver_log: list[Event]
    ) -> None:
        """Within one sender epoch and conversation, first deliveries follow send order."""
        rank = {e["message"]["id"]: i for i, e in enumerate(sent)}
        streams: dict[tuple[str, str], list[Event]] = defaultdict(list)
        seen: set[str] = set()
        for event in _message_events(receiver_log, "delivered", sender):
            message = event["message"]
            if message["id"] in rank and message["id"] not in seen:
                seen.add(message["id"])
                streams[(message.get("epoch"), message["conversation"])].append(event)
        for delivered in streams.values():
            latest = delivered[0]["message"]
            for event in delivered[1:]:
                message = event["message"]
                if rank[message["id"]] < rank[latest["id"]]:
                    detail = (
                        f"delivered after {latest['id'][:8]}… (seq {latest.get('seq')}), "
                        "which was sent later"
                    )
                    sent_at = sent[rank[message["id"]]].get("t_wall")
                    delivered_at = event.get("t_wall")
                    self.add(
                        "out_of_order", sender, receiver, message, detail, sent_at, delivered_at
                    )
                else:
                    latest = message

    def replay(self, agent: str, remote: str) -> ConversationHistory:
        """The view `agent` shows for its link with `remote` (as the agent builds it: its own
        messages when sent, the remote's when delivered), noting bad targets on the way."""
        history = ConversationHistory()
        delivered_once: set[str] = set()
        for event in self.logs[agent]:
            kind = event.get("kind")
            if kind not in ("sent", "delivered") or event.get("peer") != remote:
                continue
            if "message" not in event or not _is_reliable(event):
                continue
            message_fields = event["message"]
            if kind == "sent" and (agent, remote, message_fields["id"]) in self.undelivered:
                continue
            try:
                message = decode(json.dumps(message_fields))
            except ProtocolError as error:
                self.notes.append(
                    f"{agent}'s event {event.get('seq')} holds an invalid message: {error}"
                )
                continue
            before = len(history.anomalies)
            history.apply(message)
            # A repeated delivery is `duplicated` already; only a first one can be a bad target.
            first = kind == "delivered" and message.id not in delivered_once
            if first and message.type != "text" and len(history.anomalies) > before:
                self.add(
                    "bad_target",
                    remote,
                    agent,
                    message_fields,
                    history.anomalies[-1],
                    event.get("t_wall"),
                )
            if kind == "delivered":
                delivered_once.add(message.id)
        return history

    def check_convergence(self, a: str, b: str) -> None:
        """Both ends of a link must end up showing the same conversations."""
        views = {a: self.replay(a, b), b: self.replay(b, a)}
        sent = {
            e["message"]["id"]: e["message"]
            for agent in (a, b)
            for e in self.logs[agent]
            if e.get("kind") == "sent" and "message" in e
        }
        conversations = set(views[a].conversations()) | set(views[b].conversations())
        for conversation in sorted(conversations):
            entries = {agent: views[agent].to_json(conversation) for agent in (a, b)}
            if entries[a] == entries[b]:
                continue
            by_id = {agent: {e["id"]: e for e in entries[agent]} for agent in (a, b)}
            differing = [
                entry_id
                for entry_id in sorted(set(by_id[a]) | set(by_id[b]))
                if by_id[a].get(entry_id) != by_id[b].get(entry_id)
            ]
            for entry_id in differing:
                entry = by_id[a].get(entry_id) or by_id[b][entry_id]
                author = entry["sender"]
                other = b if author == a else a
                message = sent.get(entry_id, {"id": entry_id, "type": "text"})
                self.add(
                    "diverged",
                    author,
                    other,
                    {**message, "conversation": conversation},
                    _difference(a, by_id[a].get(entry_id), b, by_id[b].get(entry_id)),
                    self.run_end,  # the views differ at the end: what was still in place
                )
            if not differing:
                self.add(
                    "diverged",
                    a,
                    b,
                    {"conversation": conversation},
                    f"same entries in a different order: {a} shows "
                    f"{[e['id'][:8] for e in entries[a]]}, {b} {[e['id'][:8] for e in entries[b]]}",
                    self.run_end,
                )


def check(
    events_by_agent: dict[str, list[dict]],
    history: list[dict],
    damaged: dict[str, list[str]] | None = None,
) -> CheckResult:
    """Check a run: each agent's event log (docs/control-api.md), the harness's history
    entries, and `damaged`: per agent (or HISTORY), descriptions of lines that could not be
    read, each completing "<agent>'s event log ...", e.g. "ends in a cut line (line 311)"."""
    return _Checker(events_by_agent, history, damaged or {}).run()
