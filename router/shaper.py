"""The link model of one direction of a router: which packets are lost, queued, delayed,
reordered and duplicated, and when each one leaves. Pure: no I/O, no clock, no global random.

`LinkFaults` is the validated form of the contract's LinkFaults JSON; `LinkShaper` applies
it packet by packet: `on_packet(now, size)` returns the absolute times (same clock as `now`,
seconds) at which the packet leaves the router: `[]` dropped, `[t]` delivered once,
`[t, t]` delivered twice. The caller (router/nfqueue.py) issues the verdicts at those times.

Each packet goes through the stages in this order (docs/shaper.md has the details):
1. loss: independent (`loss`) or bursty (`gilbert_elliott`, a two-state Markov chain);
2. queue: a FIFO in front of a link of `rate_kbit`, or of a Mahimahi trace's delivery
   opportunities; a packet arriving while `queue_packets` packets wait is dropped;
3. delay + jitter: `delay_ms` plus a uniform draw in [-jitter_ms, +jitter_ms], never
   earlier than the previous packet's release, so jitter alone never reorders;
4. reorder: with probability `reorder` the packet is held `reorder_gap_ms` longer and
   later packets overtake it (it still leaves after every earlier packet not held back);
5. duplicate: with probability `duplicate` a copy leaves right after the original.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

# One Mahimahi delivery opportunity carries this many bytes.
OPPORTUNITY_BYTES = 1500


# ---- traces ----


@dataclass(frozen=True, slots=True)
class Trace:
    """A Mahimahi trace: the millisecond timestamps of the delivery opportunities of one
    period, non-decreasing; the trace repeats every `period_ms` (its last timestamp)."""

    name: str
    times_ms: tuple[int, ...]

    @property
    def period_ms(self) -> int:
        return self.times_ms[-1]


def parse_trace(text: str, name: str = "<trace>") -> Trace:
    """Parse a Mahimahi trace: one non-negative integer (ms) per line, non-decreasing,
    a repeated timestamp meaning several opportunities in that millisecond."""
    times: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not (value.isascii() and value.isdigit()):
            raise ValueError(
                f"trace {name!r} line {number}: expected a timestamp in milliseconds "
                f"(a non-negative integer), got {line!r}"
            )
        timestamp = int(value)
        if times and timestamp < times[-1]:
            raise ValueError(
                f"trace {name!r} line {number}: timestamp {timestamp} is earlier than the "
                f"previous line's {times[-1]}; expected non-decreasing timestamps"
            )
        times.append(timestamp)
    if not times:
        raise ValueError(f"trace {name!r}: expected at least one timestamp, got an empty file")
    if times[-1] == 0:
        raise ValueError(
            f"trace {name!r}: the last timestamp is the loop period and must be > 0, got 0"
        )
    return Trace(name, tuple(times))


# ---- faults ----


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    """Bursty loss: per packet the chain moves good->bad with probability `p` and
    bad->good with `r`; a packet is lost with the loss probability of its state."""

    p: float
    r: float
    loss_good: float = 0.0
    loss_bad: float = 1.0


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """The faults of one direction (contract: LinkFaults). Defaults mean "no fault"."""

    loss: float = 0.0
    gilbert_elliott: GilbertElliott | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: float = 0.0
    reorder_gap_ms: float = 20.0
    duplicate: float = 0.0
    rate_kbit: float | None = None
    queue_packets: int = 100
    trace: Trace | None = None

    @classmethod
    def from_json(cls, obj: object, load_trace: Callable[[str], Trace] | None = None) -> LinkFaults:
        """Validate LinkFaults JSON. `load_trace` turns a trace name into a Trace (it does
        the file I/O and raises ValueError for an unknown or malformed trace)."""
        if not isinstance(obj, dict):
            raise ValueError(f"faults: expected a JSON object, got {_json_type(obj)}")
        known = [f.name for f in fields(cls)]
        for key in obj:
            if key not in known:
                raise ValueError(f"unknown field {key!r}: expected one of {', '.join(known)}")
        values: dict[str, object] = {}
        for key in ("loss", "reorder", "duplicate"):
            if key in obj:
                values[key] = _probability(key, obj[key])
        for key in ("delay_ms", "jitter_ms", "reorder_gap_ms"):
            if key in obj:
                values[key] = _number(key, obj[key], "a number >= 0", lambda v: v >= 0)
        if "rate_kbit" in obj:
            values["rate_kbit"] = _number(
                "rate_kbit", obj["rate_kbit"], "a number > 0 (kbit/s)", lambda v: v > 0
            )
        if "queue_packets" in obj:
            queue = obj["queue_packets"]
            if not (isinstance(queue, int) and not isinstance(queue, bool) and queue >= 1):
                raise ValueError(f"queue_packets: expected an integer >= 1, got {queue!r}")
            values["queue_packets"] = queue
        if "gilbert_elliott" in obj:
            values["gilbert_elliott"] = _gilbert_elliott(obj["gilbert_elliott"])
        if "trace" in obj:
            name = obj["trace"]
            if not isinstance(name, str) or not name:
                raise ValueError(f"trace: expected a trace name or absolute path, got {name!r}")
            if load_trace is None:
                raise ValueError(f"trace: cannot load trace {name!r}: no trace loader given")
            values["trace"] = load_trace(name)
        faults = cls(**values)
        if faults.jitter_ms > faults.delay_ms:
            raise ValueError(
                f"jitter_ms: expected at most delay_ms ({faults.delay_ms:g}), "
                f"got {faults.jitter_ms:g}"
            )
        if faults.loss and faults.gilbert_elliott:
            raise ValueError(
                "loss and gilbert_elliott: expected one loss model, got both "
                f"(loss {faults.loss:g} and gilbert_elliott)"
            )
        if faults.rate_kbit is not None and faults.trace is not None:
            raise ValueError(
                "rate_kbit and trace: expected one link capacity, got both "
                f"(rate_kbit {faults.rate_kbit:g} and trace {faults.trace.name!r})"
            )
        return faults

    def to_json(self) -> dict:
        """The fields that differ from "no fault", in the JSON form from_json accepts."""
        result: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, GilbertElliott):
                value = asdict(value)
            elif isinstance(value, Trace):
                value = value.name
            result[f.name] = value
        return result


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), repr(value)
    )


def _number(key: str, value: object, expected: str, ok: Callable[[float], bool]) -> float:
    # bool is an int subclass in Python but not a number in JSON.
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(f"{key}: expected {expected}, got {value!r}")
    return float(value)


def _probability(key: str, value: object) -> float:
    return _number(key, value, "a probability between 0 and 1", lambda v: 0 <= v <= 1)


def _gilbert_elliott(obj: object) -> GilbertElliott:
    if not isinstance(obj, dict):
        raise ValueError(
            "gilbert_elliott: expected an object with p, r, loss_good, loss_bad, "
            f"got {_json_type(obj)}"
        )
    known = [f.name for f in fields(GilbertElliott)]
    for key in obj:
        if key not in known:
            raise ValueError(
                f"unknown field 'gilbert_elliott.{key}': expected one of {', '.join(known)}"
            )
    for key in ("p", "r"):
        if key not in obj:
            raise ValueError(f"gilbert_elliott.{key}: expected a probability, got nothing")
    return GilbertElliott(**{k: _probability(f"gilbert_elliott.{k}", v) for k, v in obj.items()})


# ---- the shaper ----


@dataclass(slots=True)
class ShaperCounters:
    """What a shaper did. `dropped` counts every dropped packet, `queue_drops` the part of
    them dropped because the queue was full; `delayed` counts packets released later than
    they arrived."""

    seen: int = 0
    dropped: int = 0
    queue_drops: int = 0
    delayed: int = 0
    reordered: int = 0
    duplicated: int = 0

    def add(self, other: ShaperCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class LinkShaper:
    """One direction of a link under `faults`; all randomness comes from `seed`."""

    def __init__(self, faults: LinkFaults, seed: int):
        self.faults = faults
        self.counters = ShaperCounters()
        self._random = random.Random(seed)
        self._ge_bad = False
        # Departure times (end of serialization) of the packets in the queue, oldest first.
        self._queue: deque[float] = deque()
        self._link_free_at = -math.inf
        self._last_release = -math.inf
        # Trace replay: time 0 of the trace is the first packet's arrival. `_opportunity` is
        # the absolute index (across loops) of the opportunity the last packet finished in,
        # `_opportunity_left` the bytes it still offers.
        self._trace_origin: float | None = None
        self._opportunity = -1
        self._opportunity_left = 0

    def on_packet(self, now: float, size: int) -> list[float]:
        """Release times of a packet of `size` bytes arriving at `now` ([] = dropped)."""
        faults = self.faults
        counters = self.counters
        counters.seen += 1
        if self._lost():
            counters.dropped += 1
            return []
        departure = self._enqueue(now, size)
        if departure is None:
            counters.dropped += 1
            counters.queue_drops += 1
            return []
        release = departure + faults.delay_ms / 1000
        if faults.jitter_ms:
            release += self._random.uniform(-faults.jitter_ms, faults.jitter_ms) / 1000
        release = max(release, self._last_release)
        if faults.reorder and self._random.random() < faults.reorder:
            # Held back without moving `_last_release`: the packets after it may overtake it.
            release += faults.reorder_gap_ms / 1000
            counters.reordered += 1
        else:
            self._last_release = release
        if release > now:
            counters.delayed += 1
        if faults.duplicate and self._random.random() < faults.duplicate:
            counters.duplicated += 1
            return [release, release]
        return [release]

    def _lost(self) -> bool:
        ge = self.faults.gilbert_elliott
        if ge is None:
            return bool(self.faults.loss) and self._random.random() < self.faults.loss
        # The packet sees the current state's loss probability, then the chain moves on.
        lost = self._random.random() < (ge.loss_bad if self._ge_bad else ge.loss_good)
        if self._random.random() < (ge.r if self._ge_bad else ge.p):
            self._ge_bad = not self._ge_bad
        return lost

    def _enqueue(self, now: float, size: int) -> float | None:
        """When the packet leaves the queue (its last byte is sent), None if it is full."""
        faults = self.faults
        if faults.rate_kbit is None and faults.trace is None:
            return now
        queue = self._queue
        while queue and queue[0] <= now:
            queue.popleft()
        if len(queue) >= faults.queue_packets:
            return None
        if faults.trace is not None:
            departure = self._trace_departure(faults.trace, now, size)
        else:
            departure = max(now, self._link_free_at) + size * 8 / (faults.rate_kbit * 1000)
            self._link_free_at = departure
        queue.append(departure)
        return departure

    def _trace_departure(self, trace: Trace, now: float, size: int) -> float:
        # A packet needs `size` bytes of opportunity capacity, taken in order: small packets
        # share an opportunity, a large one spans several (as Mahimahi's link queue does).
        # Capacity offered while the queue is empty is lost.
        if self._trace_origin is None:
            self._trace_origin = now
        busy = self._opportunity >= 0 and self._opportunity_time(trace, self._opportunity) >= now
        if busy and self._opportunity_left > 0:
            index, left = self._opportunity, self._opportunity_left
        elif busy:
            index, left = self._opportunity + 1, OPPORTUNITY_BYTES
        else:
            index, left = self._first_opportunity_from(trace, now), OPPORTUNITY_BYTES
        need = size
        while need > left:
            need -= left
            index += 1
            left = OPPORTUNITY_BYTES
        self._opportunity, self._opportunity_left = index, left - need
        return self._opportunity_time(trace, index)

    def _opportunity_time(self, trace: Trace, index: int) -> float:
        loops, position = divmod(index, len(trace.times_ms))
        return self._trace_origin + (loops * trace.period_ms + trace.times_ms[position]) / 1000

    def _first_opportunity_from(self, trace: Trace, now: float) -> int:
        elapsed_ms = (now - self._trace_origin) * 1000
        loops = int(elapsed_ms // trace.period_ms)
        position = bisect_left(trace.times_ms, elapsed_ms - loops * trace.period_ms)
        return loops * len(trace.times_ms) + position
