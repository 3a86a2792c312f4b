"""The run's own history: every fault the harness applied and every workload operation,
with wall and monotonic times, as JSON lines in `<run>/history.jsonl`; and
`fault_windows`, which reads back when each fault was active, for the checker and the
report alike.

Entries follow Jepsen's shape: `{"process": "nemesis", "type": "invoke"|"ok"|"fail"|
"info", "f": <what>, "value": {...}}`, so that a checker reading the agents' event logs
next to it knows when each fault was active and which backend applied it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class History:
    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict[str, Any]] = []

    def record(self, process: str, type: str, f: str, value: Any = None, **extra: Any) -> dict:
        entry = {
            "index": len(self.entries),
            "t_wall": time.time(),
            "t_mono": time.monotonic(),
            "process": process,
            "type": type,
            "f": f,
            "value": value,
            **extra,
        }
        self.entries.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry


# ---- reading the faults back ----

ENDED_BY: dict[str, tuple[tuple[str, str], ...]] = {
    # Until cleared, or until the teardown removes them.
    "shape": (),
    "partition": (),
    # A killed peer is down until `lab.restart` has its agent answering again.
    "kill": (("restart", "ok"),),
    # Over at their own result: a flap returns after its last cycle (its `info` entries
    # are the cycles), a rebind or a move is a single change.
    "flap": (("flap", "ok"), ("flap", "fail")),
    "rebind": (("rebind", "ok"), ("rebind", "fail")),
    "move": (("move", "ok"), ("move", "fail")),
    # One cut of a flapping profile (scenarios/profile_runtime.py): its `info`, with the
    # packets it dropped, once the link is restored.
    "profile-flap": (("profile-flap", "info"),),
}
"""Every fault the harness records (the `f` of its nemesis `invoke`) and the entries (`f`,
`type`) that end it besides its `clear-<kind>` `ok` (`lab.faults.clear` takes any fault).
A nemesis `f` missing here still makes a window, ended by its own `ok` or `fail`: no
fault goes unseen."""
FAULT_KINDS = tuple(ENDED_BY)
ENDINGS = {f"clear-{kind}": kind for kind in FAULT_KINDS} | {
    f: kind for kind, ends in ENDED_BY.items() for f, _ in ends if f != kind
}
"""The `f` of the entries that only end a fault (`clear-<kind>`, `restart`) → its kind."""
PROOFS = ("nat-check",)
"""Nemesis entries that are the lab's proofs (the NAT types at start), not faults."""


@dataclass
class FaultWindow:
    """When one fault was active, in the history's `t_wall` (Unix seconds)."""

    kind: str
    target: str
    """Whom it hit: a peer, "a/b" for a pair, or a Toxiproxy proxy (`signaling`, ...)."""
    value: Any
    start: float
    end: float = 0.0
    backend: str = ""
    failed: bool = False
    """Its proof failed (the fault stays in place)."""
    until_end: bool = False
    """Never ended in the history: it lasted until the end of the run (the teardown)."""

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self.target.split("/"))

    @property
    def label(self) -> str:
        details = ""
        if isinstance(self.value, dict):
            # a, b and peer are already the target ("peer1/peer2", "peer1").
            details = ", ".join(
                f"{k}={v}" for k, v in self.value.items() if k not in ("a", "b", "peer")
            )
        return f"{self.kind} {self.target}" + (f" ({details})" if details else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "backend": self.backend,
            "failed": self.failed,
            "until_end": self.until_end,
        }


def _target(entry: Mapping[str, Any]) -> str:
    """The entry's `target`; a kill, a restart or a profile's cut names its peer instead."""
    value = entry.get("value")
    peer = value.get("peer", "") if isinstance(value, dict) else ""
    return entry.get("target") or peer


def _matching(open_: list[FaultWindow], entry: Mapping[str, Any]) -> FaultWindow | None:
    """The open fault `entry` is about: same target, and the fault's value repeated (an
    ending may add what it measured, as a profile's cut adds its drops); an exact repeat
    first, then the earliest applied."""
    value = entry.get("value")
    same = [w for w in open_ if w.target == _target(entry)]
    exact = [w for w in same if w.value == value]
    extended = [w for w in same if _extends(value, w.value)]
    return (exact or extended or [None])[0]


def _extends(value: Any, base: Any) -> bool:
    """`value` repeats every item of `base`, a dict, and may add more."""
    return isinstance(value, dict) and isinstance(base, dict) and base.items() <= value.items()


def fault_windows(history: Iterable[Mapping[str, Any]], t_end: float) -> list[FaultWindow]:
    """When each fault in the harness's history was active, in the order applied.

    A fault starts at its `invoke` (it is applied right after; its `ok` only comes once
    its proof is measured) and ends at an entry ENDED_BY names or at its `clear-<kind>`
    `ok`; one never ended lasts until `t_end` (the run's last entry: the teardown removes
    it). Its own `ok`/`fail` gives the backend and whether its proof failed."""
    windows: list[FaultWindow] = []
    open_: dict[str, list[FaultWindow]] = defaultdict(list)
    nemesis = [
        h
        for h in history
        if h.get("process") == "nemesis" and h.get("f") not in PROOFS and "t_wall" in h
    ]
    for h in sorted(nemesis, key=lambda h: h.get("index", 0)):
        f, type_ = h.get("f", ""), h.get("type")
        kind = ENDINGS.get(f, f)
        if f == kind and type_ == "invoke":
            window = FaultWindow(kind, _target(h), h.get("value"), h["t_wall"])
            windows.append(window)
            open_[kind].append(window)
            continue
        window = _matching(open_[kind], h)
        if window is None:
            continue  # the end of a fault whose start the history does not hold
        if f == kind and type_ in ("ok", "fail"):
            window.backend = h.get("backend", window.backend)
            window.failed = window.failed or type_ == "fail"
        ends = ENDED_BY.get(kind, ((kind, "ok"), (kind, "fail")))
        if (f, type_) in (*ends, (f"clear-{kind}", "ok")):
            window.end = h["t_wall"]
            open_[kind].remove(window)
    for window in (w for still_open in open_.values() for w in still_open):
        window.end, window.until_end = t_end, True
    return windows
