"""What a declarative scenario's seed decides, drawn before its run starts: when each
stream sends and which message type, and when each fault starts and how long it lasts
where the file gives a window (`at: [4s, 8s]`). Pure: the same spec and seed give the
same plan, in any process (docs/replay.md); the run records it in its history, and a
replay compares it.

Each stream and each fault draws from a random stream of its own (seeded with the run's
seed, "workload" or "fault", and its index), so that adding a stream to a file does not
move another stream's messages or a fault's time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from peerlab.scenarios.scenario_spec import ScenarioSpec, Stream, TimedFault, Window

PLAN = "plan"
"""The history entry (process "generator", type "info") that records a run's plan."""


@dataclass(frozen=True)
class Send:
    at: float
    """Seconds from the workload's start."""
    kind: str
    """The message type asked for (edit/delete/reaction become a text while there is no
    text to aim at: scenarios/declarative.py)."""


@dataclass(frozen=True)
class PlannedFault:
    fault: TimedFault
    at: float
    """Seconds from the workload's start."""
    duration: float | None
    """Seconds it lasts (None: until the workload ends)."""

    def record(self) -> dict[str, Any]:
        return {"kind": self.fault.kind, "at": self.at, "for": self.duration}


@dataclass(frozen=True)
class Plan:
    sends: tuple[tuple[Send, ...], ...]
    """Per stream, in the spec's order."""
    faults: tuple[PlannedFault, ...]

    def record(self) -> dict[str, Any]:
        """The plan as the history records it (JSON): enough to tell two plans apart."""
        return {
            "sends": [[[s.at, s.kind] for s in stream] for stream in self.sends],
            "faults": [f.record() for f in self.faults],
        }


def plan_run(spec: ScenarioSpec, seed: int) -> Plan:
    return Plan(
        tuple(stream_sends(s, _rng(seed, "workload", i)) for i, s in enumerate(spec.workload)),
        tuple(plan_fault(f, _rng(seed, "fault", i)) for i, f in enumerate(spec.faults)),
    )


def stream_sends(stream: Stream, rng: random.Random) -> tuple[Send, ...]:
    """Even arrivals: one every 1/rate s from the start, before the end (at least one).
    Poisson arrivals: exponential gaps of mean 1/rate, before the end (maybe none)."""
    if stream.arrivals == "even":
        count = max(1, int(stream.duration * stream.rate + 1e-9))
        times = [stream.start + i / stream.rate for i in range(count)]
    else:
        times, t = [], stream.start + rng.expovariate(stream.rate)
        while t < stream.end:
            times.append(t)
            t += rng.expovariate(stream.rate)
    types = stream.types
    return tuple(
        Send(round(t, 3), types[i % len(types)] if stream.pick == "cycle" else rng.choice(types))
        for i, t in enumerate(times)
    )


def plan_fault(fault: TimedFault, rng: random.Random) -> PlannedFault:
    at = _draw(fault.at, rng)
    return PlannedFault(fault, at, None if fault.duration is None else _draw(fault.duration, rng))


def _draw(window: Window, rng: random.Random) -> float:
    earliest, latest = window
    return earliest if earliest == latest else round(rng.uniform(earliest, latest), 3)


def _rng(seed: int, what: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512: the same in every process, whatever
    # PYTHONHASHSEED says.
    return random.Random(f"{seed}:{what}:{index}")
