"""The router's iptables rules, built as data: one argv list per rule (without the
`iptables` program name), e.g. ["-t", "nat", "-A", "PEERLAB_POSTROUTING", "-o", "eth0",
"-j", "SNAT", "--to-source", "10.77.0.21"]. Pure: no I/O; router/netfilter.py applies them.

All of the router's rules live in chains of its own (CHAINS), hung from the built-in ones,
so Docker's rules in the same namespace (its embedded DNS) are never touched and a NAT
change replaces exactly the router's rules.

NAT types (RFC 4787; docs/router.md has the why of each rule):
- port-restricted: endpoint-independent mapping (SNAT to one address keeps the source port
  when it is free) + address-and-port-dependent filtering (only replies get in: conntrack).
- symmetric: SNAT --random-fully: a new random port for every destination address+port.
- full-cone: port-restricted + DNAT of every new inbound UDP packet to the one LAN host,
  same port: endpoint-independent filtering.
- address-restricted: full-cone's DNAT only from addresses the LAN host has sent UDP to
  (the `recent` match records destinations on the way out, checks sources on the way in).
- udp-blocked: a firewall: UDP from the LAN is dropped, TCP leaves through SNAT.
Every type drops new UDP arriving on the WAN in INPUT: otherwise the conntrack entry an
unsolicited packet leaves behind takes the port a LAN host's mapping would get, and hole
punching fails (docs/router.md). For the same reason new UDP from the LAN to the router's
external address is dropped: a hairpinned packet that comes before its translation
(router/hairpin.py) must leave no entry that would keep later ones from being translated.
With hairpinning on, the hairpin chains get their static rules here and their
per-mapping ones from router/hairpin.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from peerlab.router.config import ConfigError, check_hairpin, check_nat_type, parse_ipv4
from peerlab.router.hairpin import HAIRPIN_DNAT, HAIRPIN_SNAT

Rule = list[str]

# The router's chains: (table, built-in chain it hangs from, position there). The
# partitions come first in FORWARD so that they cut established flows too. The hairpin
# chains match only packets entering (DNAT) or leaving (SNAT) on the LAN side, the NAT
# chains only the WAN side: their order does not matter.
CHAINS = {
    "PEERLAB_INPUT": ("filter", "INPUT", 1),
    "PEERLAB_OUTPUT": ("filter", "OUTPUT", 1),
    "PEERLAB_PARTITIONS": ("filter", "FORWARD", 1),
    "PEERLAB_FORWARD": ("filter", "FORWARD", 2),
    "PEERLAB_PREROUTING": ("nat", "PREROUTING", 1),
    HAIRPIN_DNAT: ("nat", "PREROUTING", 2),
    "PEERLAB_POSTROUTING": ("nat", "POSTROUTING", 1),
    HAIRPIN_SNAT: ("nat", "POSTROUTING", 2),
}
# What a NAT change replaces (partitions stay, with their counters).
NAT_CHAINS = (
    "PEERLAB_INPUT",
    "PEERLAB_OUTPUT",
    "PEERLAB_FORWARD",
    "PEERLAB_PREROUTING",
    HAIRPIN_DNAT,
    "PEERLAB_POSTROUTING",
    HAIRPIN_SNAT,
)
PARTITION_DIRECTIONS = ("both", "up", "down")
PARTITION_COMMENT_PREFIX = "peerlab-partition"


@dataclass(frozen=True)
class Links:
    """The router's two sides: interface names and the LAN's network (CIDR)."""

    wan_if: str
    lan_if: str
    lan_network: str


def hook_rules() -> list[Rule]:
    """Jumps from the built-in chains into the router's (the chains must exist)."""
    return [
        ["-t", table, "-I", builtin, str(position), "-j", chain]
        for chain, (table, builtin, position) in CHAINS.items()
    ]


def unhook_rules() -> list[Rule]:
    """Removes the jumps; the chains themselves are then flushed and deleted."""
    return [
        ["-t", table, "-D", builtin, "-j", chain] for chain, (table, builtin, _) in CHAINS.items()
    ]


def recent_list_name(generation: int) -> str:
    """The `recent` list of addresses contacted, new for each NAT configuration so that a
    NAT change or a rebind starts with an empty address-restricted filter."""
    return f"peerlab_contacted_{generation}"


def nat_rules(
    nat: str,
    links: Links,
    snat_address: str,
    lan_hosts: tuple[str, ...],
    generation: int = 0,
    hairpin: bool = False,
) -> list[Rule]:
    """The contents of NAT_CHAINS for NAT type `nat`, translating the LAN to `snat_address`
    (with hairpinning: the static part of the hairpin chains)."""
    nat = check_nat_type(nat, lan_hosts, "type")
    snat_address = parse_ipv4(snat_address, "snat_address")
    network = ipaddress.IPv4Network(links.lan_network)
    outside = [h for h in lan_hosts if ipaddress.IPv4Address(h) not in network]
    if outside:
        raise ConfigError(
            f"ROUTER_LAN_HOSTS: {', '.join(outside)} not in the LAN network {network} "
            f"(interface {links.lan_if})"
        )
    wan, lan = links.wan_if, links.lan_if
    recent = recent_list_name(generation)
    out_udp = ["-i", lan, "-o", wan, "-p", "udp"]
    rules: list[Rule] = [
        # The traps: see the module docstring.
        ["-t", "filter", "-A", "PEERLAB_INPUT", "-i", wan, "-p", "udp",
         "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"],
        ["-t", "filter", "-A", "PEERLAB_INPUT", "-i", lan, "-d", snat_address, "-p", "udp",
         "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"],
    ]  # fmt: skip
    forward = "-t", "filter", "-A", "PEERLAB_FORWARD"
    if nat == "address-restricted":
        # No target: record the destination and go on.
        rules.append([*forward, *out_udp, "-m", "recent", "--name", recent, "--set", "--rdest"])
    if nat == "udp-blocked":
        rules.append([*forward, *out_udp, "-j", "DROP"])
    rules += [
        [*forward, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        [*forward, "-i", lan, "-o", wan, "-j", "ACCEPT"],
    ]
    if nat in ("full-cone", "address-restricted"):
        # The new inbound flows the DNAT below let in.
        rules.append(
            [*forward, "-i", wan, "-o", lan, "-p", "udp",
             "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"]
        )  # fmt: skip
    rules.append([*forward, "-i", wan, "-o", lan, "-j", "DROP"])
    if check_hairpin(hairpin, nat, "hairpin"):
        rules += _hairpin_static_rules(nat, links, snat_address)

    if nat in ("full-cone", "address-restricted"):
        only_contacted = (
            ["-m", "recent", "--name", recent, "--rcheck", "--rsource"]
            if nat == "address-restricted"
            else []
        )
        rules.append(
            ["-t", "nat", "-A", "PEERLAB_PREROUTING", "-i", wan, "-d", snat_address,
             "-p", "udp", *only_contacted, "-j", "DNAT", "--to-destination", lan_hosts[0]]
        )  # fmt: skip
    snat = ["-j", "SNAT", "--to-source", snat_address]
    if nat == "symmetric":
        snat.append("--random-fully")
    rules.append(["-t", "nat", "-A", "PEERLAB_POSTROUTING", "-o", wan, "-s", str(network), *snat])
    return rules


def _hairpin_static_rules(nat: str, links: Links, snat_address: str) -> list[Rule]:
    lan = links.lan_if
    fallback = ["-j", "SNAT", "--to-source", snat_address]
    if nat == "symmetric":
        fallback.append("--random-fully")
    return [
        # Forwarding a hairpinned packet back out of the LAN interface would make the
        # kernel tell the sender to "go direct" to the external address's new owner: an
        # ICMP redirect the sender's kernel may follow, sending the next packets, still
        # addressed to the router, to the other host, which drops them.
        ["-t", "filter", "-A", "PEERLAB_OUTPUT", "-o", lan, "-p", "icmp",
         "--icmp-type", "redirect", "-j", "DROP"],
        ["-t", "filter", "-A", "PEERLAB_FORWARD", "-i", lan, "-o", lan,
         "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
        # After the per-mapping rules router/hairpin.py inserts at the top.
        ["-t", "nat", "-A", HAIRPIN_SNAT, "-o", lan, "-s", links.lan_network,
         "-m", "conntrack", "--ctstate", "DNAT", *fallback],
    ]  # fmt: skip


def check_partition(address: object, direction: object) -> tuple[str, str]:
    """(address, direction) of a partition request, or ConfigError naming the field."""
    address = parse_ipv4(address, "address")
    if direction not in PARTITION_DIRECTIONS:
        raise ConfigError(
            f"direction: expected one of {', '.join(PARTITION_DIRECTIONS)}, got {direction!r}"
        )
    assert isinstance(direction, str)
    return address, direction


def partition_comment(partition_id: str, direction: str) -> str:
    """Marks a partition rule, so that its counters can be found again."""
    return f"{PARTITION_COMMENT_PREFIX}:{partition_id}:{direction}"


def partition_rules(partition_id: str, address: str, direction: str, links: Links) -> list[Rule]:
    """DROP rules cutting forwarded traffic to `address` (up) and/or from it (down)."""
    address, direction = check_partition(address, direction)
    if not partition_id or any(c in partition_id for c in ': "\t\n'):
        raise ConfigError(f"id: expected a plain word, got {partition_id!r}")
    rules = []
    chain = ["-t", "filter", "-A", "PEERLAB_PARTITIONS"]
    if direction in ("both", "up"):
        rules.append([*chain, "-i", links.lan_if, "-o", links.wan_if, "-d", address,
                      "-m", "comment", "--comment", partition_comment(partition_id, "up"),
                      "-j", "DROP"])  # fmt: skip
    if direction in ("both", "down"):
        rules.append([*chain, "-i", links.wan_if, "-o", links.lan_if, "-s", address,
                      "-m", "comment", "--comment", partition_comment(partition_id, "down"),
                      "-j", "DROP"])  # fmt: skip
    return rules


def deleting(rules: list[Rule]) -> list[Rule]:
    """The rules that delete `rules` (each -A becomes -D), in reverse order."""
    result = []
    for rule in reversed(rules):
        if "-A" not in rule:
            raise ValueError(f"not an append rule: {rule}")
        at = rule.index("-A")
        result.append([*rule[:at], "-D", *rule[at + 1 :]])
    return result
