"""`Faults`: one vocabulary for every fault a scenario can inject, whatever applies it —
a peer's NAT router (the UDP data path: shaping, partitions, rebinding, moving LANs) or
Toxiproxy (the TCP paths: signaling and TURN over TCP).

    shaped = await lab.faults.shape("peer1", direction="both", delay_ms=100, jitter_ms=10)
    cut = await lab.faults.partition("peer1", "peer2")
    await lab.faults.clear(cut)

Every fault is checked before anything is touched (FaultError names the setting and
why), recorded in the run's history with the backend that applied it, and proven: the
lab measures the affected path and fails fast when the effect is missing, and checks that
peers the fault should not touch are untouched. The proof lines go to the progress
output and into the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peerlab.router.nfqueue import load_trace
from peerlab.router.shaper import LinkFaults, Trace
from peerlab.scenarios.fault_proof import (
    Effect,
    FaultNotApplied,
    expected_effect,
    judge,
    judge_firewalled,
    judge_untouched,
)
from peerlab.scenarios.nat_matrix import without_turn
from peerlab.scenarios.probe import ProbeResult, stun_probe
from peerlab.scenarios.probe_turns import ProbeTurns
from peerlab.scenarios.topology import ONE_HOST_NATS, Lan, router_lan, stun_addresses

if TYPE_CHECKING:
    from peerlab.scenarios.lab import Lab

DIRECTIONS = ("up", "down", "both")
TOXIPROXY_TARGETS = ("signaling", "turn_tcp")
"""Toxiproxy proxies a scenario can degrade (docker/toxiproxy.json)."""
TCP_FIELDS = {"delay_ms", "jitter_ms", "rate_kbit"}
"""What Toxiproxy can do to a TCP stream: latency (with jitter) and bandwidth."""
PROOF_PROBES = 200
PROOF_INTERVAL = 0.005
PARTITION_PROOF_S = 1.5
"""Heartbeats flow every 0.5 s on an idle link: within 1.5 s a partition's rule has
dropped some, if the two peers have a direct link at all (a relayed one is not cut, and
its proof reports none dropped). It ends at the first drop: waiting out the 1.5 s added
a second to every cut that traffic crossed at once."""
PARTITION_POLL_S = 0.1
DRAINED_QUIET_S = 0.5
DRAINED_TIMEOUT_S = 10.0


def shipped_trace(name: str) -> Trace:
    """Traces shipped with PeerLab are checked here; a path inside the router container
    can only be checked by the router."""
    if Path(name).is_absolute():
        return Trace(name, (1,))
    return load_trace(name)


class FaultError(ValueError):
    """A fault that cannot be applied; raised before anything is touched."""


@dataclass(eq=False)
class Fault:
    """One active fault; `await lab.faults.clear(fault)` ends it."""

    kind: str
    target: str
    value: dict[str, Any]
    backend: str = ""
    proof: str = ""
    applied_at: float = 0.0
    """Wall-clock time the fault took effect (before its proof was measured)."""
    _undo: list[Callable[[], Awaitable[Any]]] = field(default_factory=list, repr=False)
    _drops: Callable[[], Awaitable[int]] | None = field(default=None, repr=False)
    """A partition's: the packets its rule has dropped so far."""


class Faults:
    def __init__(self, lab: Lab):
        self._lab = lab
        self._baseline: dict[str, ProbeResult] = {}
        """Peer → its STUN round trip just before the current fault: what "untouched"
        compares with. Measured afresh for each fault, so that both sides of the comparison
        see the same traffic (a workload filling a shaped link moves its round trip)."""
        self._unshaped: dict[str, ProbeResult | None] = {}
        """Peer → its round trip before its link was first shaped: what shaping is proven by
        (None behind a UDP-blocking firewall, whose link is proven by the shaper's counts)."""
        self._shaped: dict[str, dict[str, dict[str, Any]]] = {}
        """LAN → direction → the link faults now on its router."""
        self.turns = ProbeTurns()
        """The proofs' probes take turns with a flapping profile's cuts."""

    # ---- shaping ----

    async def shape(self, target: str, direction: str = "both", **faults: Any) -> Fault:
        """Degrade a peer's access link (its router; `up` is from the peer) or a Toxiproxy
        proxy (`up` is client → server)."""
        if direction not in DIRECTIONS:
            raise FaultError(f"direction {direction!r}: expected one of {list(DIRECTIONS)}")
        if target in TOXIPROXY_TARGETS:
            return await self._shape_proxy(target, direction, faults)
        directions = ["up", "down"] if direction == "both" else [direction]
        fault = Fault("shape", target, {"direction": direction, **faults})
        return await self._shape_router(fault, {d: faults for d in directions}, direction)

    async def shape_links(
        self, targets: Sequence[str], up: dict[str, Any], down: dict[str, Any]
    ) -> list[Fault]:
        """Degrade several peers' access links alike, differently in each direction (a
        network profile): one fault per peer, all applied together after one round of
        baselines, each then proven on its own link, one after another, and the peers
        behind no shaped router checked untouched once. Shaped and proven one peer after
        another, a three-peer profile spent ~15 s; this way, ~10."""
        if not up and not down:
            raise FaultError(f"shape_links {', '.join(targets)}: nothing to apply")
        per_direction = {d: faults for d, faults in (("up", up), ("down", down)) if faults}
        _check_links(per_direction, f"shape {', '.join(targets)}")
        lans = {target: self._router_lan(target, "shape") for target in targets}
        shaping = {lan.name for lan in lans.values()}
        placement = self._lab.topology.placement
        bystanders = [
            p for p in self._bystanders(exclude=targets) if placement.get(p) not in shaping
        ]
        fresh = [target for target in targets if target not in self._unshaped]
        await self._take_baselines([*fresh, *bystanders])
        for target in fresh:
            self._unshaped[target] = self._baseline.get(target)
        faults = [Fault("shape", target, {"up": up, "down": down}) for target in targets]
        for fault in faults:
            await self._invoke(fault)
        backends: dict[str, str] = {}
        for fault in faults:
            lan = lans[fault.target]
            if lan.name not in backends:  # peers on one LAN share its router: once
                backends[lan.name] = await self._apply_link(fault, lan, per_direction)
            fault.backend, fault.applied_at = backends[lan.name], time.time()
        proofs = []
        for fault in faults:
            # One probe at a time: with three at once on a busy machine (make test), one
            # proof measured +27.5 ms for +10 asked; a probe's CPU queueing is its error.
            async with self._failing(fault):
                before = self._unshaped[fault.target]
                lan = lans[fault.target]
                proofs.append(
                    await self._prove_link(fault, lan, per_direction, before, "up and down")
                )
        async with self._failing(faults[0]):
            every_link = replace(faults[0], target=", ".join(targets))  # names the cause
            untouched = await self._untouched(every_link, bystanders)
        for fault, proof in zip(faults, proofs, strict=True):
            fault.proof = f"{proof} [{fault.backend}]; {untouched}"
            await self._ok(fault)
        return faults

    async def _apply_link(
        self, fault: Fault, lan: Lan, per_direction: dict[str, dict[str, Any]]
    ) -> str:
        """Put the faults on `lan`'s router, each direction undone with `fault`; the
        shaper's backend(s)."""
        router = self._lab.routers[lan.name]
        links = self._shaped.setdefault(lan.name, {"up": {}, "down": {}})
        backends = set()
        for d, faults in per_direction.items():
            answer = await router.set_faults(d, faults)
            backends.add(answer.get("backend", "?"))
            links[d] = dict(faults)
            fault._undo.append(self._unshape(lan.name, router, d))
        return "+".join(sorted(backends))

    async def _prove_link(
        self,
        fault: Fault,
        lan: Lan,
        per_direction: dict[str, dict[str, Any]],
        before: ProbeResult | None,
        label: str,
    ) -> str:
        """Probe the shaped link of `fault.target` and judge it against `before`, the link
        unshaped: the proof line, or FaultNotApplied."""
        router = self._lab.routers[lan.name]
        counted = await router.counters()
        after = await self._probe(fault.target)
        now = await router.counters()
        links = self._shaped[lan.name]
        what = f"{fault.target}'s {label} link (router {lan.name})"
        if self._firewalled(fault.target):
            if now["up"]["backend"] != "nfqueue":
                return (
                    f"{what}: not measured (no UDP answer crosses a UDP-blocking firewall, "
                    f"and the {now['up']['backend']} backend keeps no counts the lab reads)"
                )
            counts = ("seen", "dropped", "delayed", "reordered")
            up = {key: now["up"][key] - counted["up"][key] for key in counts}
            return judge_firewalled(what, links["up"], after.sent, up)
        assert before is not None  # every peer but a firewalled one has its baseline
        queued = _queued(counted, now, per_direction)
        return judge(what, expected_effect(links["up"], links["down"]), before, after, queued)

    async def _shape_router(
        self, fault: Fault, per_direction: dict[str, dict[str, Any]], label: str
    ) -> Fault:
        target = fault.target
        lan = self._router_lan(target, "shape")
        _check_links(per_direction, f"shape {target}")
        # Every peer behind the same router shares the link; the others must not change.
        sharing = [p for p in self._lab.peers if self._lab.topology.lan_of(p) is lan]
        bystanders = self._bystanders(exclude=sharing)
        # The proof compares with the link before any shaping (the effect asked for is
        # the sum of what is on both directions now): measured once, before the first.
        first = target not in self._unshaped
        await self._take_baselines([target, *bystanders] if first else bystanders)
        before = self._unshaped.setdefault(target, self._baseline.get(target))
        await self._invoke(fault)
        fault.backend = await self._apply_link(fault, lan, per_direction)
        fault.applied_at = time.time()
        async with self._failing(fault):
            proof = await self._prove_link(fault, lan, per_direction, before, label)
            untouched = await self._untouched(fault, bystanders)
        fault.proof = f"{proof} [{fault.backend}]; {untouched}"
        return await self._ok(fault)

    def _unshape(self, lan: str, router: Any, direction: str) -> Callable[[], Awaitable[Any]]:
        async def undo() -> None:
            await router.clear_faults(direction)
            self._shaped[lan][direction] = {}

        return undo

    async def _shape_proxy(self, proxy: str, direction: str, faults: dict[str, Any]) -> Fault:
        unsupported = sorted(set(faults) - TCP_FIELDS)
        if unsupported:
            raise FaultError(
                f"shape {proxy}: {unsupported} cannot be applied by Toxiproxy, which proxies "
                f"TCP (it can do {sorted(TCP_FIELDS)}); UDP-path faults go on a peer's router"
            )
        if not faults:
            raise FaultError(f"shape {proxy}: no fault given")
        for name, value in faults.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FaultError(f"shape {proxy}: {name}: expected a number >= 0, got {value!r}")
        if faults.get("rate_kbit") == 0:
            raise FaultError(f"shape {proxy}: rate_kbit: expected a rate > 0, got 0")
        fault = Fault("shape", proxy, {"direction": direction, **faults}, backend="toxiproxy")
        await self._invoke(fault)
        toxiproxy = self._lab.toxiproxy
        streams = ["upstream", "downstream"] if direction == "both" else [f"{direction}stream"]
        toxics: list[str] = []
        for stream in streams:
            if "delay_ms" in faults or "jitter_ms" in faults:
                name = f"latency_{stream}"
                await toxiproxy.add_toxic(
                    proxy,
                    name,
                    "latency",
                    {
                        "latency": int(faults.get("delay_ms", 0)),
                        "jitter": int(faults.get("jitter_ms", 0)),
                    },
                    stream=stream,
                )
                fault._undo.append(lambda n=name: toxiproxy.remove_toxic(proxy, n))
                toxics.append(name)
            if "rate_kbit" in faults:
                name = f"bandwidth_{stream}"
                rate = max(1, int(faults["rate_kbit"] / 8))  # Toxiproxy counts KB/s
                await toxiproxy.add_toxic(proxy, name, "bandwidth", {"rate": rate}, stream=stream)
                fault._undo.append(lambda n=name: toxiproxy.remove_toxic(proxy, n))
                toxics.append(name)
        fault.applied_at = time.time()
        # Toxiproxy applies a toxic to every byte from the next one on; the scenarios that
        # use them measure the slower connection or round trip themselves.
        fault.proof = f"{proxy}: Toxiproxy toxics {toxics} active"
        return await self._ok(fault)

    # ---- partitions ----

    async def partition(
        self,
        a: str,
        b: str,
        direction: str = "both",
        *,
        during: Callable[[], Awaitable[object]] | None = None,
    ) -> Fault:
        """Cut the direct path between peers a and b: "both", "a->b" or "b->a". A link
        relayed through TURN crosses coturn, not this path, and is not cut.

        `during` runs as soon as the cut is in place, beside its proof, which takes up to
        PARTITION_PROOF_S (less once the rule has dropped a packet) and up to 9 s more
        under load: what must happen right after the cut (messages sent over a half-cut
        path before the sender's transport stalls) cannot wait for the proof. The
        partition returns once both are done."""
        near, far, router_direction = self._partition_ends(a, b, direction)
        fault = Fault("partition", f"{a}/{b}", {"a": a, "b": b, "direction": direction})
        address = await self.public_address(far)
        await self._take_baselines([near])  # just before the cut, for the untouched check
        await self._invoke(fault)
        router = self._lab.routers[self._lab.topology.lan_of(near).name]
        answer = await router.add_partition(address, router_direction)
        fault.applied_at = time.time()
        fault._undo.append(lambda: router.remove_partition(answer["id"]))

        async def drops() -> int:
            return _dropped(await router.counters(), answer["id"])

        fault._drops = drops
        fault.backend = "iptables"
        beside = asyncio.ensure_future(during()) if during is not None else None
        try:
            async with self._failing(fault):
                (dropped, waited), untouched = await asyncio.gather(
                    self._first_drops(drops), self._untouched(fault, [near])
                )
        except BaseException:
            if beside is not None:
                beside.cancel()
            raise
        if beside is not None:
            await beside
        packets = "packet" if dropped == 1 else "packets"
        # Not a failure (a cut may come before the link, or be meant for a relayed one),
        # but said: heartbeats cross a direct link within the wait.
        unused = "" if dropped else " (none: their link, if any, is relayed or idle, not cut)"
        fault.proof = (
            f"{fault.target}: {dropped} {packets} dropped in {waited:.1f} s{unused}; {untouched}"
        )
        return await self._ok(fault)

    async def drained(self, cut: Fault, quiet_s: float = DRAINED_QUIET_S) -> int:
        """Wait until the partition `cut` has dropped nothing for `quiet_s` (at most
        DRAINED_TIMEOUT_S): what was on its way to the cut when it was put in place, or when
        its sender died, has reached it. A peer killed behind a cut leaves packets in the
        delay lines (0.3 s and more on a satellite link): cleared at once, the cut let its
        last acks through, and they arrived after the kill. Returns the drops counted."""
        if cut._drops is None:
            raise FaultError(f"drained: {cut.kind} {cut.target} is not a partition")
        started = time.monotonic()
        dropped, quiet_since = await cut._drops(), started
        while (now := time.monotonic()) - quiet_since < quiet_s:
            if now - started >= DRAINED_TIMEOUT_S:
                raise FaultNotApplied(
                    f"partition {cut.target}: still dropping packets after "
                    f"{DRAINED_TIMEOUT_S:g} s ({dropped} in all)"
                )
            await asyncio.sleep(PARTITION_POLL_S)
            if (count := await cut._drops()) != dropped:
                dropped, quiet_since = count, time.monotonic()
        return dropped

    async def flap(
        self,
        a: str,
        b: str,
        *,
        down_s: float,
        up_s: float,
        cycles: int,
        direction: str = "both",
    ) -> Fault:
        """Cut the direct path a/b for `down_s`, restore it for `up_s`, `cycles` times;
        returns when done. Each cut must drop packets (its rule's counter)."""
        if down_s <= 0 or up_s <= 0 or cycles < 1:
            raise FaultError("flap: down_s and up_s must be positive, cycles at least 1")
        near, far, router_direction = self._partition_ends(a, b, direction)
        value = {"a": a, "b": b, "direction": direction, "down_s": down_s, "up_s": up_s}
        fault = Fault("flap", f"{a}/{b}", {**value, "cycles": cycles}, backend="iptables")
        address = await self.public_address(far)
        router = self._lab.routers[self._lab.topology.lan_of(near).name]
        await self._invoke(fault)
        fault.applied_at = time.time()
        drops = []
        async with self._failing(fault):
            for cycle in range(1, cycles + 1):
                # A cut is proven by its rule's drops: no flapping profile's cut meanwhile,
                # which would drop the packets before they reach the rule.
                async with self.turns.probe():
                    answer = await router.add_partition(address, router_direction)
                    try:
                        await asyncio.sleep(down_s)
                        counters = await router.counters()
                    finally:
                        await router.remove_partition(answer["id"])
                drops.append(_dropped(counters, answer["id"]))
                self._lab.history.record(
                    "nemesis", "info", "flap", {"cycle": cycle, "dropped": drops[-1]},
                    target=fault.target,
                )  # fmt: skip
                await asyncio.sleep(up_s)
            if not all(drops):
                why = without_turn(self._lab.topology, a, b)
                raise FaultNotApplied(
                    f"flap {fault.target}: a cut dropped nothing (packets dropped per cut: "
                    f"{drops}); "
                    + (
                        f"{why}, so their link is relayed, and a relay is not this path"
                        if why
                        else "is there a direct link between them?"
                    )
                )
        fault.proof = (
            f"{fault.target}: {cycles} cuts of {down_s:g} s every {down_s + up_s:g} s, "
            f"packets dropped per cut {drops}"
        )
        return await self._ok(fault)

    def _partition_ends(self, a: str, b: str, direction: str) -> tuple[str, str, str]:
        """(peer whose router cuts, the other peer, the router's direction)."""
        if direction not in ("both", "a->b", "b->a"):
            raise FaultError(f"partition direction {direction!r}: expected both, a->b or b->a")
        for peer in (a, b):
            if peer not in self._lab.peers:
                raise FaultError(f"partition {a}/{b}: {peer!r} is not a peer of this run")
        topology = self._lab.topology
        if topology.lan_of(a) is not None:
            near, far, outgoing = a, b, direction in ("both", "a->b")
        elif topology.lan_of(b) is not None:
            near, far, outgoing = b, a, direction in ("both", "b->a")
        else:
            raise FaultError(
                f"partition {a}/{b}: neither peer sits behind a router; put one on a LAN"
            )
        return near, far, "both" if direction == "both" else ("up" if outgoing else "down")

    # ---- NAT and address changes ----

    async def rebind(self, peer: str) -> Fault:
        """The peer's router forgets its mappings and maps to a new public address."""
        lan = self._router_lan(peer, "rebind")
        fault = Fault("rebind", peer, {})
        await self._invoke(fault)
        answer = await self._lab.routers[lan.name].rebind()
        fault.applied_at = time.time()
        fault.backend = "conntrack"
        async with self._failing(fault):
            after = await self._probe(peer)
            new_ip = (after.mapped or "").rsplit(":", 1)[0]
            if new_ip != answer["wan_after"]:
                raise FaultNotApplied(
                    f"rebind {peer}: its router says its public address is now "
                    f"{answer['wan_after']}, a STUN probe from {peer} is mapped to {after.mapped}"
                )
        fault.proof = (
            f"{peer}'s router rebound {answer['wan_before']} → {answer['wan_after']}; "
            f"STUN now maps {peer} to {after.mapped}"
        )
        return await self._ok(fault)

    async def move(self, peer: str, lan_name: str) -> Fault:
        """The peer changes network (Wi-Fi → cellular): new LAN, new router, new address."""
        old = self._router_lan(peer, "move")
        new = self._lab.topology.lan(lan_name)
        if new.nat in ONE_HOST_NATS:
            raise FaultError(
                f"move {peer} to {lan_name}: a {new.nat} router forwards to its one host, "
                "which it chose at start; move to a port-restricted or symmetric LAN"
            )
        if new is old:
            raise FaultError(f"move {peer}: it already sits on {lan_name}")
        fault = Fault("move", peer, {"from": old.name, "to": new.name})
        await self._invoke(fault)
        prefix = self._lab.stack.prefix
        address = f"{prefix}.{new.number}.{100 + self._lab.peers.index(peer)}"
        containers = self._lab.containers
        # Join the new network before leaving the old one, as a phone does. Docker may
        # make the new network the container's gateway, and fails if a default route
        # exists ("file exists"): drop ours first. Docker's own (via the host bridge) is
        # replaced at once, and Docker drops traffic between its bridges meanwhile.
        await containers.exec(peer, ["ip", "route", "del", "default"])
        await containers.connect(peer, new.network, ipv4_address=address)
        gateway = router_lan(prefix, new)
        await containers.exec(peer, ["ip", "route", "replace", "default", "via", gateway])
        await containers.disconnect(peer, old.network)
        fault.applied_at = time.time()
        self._lab.topology.move(peer, new.name)
        fault.backend = "docker"
        async with self._failing(fault):
            wan = (await self._lab.routers[new.name].health())["wan"]
            after = await self._probe(peer)
            if (after.mapped or "").rsplit(":", 1)[0] != wan:
                raise FaultNotApplied(
                    f"move {peer} to {lan_name}: STUN maps it to {after.mapped}, expected the "
                    f"new router's address {wan}"
                )
        fault.proof = f"{peer} moved {old.name} → {new.name}: now {address}, seen as {after.mapped}"
        return await self._ok(fault)

    # ---- ending faults ----

    async def clear(self, fault: Fault) -> None:
        self._lab.history.record(
            "nemesis", "invoke", f"clear-{fault.kind}", fault.value, target=fault.target
        )
        for undo in reversed(fault._undo):
            await undo()
        fault._undo.clear()
        self._lab.history.record(
            "nemesis", "ok", f"clear-{fault.kind}", fault.value, target=fault.target
        )
        self._lab.progress(f"cleared {fault.kind} {fault.target}")

    # ---- helpers ----

    async def public_address(self, peer: str) -> str:
        """The address others see `peer` at: its router's WAN address, or its own."""
        lan = self._lab.topology.lan_of(peer)
        if lan is not None:
            return (await self._lab.routers[lan.name].health())["wan"]
        return await self._lab.containers.address(peer)

    def _router_lan(self, peer: str, what: str) -> Lan:
        if peer not in self._lab.peers:
            raise FaultError(
                f"{what} {peer!r}: not a peer of this run ({self._lab.peers}) nor a Toxiproxy "
                f"proxy ({sorted(TOXIPROXY_TARGETS)})"
            )
        lan = self._lab.topology.lan_of(peer)
        if lan is None:
            raise FaultError(
                f"{what} {peer}: it sits on the internet with no router; give it a LAN in "
                "the scenario's topology"
            )
        return lan

    async def _probe(self, peer: str, count: int = PROOF_PROBES) -> ProbeResult:
        server = stun_addresses(self._lab.stack.prefix)[0]
        async with self.turns.probe():
            return await stun_probe(
                self._lab.containers, peer, server, count=count, interval=PROOF_INTERVAL
            )

    async def _take_baselines(self, peers: Sequence[str]) -> None:
        """Probe the peers (in parallel) just before a fault: those whose answers can come
        back (a UDP-blocking firewall lets none through)."""
        probed = [p for p in peers if not self._firewalled(p)]
        results = await asyncio.gather(*(self._probe(p) for p in probed))
        self._baseline.update(zip(probed, results, strict=True))

    def _bystanders(self, exclude: Sequence[str]) -> list[str]:
        """The peers a fault must leave alone: not excluded, and not behind a router
        that is shaped now (their round trip has a reason to differ from the baseline)."""
        shaped = {lan for lan, links in self._shaped.items() if any(links.values())}
        placement = self._lab.topology.placement
        return [p for p in self._lab.peers if p not in exclude and placement.get(p) not in shaped]

    async def _untouched(self, fault: Fault, peers: Sequence[str]) -> str:
        """Probe `peers` against the baselines taken before the fault, in parallel (not
        those behind a UDP-blocking firewall: no STUN answer crosses it, so the line says
        they were not checked)."""
        if not peers:
            return "no other peer to check"
        probed = [p for p in peers if not self._firewalled(p)]
        now = await asyncio.gather(*(self._probe(p, count=40) for p in probed))
        cause = f"{fault.kind} {fault.target}"
        lines = [
            judge_untouched(p, self._baseline[p], n, cause, self._own_shaping(p))
            for p, n in zip(probed, now, strict=True)
        ]
        lines += [
            f"{p} not checked (behind a UDP-blocking firewall)" for p in peers if p not in probed
        ]
        return "; ".join(lines)

    async def _first_drops(self, drops: Callable[[], Awaitable[int]]) -> tuple[int, float]:
        """The packets a partition rule has dropped (`drops` reads them), read every
        PARTITION_POLL_S until there are some or PARTITION_PROOF_S has passed, and how long
        that took; in its turn with a flapping profile's cuts (which would drop the packets
        before they reach the rule)."""
        async with self.turns.probe():
            started = time.monotonic()
            while True:
                dropped = await drops()
                waited = time.monotonic() - started
                if dropped or waited >= PARTITION_PROOF_S:
                    return dropped, waited
                await asyncio.sleep(min(PARTITION_POLL_S, PARTITION_PROOF_S - waited))

    def _firewalled(self, peer: str) -> bool:
        return self._lab.topology.nat_of(peer) == "udp-blocked"

    def added_round_trip_s(self, a: str, b: str) -> float:
        """The most the link faults in place (a network profile's, a scenario's) add to a
        round trip between peers a and b, in seconds: both directions of both access
        links, delay plus jitter. Handshakes and timeouts that take round trips scale by
        it: 0 on the default network."""
        effects = [self._own_shaping(peer) for peer in (a, b)]
        return sum(e.delay_ms + e.jitter_ms for e in effects) / 1000

    def _own_shaping(self, peer: str) -> Effect:
        """What the faults on `peer`'s own router (a network profile's) do to its round
        trip anyway: none for a peer on the internet or behind an unshaped router."""
        lan = self._lab.topology.lan_of(peer)
        links = self._shaped.get(lan.name) if lan is not None else None
        return expected_effect(links["up"], links["down"]) if links else Effect()

    @contextlib.asynccontextmanager
    async def _failing(self, fault: Fault) -> AsyncIterator[None]:
        """A failed proof is recorded as such; the fault stays in place until teardown."""
        try:
            yield
        except Exception as exc:
            self._lab.history.record(
                "nemesis", "fail", fault.kind, fault.value, target=fault.target, error=str(exc)
            )
            raise

    async def _invoke(self, fault: Fault) -> None:
        self._lab.history.record("nemesis", "invoke", fault.kind, fault.value, target=fault.target)

    async def _ok(self, fault: Fault) -> Fault:
        self._lab.history.record(
            "nemesis",
            "ok",
            fault.kind,
            fault.value,
            target=fault.target,
            backend=fault.backend,
            proof=fault.proof,
        )
        self._lab.progress(f"proof: {fault.proof}")
        return fault


def _dropped(counters: dict[str, Any], partition_id: str) -> int:
    return sum(counters["partitions"][partition_id]["dropped"].values())


def _check_links(per_direction: dict[str, dict[str, Any]], what: str) -> None:
    """FaultError naming `what` for link faults the shaper would refuse."""
    for faults in per_direction.values():
        try:
            LinkFaults.from_json(faults, shipped_trace)
        except ValueError as exc:
            raise FaultError(f"{what}: {exc}") from None


def _queued(before: dict[str, Any], after: dict[str, Any], per_direction: dict[str, Any]) -> int:
    """Packets a router's rate or trace queues took between two readings of its counters
    (only the directions that have such a queue)."""
    return sum(
        after[d]["seen"] - before[d]["seen"]
        for d, faults in per_direction.items()
        if "trace" in faults or "rate_kbit" in faults
    )
