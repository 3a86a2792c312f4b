"""Network profiles: the network every peer of a scenario gets — its NAT, its access link
per direction, optionally a flapping path — as a YAML file (docs/profiles.md; schema
scenarios/schemas/profile.schema.json). PeerLab ships some (scenarios/profiles/*.yaml);
a user names one of those or gives a path. Pure but for reading the file.

A profile changes a scenario's topology: every peer the scenario does not place itself
gets a LAN of its own with the profile's NAT (`none`: stays on the internet). Its link
faults are applied to every peer behind a router once the stack is up (lab.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerlab.router.shaper import LinkFaults
from peerlab.scenarios.faults import shipped_trace
from peerlab.scenarios.spec_files import Document, SpecError

SHIPPED = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: Path
    nat: str
    nat_per_peer: dict[str, str] = field(default_factory=dict)
    up: dict[str, Any] = field(default_factory=dict)
    down: dict[str, Any] = field(default_factory=dict)
    flap: dict[str, float] = field(default_factory=dict)

    def nat_of(self, peer: str) -> str:
        return self.nat_per_peer.get(peer, self.nat)

    def topology(self, spec: dict[str, Any] | None, peers: list[str]) -> dict[str, Any]:
        """The scenario's topology with every peer it does not place put behind the
        profile's NAT."""
        spec = dict(spec or {})
        placed = dict(spec.get("peers") or {})
        for peer in peers:
            if peer not in placed and self.nat_of(peer) != "none":
                placed[peer] = {"nat": self.nat_of(peer)}
        if placed:
            spec["peers"] = placed
        return spec

    def describe(self) -> str:
        return f"{self.name} ({self.source})"


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def resolve(reference: str, relative_to: Path | None = None) -> Path:
    """The file of a profile named `reference` (shipped) or at that path (relative to
    `relative_to`, the scenario file's folder, else the working directory)."""
    if "/" not in reference and not reference.endswith((".yaml", ".yml")):
        path = SHIPPED / f"{reference}.yaml"
        if not path.exists():
            raise SpecError(
                f"profile {reference!r}: no such shipped profile; shipped: "
                f"{', '.join(shipped_profiles())} (or give a path to a profile file)"
            )
        return path
    path = Path(reference)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    if not path.exists():
        raise SpecError(f"profile {reference!r}: no file at {path}")
    return path


def load_profile(reference: str, relative_to: Path | None = None) -> Profile:
    """A profile by name or path, validated (SpecError: file, line, field)."""
    document = Document.read(resolve(reference, relative_to))
    document.validate("profile")
    data = document.data
    for direction in ("up", "down"):
        if direction not in data:
            continue
        try:
            LinkFaults.from_json(data[direction], shipped_trace)
        except ValueError as exc:
            raise document.error((direction,), str(exc)) from None
    shaped = bool(data.get("up") or data.get("down") or data.get("flap"))
    nats = {data["nat"], *data.get("nat_per_peer", {}).values()}
    if shaped and "none" in nats:
        raise document.error(
            ("nat",),
            "a peer with NAT 'none' sits on the internet with no router, so its link "
            "cannot be shaped or cut; give every peer a NAT, or drop up/down/flap",
        )
    return Profile(
        name=document.path.stem,
        description=data["description"],
        source=document.path,
        nat=data["nat"],
        nat_per_peer=dict(data.get("nat_per_peer", {})),
        up=dict(data.get("up", {})),
        down=dict(data.get("down", {})),
        flap=dict(data.get("flap", {})),
    )
