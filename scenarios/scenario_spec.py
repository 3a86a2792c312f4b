"""Declarative scenarios: a YAML file (docs/scenarios.md; schema
scenarios/schemas/scenario.schema.json) read into a `ScenarioSpec` — peers and where they
sit, a network profile, a workload, a fault timeline, expectations. Pure but for reading
the file: everything is checked here, before any container starts, and every error names
the file, line and field (spec_files.py). scenarios/declarative.py runs a spec.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerlab.router.shaper import LinkFaults
from peerlab.scenarios.faults import TCP_FIELDS, TOXIPROXY_TARGETS, shipped_trace
from peerlab.scenarios.profiles import load_profile
from peerlab.scenarios.spec_files import Document, SpecError, duration
from peerlab.scenarios.topology import TopologyError, parse_topology

DEFAULT_RATE = 5.0
DEFAULT_DURATION = 10.0
DEFAULT_SETTLE = 30.0
DEFAULT_KILL_S = 2.0


ARRIVALS = ("even", "poisson")
PICKS = ("cycle", "random")

Window = tuple[float, float]
"""Seconds, earliest and latest: a fixed time is a window of one instant. The run's seed
draws the time from it (scenarios/workload_plan.py)."""


@dataclass(frozen=True)
class Stream:
    sender: str
    receiver: str
    types: tuple[str, ...]
    rate: float
    start: float
    duration: float
    conversation: str
    arrivals: str = "even"
    """even: one message every 1/rate s; poisson: gaps drawn from the seed, 1/rate on
    average."""
    pick: str = "cycle"
    """cycle: the types in order; random: each message's type drawn from the seed."""

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class TimedFault:
    at: Window
    """Seconds from the workload's start."""
    duration: Window | None
    """Seconds it lasts (None: until the workload ends)."""
    kind: str
    """partition, shape, flap, rebind or kill."""
    args: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Expectations:
    all_delivered: bool = True
    no_duplicates: bool = True
    in_order: bool = True
    disconnect_within: float | None = None
    reconnect_within: float | None = None
    ack_p95_below: float | None = None
    settle: float = DEFAULT_SETTLE


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    description: str
    source: Path
    peers: int
    topology: dict[str, Any] | None
    profile: str | None
    env: dict[str, str]
    connect: tuple[tuple[str, str], ...]
    workload: tuple[Stream, ...]
    turn: bool = True
    faults: tuple[TimedFault, ...] = ()
    expect: Expectations = field(default_factory=Expectations)

    @property
    def peer_names(self) -> list[str]:
        return [f"peer{i}" for i in range(1, self.peers + 1)]

    @property
    def end(self) -> float:
        """When the workload's last stream stops sending (seconds from its start)."""
        return max(s.end for s in self.workload)


def load_scenario_spec(path: Path) -> ScenarioSpec:
    """Read and check a scenario file; SpecError names file, line, field and the problem."""
    document = Document.read(path)
    document.validate("scenario")
    data = document.data
    peers = [f"peer{i}" for i in range(1, data["peers"] + 1)]

    def check_peer(where: tuple, name: str) -> str:
        if name not in peers:
            raise document.error(where, f"{name!r} is not a peer of this scenario ({peers})")
        return name

    def check_pair(where: tuple, pair: list[str]) -> tuple[str, str]:
        a, b = (check_peer((*where, i), name) for i, name in enumerate(pair))
        if a == b:
            raise document.error(where, f"a pair needs two different peers, got {pair}")
        return a, b

    topology = data.get("topology")
    try:
        parse_topology(topology, peers)
    except TopologyError as exc:
        raise document.error(("topology",), str(exc)) from None
    profile = data.get("profile")
    if profile is not None:
        try:
            load_profile(profile, path.parent)
        except SpecError as exc:
            raise document.error(("profile",), str(exc)) from None

    streams = []
    for i, item in enumerate(data["workload"]):
        sender = check_peer(("workload", i, "from"), item["from"])
        receiver = check_peer(("workload", i, "to"), item["to"])
        if sender == receiver:
            raise document.error(("workload", i, "to"), "a peer does not send to itself")
        length = duration(item.get("duration", DEFAULT_DURATION))
        if length <= 0:
            raise document.error(("workload", i, "duration"), "must be longer than 0")
        streams.append(
            Stream(
                sender,
                receiver,
                tuple(item.get("types", ["text"])),
                float(item.get("rate", DEFAULT_RATE)),
                duration(item.get("start", 0)),
                length,
                item.get("conversation", f"{sender}-{receiver}"),
                item.get("arrivals", "even"),
                item.get("pick", "cycle"),
            )
        )
    end = max(s.end for s in streams)

    connect = data.get("connect", "all")
    if connect == "all":
        pairs = tuple(itertools.combinations(peers, 2))
    else:
        pairs = tuple(check_pair(("connect", i), p) for i, p in enumerate(connect))
    linked = {frozenset(p) for p in pairs}
    for i, s in enumerate(streams):
        if frozenset((s.sender, s.receiver)) not in linked:
            raise document.error(
                ("workload", i), f"{s.sender} → {s.receiver}: no link between them in `connect`"
            )

    faults = tuple(
        _fault(document, ("faults", i), item, end, check_peer, check_pair)
        for i, item in enumerate(data.get("faults", []))
    )
    expect = data.get("expect", {})
    for key in ("disconnect_within", "reconnect_within"):
        if key in expect and not any(f.kind == "partition" for f in faults):
            raise document.error(
                ("expect", key), "is measured per partition, and the timeline has none"
            )
    expectations = Expectations(
        **{k: v for k, v in expect.items() if isinstance(v, bool)},
        **{k: duration(v) for k, v in expect.items() if not isinstance(v, bool)},
    )
    return ScenarioSpec(
        name=data.get("name", path.stem),
        description=" ".join(data["description"].split()),
        source=path,
        peers=len(peers),
        topology=topology,
        profile=profile,
        env=dict(data.get("env", {})),
        connect=pairs,
        workload=tuple(streams),
        turn=data.get("turn", True),
        faults=faults,
        expect=expectations,
    )


def _window(document: Document, where: tuple, value: Any) -> Window:
    """A duration, or [earliest, latest] (the seed draws from it): earliest ≤ latest."""
    if not isinstance(value, list):
        return duration(value), duration(value)
    earliest, latest = duration(value[0]), duration(value[1])
    if earliest > latest:
        raise document.error(where, f"[{earliest:g}s, {latest:g}s]: earliest after latest")
    return earliest, latest


def _fault(document, where, item, end, check_peer, check_pair) -> TimedFault:
    at = _window(document, (*where, "at"), item["at"])
    lasting = _window(document, (*where, "for"), item["for"]) if "for" in item else None
    if at[1] >= end:
        raise document.error(
            (*where, "at"), f"{at[1]:g}s is not before the workload's end ({end:g}s): it "
            "would never act on any message",
        )  # fmt: skip
    if lasting is not None and lasting[0] <= 0:
        raise document.error((*where, "for"), "must be longer than 0")
    (kind,) = (k for k in ("partition", "shape", "flap", "rebind", "kill") if k in item)
    spec = item[kind]
    at_kind = (*where, kind)
    if kind == "partition":
        args = {"between": check_pair((*at_kind, "between"), spec["between"]),
                "direction": spec.get("direction", "both")}  # fmt: skip
    elif kind == "flap":
        args = {"between": check_pair((*at_kind, "between"), spec["between"]),
                "down": duration(spec["down"]), "up": duration(spec["up"]),
                "cycles": spec["cycles"]}  # fmt: skip
        if args["down"] <= 0 or args["up"] <= 0:
            raise document.error(at_kind, "down and up must be longer than 0")
        if lasting is not None:
            raise document.error((*where, "for"), "a flap lasts its cycles; drop `for`")
    elif kind == "shape":
        target = spec["peer"]
        link = {k: v for k, v in spec.items() if k not in ("peer", "direction")}
        if target in TOXIPROXY_TARGETS:
            unknown = sorted(set(link) - TCP_FIELDS)
            if unknown:
                raise document.error(
                    (*at_kind, unknown[0]),
                    f"Toxiproxy ({target}) shapes TCP: only {', '.join(sorted(TCP_FIELDS))}",
                )
        else:
            check_peer((*at_kind, "peer"), target)
            try:
                LinkFaults.from_json(link, shipped_trace)
            except ValueError as exc:
                raise document.error(at_kind, str(exc)) from None
        args = {"peer": target, "direction": spec.get("direction", "both"), "link": link}
    else:
        args = {"peer": check_peer(at_kind, spec)}
        if kind == "kill" and lasting is None:
            lasting = DEFAULT_KILL_S, DEFAULT_KILL_S
        if kind == "rebind" and lasting is not None:
            raise document.error((*where, "for"), "a rebind is instant; drop `for`")
    return TimedFault(at, lasting, kind, args, document.line(where))
