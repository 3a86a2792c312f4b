"""Hairpinning (RFC 4787 §6, REQ-9): a LAN host sending to the router's external address
and a port that maps to another LAN host (or to itself) reaches that host, and the packet
arrives from the sender's external address, not its LAN one. Pure: parses conntrack's
event lines and keeps the table of mappings, answering each event with the iptables
rules (router/nat.py's form) that add or remove its translation; router/netfilter.py
feeds it `conntrack -E` and applies the rules.

Linux NAT has no "which LAN host owns external port P" lookup, so the router learns its
mappings from conntrack: every UDP flow from the LAN whose reply comes back to the
router's external address is a mapping, internal address:port -> external port. For each
external port, a DNAT rule in HAIRPIN_DNAT sends LAN packets for external:port to its
owner; for endpoint-independent mapping (every type but symmetric) a SNAT rule in
HAIRPIN_SNAT gives a sender that has a mapping its own external address:port. The static
rules nat.py writes after them catch the rest (a sender without a mapping yet: SNAT to
the external address, a random port for symmetric).

The rules come a few milliseconds after the flow that made a mapping; a packet hairpinned
before them is dropped (nat.py drops new UDP from the LAN to the router's own address, so
it leaves no conntrack entry behind) and the sender's retry goes through.

Hairpinned packets are not filtered (endpoint-independent filtering on the hairpin path,
whatever the NAT type): docs/router.md.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Rule = list[str]

HAIRPIN_DNAT = "PEERLAB_HAIRPIN_DNAT"
HAIRPIN_SNAT = "PEERLAB_HAIRPIN_SNAT"


@dataclass(frozen=True)
class Flow:
    """One UDP conntrack entry, as `conntrack -E -o id` (or `-L -o id`) prints it."""

    event: str
    """"NEW", "DESTROY" (events), or "LISTED" (a line of `conntrack -L`)."""
    id: str
    orig_src: str
    orig_sport: int
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int
    reply_dst: str
    reply_dport: int


def parse_flow(line: str) -> Flow | None:
    """The UDP flow on one line of `conntrack -E|-L -p udp -o id` output, or None for any
    other line (other protocols, UPDATE events, messages)."""
    words = line.split()
    if not words:
        return None
    event = "LISTED"
    if words[0].startswith("["):
        event = words[0].strip("[]")
        if event not in ("NEW", "DESTROY"):
            return None
        words = words[1:]
    if not words or words[0] != "udp":
        return None
    pairs = [w.split("=", 1) for w in words if "=" in w]
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    try:
        (orig_src, reply_src) = values["src"][:2]
        (orig_dst, reply_dst) = values["dst"][:2]
        (orig_sport, reply_sport) = (int(v) for v in values["sport"][:2])
        (orig_dport, reply_dport) = (int(v) for v in values["dport"][:2])
        (flow_id,) = values["id"][:1]
    except (KeyError, ValueError):
        return None
    return Flow(
        event, flow_id, orig_src, orig_sport, orig_dst, orig_dport,
        reply_src, reply_sport, reply_dst, reply_dport,
    )  # fmt: skip


@dataclass(frozen=True)
class Mapping:
    internal: str
    internal_port: int
    external_port: int


class HairpinTable:
    """The mappings conntrack has shown (by flow id) and the rules that translate them.

    Each method returns the rules to apply now, in order; a table starts empty, as the
    router's hairpin chains do after every NAT change (conntrack is flushed then too).
    """

    def __init__(self, lan_if: str, lan_network: str, external: str, symmetric: bool):
        self.lan_if = lan_if
        self.lan_network = ipaddress.IPv4Network(lan_network)
        self.external = external
        # Symmetric NAT gives every destination a new mapping: a hairpinned sender gets
        # a fresh random port (the static rule), not the port of one of its mappings.
        self.symmetric = symmetric
        self._flows: dict[str, Mapping] = {}
        # external port -> its mapping and the flows that hold it
        self._owners: dict[int, tuple[Mapping, set[str]]] = {}
        # (internal, internal port) -> the external port its SNAT rule gives it
        self._snat: dict[tuple[str, int], int] = {}

    def mappings(self) -> list[Mapping]:
        return [mapping for mapping, _ in self._owners.values()]

    def on_flow(self, flow: Flow) -> list[Rule]:
        if flow.event == "DESTROY":
            return self._forget(flow.id)
        mapping = self._mapping_of(flow)
        if mapping is None or flow.id in self._flows:
            return []
        owner = self._owners.get(mapping.external_port)
        if owner is not None and owner[0] != mapping:
            # Linux keeps reply tuples unique, not external ports: two LAN hosts may share
            # one for different destinations. The first keeps the hairpin translation.
            return []
        self._flows[flow.id] = mapping
        if owner is not None:
            owner[1].add(flow.id)
            return []
        self._owners[mapping.external_port] = (mapping, {flow.id})
        rules = [self._dnat("-A", mapping)]
        key = (mapping.internal, mapping.internal_port)
        if not self.symmetric and key not in self._snat:
            self._snat[key] = mapping.external_port
            rules.append(self._snat_rule("-I", mapping))
        return rules

    def _mapping_of(self, flow: Flow) -> Mapping | None:
        """The mapping a flow shows: from a LAN host, its reply addressed to the router's
        external address (so it was translated)."""
        if flow.reply_dst != self.external or flow.orig_src == self.external:
            return None
        try:
            if ipaddress.IPv4Address(flow.orig_src) not in self.lan_network:
                return None
        except ValueError:
            return None
        return Mapping(flow.orig_src, flow.orig_sport, flow.reply_dport)

    def _forget(self, flow_id: str) -> list[Rule]:
        mapping = self._flows.pop(flow_id, None)
        if mapping is None:
            return []
        _, holders = self._owners[mapping.external_port]
        holders.discard(flow_id)
        if holders:
            return []
        del self._owners[mapping.external_port]
        rules = [self._dnat("-D", mapping)]
        key = (mapping.internal, mapping.internal_port)
        if self._snat.get(key) == mapping.external_port:
            del self._snat[key]
            rules.append(self._snat_rule("-D", mapping))
        return rules

    def _dnat(self, op: str, mapping: Mapping) -> Rule:
        return [
            "-t", "nat", op, HAIRPIN_DNAT, "-i", self.lan_if, "-d", self.external,
            "-p", "udp", "--dport", str(mapping.external_port),
            "-j", "DNAT", "--to-destination", f"{mapping.internal}:{mapping.internal_port}",
        ]  # fmt: skip

    def _snat_rule(self, op: str, mapping: Mapping) -> Rule:
        position = ["1"] if op == "-I" else []
        return [
            "-t", "nat", op, HAIRPIN_SNAT, *position, "-o", self.lan_if,
            "-s", mapping.internal, "-p", "udp", "--sport", str(mapping.internal_port),
            "-m", "conntrack", "--ctstate", "DNAT",
            "-j", "SNAT", "--to-source", f"{self.external}:{mapping.external_port}",
        ]  # fmt: skip
