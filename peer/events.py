"""The agent's event log: everything that happened, in order, readable live and as JSONL.

Each event is a flat JSON object: `seq` (1, 2, ...), `t_mono` (seconds, monotonic clock
of this process), `t_wall` (seconds since the Unix epoch), `agent` (this peer's id),
`kind`, and the kind's own fields. A message, when an event concerns one, is under
`message` in its wire form. docs/control-api.md lists the kinds.

With a file, a restarted agent resumes its log. docs/event-log.md defines the file: its
mode, how a damaged record (a line cut by a kill, garbage, a NUL-filled tail, bytes that
are not UTF-8) is skipped and reported without hiding the records after it, and how `seq`
continues.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import reprlib
import stat
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from enum import Enum
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, NamedTuple

from peerlab.peer.protocol import SCHEMA, ChannelMessage

Event = dict[str, Any]

FILE_MODE = 0o600
"""Mode of a log file the agent creates: events hold message bodies, for the owner only."""

_LISTED = 10
"""Damaged records the warning names one by one (it counts them all)."""

_seq_of = itemgetter("seq")


class EventLogError(ValueError):
    """The event log's path cannot be used: a symlink, a directory, not readable..."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"event log {path}: {problem}")
        self.path = path


class Damage(NamedTuple):
    """A record of the file that was skipped: its line (from 1) and what was wrong with it."""

    line: int
    reason: str


class _Loaded(NamedTuple):
    events: list[Event]
    """The valid records in file order; their `seq`s strictly increase."""
    damaged: list[Damage]
    """In line order."""
    cut: bool
    """The file does not end with a newline: its last line was cut short."""


class _BadRecord(Exception):
    """A line that is not an event; the message says what is wrong with it."""


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


def _open(path: Path) -> int:
    """A descriptor that reads `path` and appends to it, created with FILE_MODE if missing.

    O_NOFOLLOW: whoever can write the log's folder must not be able to point the agent's
    writes at another file with a symlink."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"its folder cannot be created ({exc.strerror}: {exc.filename})"
        raise EventLogError(path, problem) from None
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        raise EventLogError(path, _open_problem(path, exc)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        # A FIFO or a device opens fine, and reading it would block or never end.
        os.close(fd)
        raise EventLogError(path, "is not a regular file")
    return fd


def _open_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP and path.is_symlink():
        return "is a symbolic link; an event log is never opened through one (give a file's path)"
    if exc.errno == errno.EISDIR:
        return "is a directory: give the path of a file in it"
    return f"cannot be opened: {exc.strerror}"


def _load(lines: Iterable[bytes]) -> _Loaded:
    """The events of a log file's lines (binary, newlines included), and its damage."""
    candidates: list[tuple[int, Event]] = []
    damaged: list[Damage] = []
    cut = False
    for number, line in enumerate(lines, start=1):
        cut = not line.endswith(b"\n")
        record = line if cut else line[:-1]
        if not record.strip():
            continue  # a blank line holds no event, so none is lost
        try:
            candidates.append((number, _parse(record)))
        except _BadRecord as exc:
            cut_short = "cut short (the file's last line, no newline): " if cut else ""
            damaged.append(Damage(number, f"{cut_short}{exc}"))
    events, out_of_order = _in_order(candidates)
    return _Loaded(events, sorted(damaged + out_of_order), cut)


def _parse(record: bytes) -> Event:
    if b"\0" in record:
        raise _BadRecord(f"NUL bytes: {record.count(0)} of its {len(record)} bytes")
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = record[exc.start]
        raise _BadRecord(f"not UTF-8: byte 0x{byte:02x} at column {exc.start + 1}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadRecord(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5000 digits
        raise _BadRecord(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise _BadRecord("not a JSON object")
    seq = event.get("seq")
    if type(seq) is not int or seq < 1:
        raise _BadRecord(f"no valid seq: {reprlib.repr(seq)} is not a positive integer")
    if not isinstance(event.get("kind"), str):
        raise _BadRecord("no kind")
    return event


def _in_order(candidates: list[tuple[int, Event]]) -> tuple[list[Event], list[Damage]]:
    """The longest run of `(line, event)` whose seqs strictly increase, and the rest as damage.

    `since` and every reader rely on seqs that are unique and increasing. A record breaking
    that (a repeated seq, a corrupted digit) is the one left out, never the records after
    it: a longest increasing subsequence keeps as many as possible (O(n log n)). Of two
    records with one seq, the first written wins unless the second makes the run longer."""
    tails: list[int] = []  # tails[k]: candidate ending the run of length k + 1 with least seq
    tail_seqs: list[int] = []
    before: list[int] = []  # before[i]: the candidate preceding i in its run, or -1
    for i, (_, event) in enumerate(candidates):
        seq = event["seq"]
        k = bisect_left(tail_seqs, seq)
        before.append(tails[k - 1] if k else -1)
        if k == len(tails):
            tails.append(i)
            tail_seqs.append(seq)
        elif tail_seqs[k] != seq:  # an equal seq keeps the earlier record
            tails[k] = i
            tail_seqs[k] = seq
    kept = set()
    i = tails[-1] if tails else -1
    while i >= 0:
        kept.add(i)
        i = before[i]
    events = [event for i, (_, event) in enumerate(candidates) if i in kept]
    damaged = [
        Damage(line, f"seq {event['seq']} out of order")
        for i, (line, event) in enumerate(candidates)
        if i not in kept
    ]
    return events, damaged


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
        owner: tuple[int, int] | None = None,
    ):
        """`owner`: (uid, gid) the file is handed to, so that a user other than the one the
        agent runs as (root in the lab's containers) can read it (docs/event-log.md)."""
        self.agent_id = agent_id
        self._clock = clock
        self._wall_clock = wall_clock
        self._events: list[Event] = []
        self._seq = 0
        """The newest event's seq (0: none yet)."""
        self.damaged: tuple[Damage, ...] = ()
        """Records of the file that were skipped when it was resumed."""
        # Recording is on the message hot path: events are kept as recorded, in a tuple,
        # and made JSON-ready dicts on first read (or at once when they go to a file).
        self._recorded: list[tuple[int, float, float, str, dict[str, Any]]] = []
        self._changed: asyncio.Event | None = None
        self._file: IO[str] | None = None
        if jsonl_path is not None:
            self._file = self._resume(jsonl_path, owner)

    def record(self, kind: str, **fields: Any) -> Event:
        """Record an event; returns it, JSON-ready."""
        self.record_fields(kind, fields)
        self._make_ready()
        return self._events[-1]

    def record_fields(self, kind: str, fields: dict[str, Any], at: float | None = None) -> None:
        """`record` for fields already in a dict (the message path: no re-packing). The
        log keeps `fields` as they are until the event is read: the caller must not change
        them afterwards.

        `at`: when it happened, on this log's monotonic clock, if that was before now: a
        link's events are stamped with the instant its logic decided them (peer/link_core.py
        `now`), which a pause of the process (the collector, the scheduler) may separate
        from their recording by milliseconds. `t_wall` is then that same instant too."""
        self._seq += 1
        t_mono = self._clock()
        t_wall = self._wall_clock()
        if at is not None:
            t_wall -= t_mono - at
            t_mono = at
        self._recorded.append((self._seq, t_mono, t_wall, kind, fields))
        if self._file is not None:
            self._make_ready()
            self._file.write(json.dumps(self._events[-1], ensure_ascii=False) + "\n")
        if self._changed is not None:
            # Wake every waiter: each holds the Event that was current when it began.
            self._changed.set()
            self._changed = None

    def since(self, seq: int = 0, match: Mapping[str, Any] | None = None) -> list[Event]:
        """Events after `seq` (0 = all), optionally only those matching `match`."""
        self._make_ready()
        # Seqs increase but may have gaps (records skipped as damaged): search, not index.
        events = self._events[bisect_right(self._events, seq, key=_seq_of) :]
        return [e for e in events if matches(e, match)] if match else events

    @property
    def last_seq(self) -> int:
        return self._seq

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

    def _resume(self, path: Path, owner: tuple[int, int] | None) -> IO[str]:
        """Take over the events of a previous incarnation; return the file to append to."""
        fd = _open(path)
        try:
            if owner is not None:
                os.fchown(fd, *owner)
            with open(fd, "rb", closefd=False) as lines:
                loaded = _load(lines)
            if loaded.cut:
                # Ends the cut line: it stays one damaged record, and the next event starts
                # a line of its own instead of being glued to it (and lost with it).
                os.write(fd, b"\n")
            # Line-buffered: each event reaches the kernel at once and survives a kill.
            file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            os.close(fd)
            raise EventLogError(path, f"cannot be read or extended: {exc.strerror}") from None
        self._events = loaded.events
        # New events continue after the newest kept one, so seqs stay unique and increasing.
        self._seq = self._events[-1]["seq"] if self._events else 0
        self.damaged = tuple(loaded.damaged)
        if self.damaged:
            self._warn(path)
        return file

    def _warn(self, path: Path) -> None:
        """One warning on stderr for all the damage, naming the first records by line."""
        listed = "; ".join(f"line {d.line}: {d.reason}" for d in self.damaged[:_LISTED])
        more = len(self.damaged) - _LISTED
        print(
            f"peer {self.agent_id}: event log {path}: skipped {len(self.damaged)} damaged "
            f"record(s), kept the {len(self._events)} others (docs/event-log.md): {listed}"
            + (f"; and {more} more" if more > 0 else ""),
            file=sys.stderr,
            flush=True,
        )

    def _make_ready(self) -> None:
        """Turn the events recorded since the last read into JSON-ready dicts."""
        if not self._recorded:
            return
        recorded, self._recorded = self._recorded, []
        agent = self.agent_id
        for seq, t_mono, t_wall, kind, fields in recorded:
            event = {
                "seq": seq,
                "t_mono": round(t_mono, 6),
                "t_wall": round(t_wall, 6),
                "agent": agent,
                "kind": kind,
                **fields,
            }
            for key, value in fields.items():
                if not isinstance(value, (str, int, float)):
                    event[key] = _jsonable(value)
            self._events.append(event)

    async def _next_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()
