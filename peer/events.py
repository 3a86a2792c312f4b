"""The agent's event log: everything that happened, in order, readable live and as JSONL.

Each event is a flat JSON object: `seq` (1, 2, ...), `t_mono` (seconds, monotonic clock
of this process), `t_wall` (seconds since the Unix epoch), `agent` (this peer's id),
`kind`, and the kind's own fields. A message, when an event concerns one, is under
`message` in its wire form. docs/control-api.md lists the kinds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import IO, Any

from peerlab.peer.protocol import SCHEMA, ChannelMessage

Event = dict[str, Any]


def message_to_json(message: ChannelMessage) -> dict[str, Any]:
    fields = {"type": message.type.value}
    for name in SCHEMA[message.type]:
        value = getattr(message, name)
        fields[name] = list(value) if isinstance(value, tuple) else value
    return fields


def _jsonable(value: Any) -> Any:
    if isinstance(value, ChannelMessage):
        return message_to_json(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


def _load(path: Path) -> list[Event]:
    """Events of a previous incarnation, so that numbering and history continue.

    A line cut short by a kill mid-write is dropped, with everything after it.
    """
    if not path.exists():
        return []
    events = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                break
            if event.get("seq") != len(events) + 1:
                break
            events.append(event)
    return events


def matches(event: Event, match: Mapping[str, Any]) -> bool:
    """True when every `key: value` of `match` holds; keys may be dotted (`message.type`)."""
    for key, expected in match.items():
        value: Any = event
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        if value != expected:
            return False
    return True


class EventLog:
    def __init__(
        self,
        agent_id: str,
        jsonl_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.agent_id = agent_id
        self._clock = clock
        self._wall_clock = wall_clock
        self._events: list[Event] = []
        # Recording is on the message hot path: events are kept as recorded and made
        # JSON-ready on first read (or at once when they go to a file).
        self._ready = 0
        self._changed: asyncio.Event | None = None
        self._file: IO[str] | None = None
        if jsonl_path is not None:
            jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._events = _load(jsonl_path)
            self._ready = len(self._events)
            # Line-buffered: each event reaches the kernel at once and survives a kill.
            self._file = jsonl_path.open("a", encoding="utf-8", buffering=1)

    def record(self, kind: str, **fields: Any) -> Event:
        event = {
            "seq": len(self._events) + 1,
            "t_mono": round(self._clock(), 6),
            "t_wall": round(self._wall_clock(), 6),
            "agent": self.agent_id,
            "kind": kind,
            **fields,
        }
        self._events.append(event)
        if self._file is not None:
            self._make_ready()
            self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
        if self._changed is not None:
            # Wake every waiter: each holds the Event that was current when it began.
            self._changed.set()
            self._changed = None
        return event

    def since(self, seq: int = 0, match: Mapping[str, Any] | None = None) -> list[Event]:
        """Events after `seq` (0 = all), optionally only those matching `match`."""
        self._make_ready()
        events = self._events[max(seq, 0) :]
        return [e for e in events if matches(e, match)] if match else events

    @property
    def last_seq(self) -> int:
        return len(self._events)

    async def wait_for(
        self, match: Mapping[str, Any], *, count: int = 1, since: int = 0, timeout: float
    ) -> list[Event]:
        """Wait until `count` events after `since` match; TimeoutError says what was seen."""
        found: list[Event] = []
        scanned = max(since, 0)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    # Each event is looked at once, however long the wait.
                    found += self.since(scanned, match)
                    scanned = self.last_seq
                    if len(found) >= count:
                        return found[:count]
                    await self._next_change()
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout:g}s for {count} event(s) matching {dict(match)} after "
                f"seq {since}; saw {len(found)}" + (f", last: {found[-1]}" if found else "")
            ) from None

    async def follow(self, since: int = 0) -> AsyncIterator[Event]:
        """Yield events after `since` as they happen (never ends)."""
        while True:
            while self.last_seq <= since:
                await self._next_change()
            for event in self.since(since):
                yield event
            since = self.last_seq

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _make_ready(self) -> None:
        for event in self._events[self._ready :]:
            for key, value in event.items():
                if not isinstance(value, (str, int, float)):
                    event[key] = _jsonable(value)
        self._ready = len(self._events)

    async def _next_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()
