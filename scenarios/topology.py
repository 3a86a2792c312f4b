"""Where each peer sits: on the internet (the "lab" network), or on a LAN behind a NAT
router. Pure: parses and validates a scenario's topology, lays out the addresses, and
writes the Compose override that adds the routers and LANs (docs/stack.md).

A scenario declares its topology as data (a plan's `TOPOLOGY`, later a YAML file):

    TOPOLOGY = {
        "lans": {"home": {"nat": "port-restricted"}, "cell": {"nat": "symmetric"}},
        "peers": {"peer1": "home", "peer2": "cell", "peer3": {"nat": "full-cone"}},
    }

A LAN's options: `nat` (required), `udp_timeout` (seconds an idle UDP mapping lives) and
`hairpin` (true: the router hairpins, docs/router.md; default false).

A peer given a LAN name sits on that LAN (several peers may share one); a peer given
`{"nat": ..., ...}` gets a LAN of its own, named after it; a peer not listed, or given
`"internet"` / `{"nat": "none"}`, sits on the internet as before. A LAN with no peer (a
network a peer moves to later) still gets its router.

Address plan for a run's prefix P (e.g. "10.77"): the internet is P.0.0/24 with the
infrastructure at fixed addresses and Docker's own from P.0.128/25; router i has WAN
address P.0.(20+i) and a spare P.0.(70+i) for rebinding; LAN i is P.i.0/24 with its
router at P.i.254 and its peers from P.i.10.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peerlab.router.config import NAT_TYPES as ROUTER_NAT_TYPES
from peerlab.router.config import SINGLE_HOST_NAT_TYPES, ConfigError, check_hairpin

NAT_TYPES = ("none", *ROUTER_NAT_TYPES)
"""RFC 4787 behaviours a peer's network can have (docs/stack.md); `none`: no router."""

ONE_HOST_NATS = SINGLE_HOST_NAT_TYPES
"""These forward unsolicited inbound UDP to the LAN's one host, so they allow only one."""

INTERNET = "internet"
INFRA_ADDRESSES = {"signaling": 10, "stun": 11, "toxiproxy": 13}
STUN_ALT_HOST = 12
MAX_LANS = 40
MAX_PEERS_PER_LAN = 200
DEFAULT_UDP_TIMEOUT = 30
ROUTER_CONTROL_PORT = 8080


class TopologyError(ValueError):
    """A topology that cannot be built; the message names the setting and why."""


@dataclass(frozen=True)
class Lan:
    name: str
    number: int
    nat: str
    udp_timeout: int = DEFAULT_UDP_TIMEOUT
    """Seconds an idle UDP mapping lives (conntrack's UDP timeouts in the router)."""
    hairpin: bool = False
    """Whether the router delivers LAN packets sent to its own external address."""
    peers: tuple[str, ...] = ()
    """The peers on it at start."""

    @property
    def router(self) -> str:
        return f"router-{self.name}"

    @property
    def network(self) -> str:
        return f"lan-{self.name}"


@dataclass
class Topology:
    lans: tuple[Lan, ...] = ()
    placement: dict[str, str] = field(default_factory=dict)
    """peer → LAN name, for the peers that sit on a LAN now (`Lan.peers`: at start)."""

    def move(self, peer: str, lan: str) -> None:
        self.lan(lan)
        self.placement[peer] = lan

    def lan(self, name: str) -> Lan:
        for lan in self.lans:
            if lan.name == name:
                return lan
        raise TopologyError(
            f"no LAN named {name!r} in the topology (LANs: {[x.name for x in self.lans]})"
        )

    def lan_of(self, peer: str) -> Lan | None:
        name = self.placement.get(peer)
        return self.lan(name) if name else None

    def nat_of(self, peer: str) -> str:
        lan = self.lan_of(peer)
        return lan.nat if lan else "none"

    @property
    def routers(self) -> list[str]:
        return [lan.router for lan in self.lans]


def parse_topology(spec: Mapping[str, Any] | None, peers: list[str]) -> Topology:
    """Validate a scenario's topology against its peers; raise TopologyError naming the
    offending key and what was expected."""
    if not spec:
        return Topology()
    _only_keys(spec, {"lans", "peers"}, "topology")
    lans: dict[str, dict[str, Any]] = {}
    for name, options in (spec.get("lans") or {}).items():
        _check_name(name, f"topology.lans.{name}")
        lans[name] = _lan_options(options, f"topology.lans.{name}")
    placement: dict[str, str] = {}
    for peer, where in (spec.get("peers") or {}).items():
        where_key = f"topology.peers.{peer}"
        if peer not in peers:
            raise TopologyError(f"{where_key}: {peer!r} is not a peer of this run (peers: {peers})")
        if isinstance(where, Mapping):
            options = _lan_options(where, where_key)
            if options["nat"] == "none":
                continue
            name = f"{peer}-lan"
            if name in lans:
                raise TopologyError(f"{where_key}: LAN {name!r} is already declared")
            lans[name] = options
            placement[peer] = name
        elif where == INTERNET:
            continue
        elif isinstance(where, str):
            if where not in lans:
                raise TopologyError(
                    f"{where_key}: no LAN named {where!r} (declared: {sorted(lans)}, "
                    f"or {INTERNET!r})"
                )
            placement[peer] = where
        else:
            raise TopologyError(
                f"{where_key}: expected a LAN name or {{'nat': ...}}, got {where!r}"
            )
    if len(lans) > MAX_LANS:
        raise TopologyError(f"topology: {len(lans)} LANs, at most {MAX_LANS}")
    built = []
    for number, (name, options) in enumerate(lans.items(), start=1):
        members = tuple(p for p in peers if placement.get(p) == name)
        if options["nat"] == "none":
            raise TopologyError(
                f"topology.lans.{name}.nat: 'none' means no router; put the peers on "
                f"{INTERNET!r} instead"
            )
        if options["nat"] in ONE_HOST_NATS and len(members) > 1:
            raise TopologyError(
                f"topology.lans.{name}.nat: {options['nat']} forwards unsolicited UDP to the "
                f"LAN's one host, but {len(members)} peers sit on it: {list(members)}"
            )
        if len(members) > MAX_PEERS_PER_LAN:
            raise TopologyError(f"topology.lans.{name}: at most {MAX_PEERS_PER_LAN} peers")
        built.append(Lan(name, number, **options, peers=members))
    return Topology(tuple(built), placement)


def _only_keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise TopologyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _check_name(name: Any, where: str) -> None:
    if not (isinstance(name, str) and name and name.replace("-", "").isalnum() and name.islower()):
        raise TopologyError(f"{where}: LAN names are lowercase letters, digits and '-'")
    if name == INTERNET:
        raise TopologyError(f"{where}: {INTERNET!r} is the public network, not a LAN")


def _lan_options(options: Any, where: str) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TopologyError(f"{where}: expected a mapping with 'nat', got {options!r}")
    _only_keys(options, {"nat", "udp_timeout", "hairpin"}, where)
    nat = options.get("nat")
    if nat not in NAT_TYPES:
        raise TopologyError(f"{where}.nat: unknown NAT type {nat!r}; one of {list(NAT_TYPES)}")
    udp_timeout = options.get("udp_timeout", DEFAULT_UDP_TIMEOUT)
    if not (isinstance(udp_timeout, int) and not isinstance(udp_timeout, bool)) or not (
        1 <= udp_timeout <= 3600
    ):
        raise TopologyError(f"{where}.udp_timeout: whole seconds in [1, 3600], got {udp_timeout!r}")
    hairpin = options.get("hairpin", False)
    if nat == "none" and hairpin:
        raise TopologyError(f"{where}.hairpin: 'none' means no router, so nothing to hairpin")
    try:
        check_hairpin(hairpin, nat, f"{where}.hairpin")
    except ConfigError as error:
        raise TopologyError(str(error)) from None
    return {"nat": nat, "udp_timeout": udp_timeout, "hairpin": hairpin}


# ---- addresses ----


def infra_address(prefix: str, service: str) -> str:
    return f"{prefix}.0.{INFRA_ADDRESSES[service]}"


def stun_addresses(prefix: str) -> tuple[str, str]:
    """coturn's two addresses (RFC 5780 needs a second one to answer CHANGE-REQUEST)."""
    return infra_address(prefix, "stun"), f"{prefix}.0.{STUN_ALT_HOST}"


def router_wan(prefix: str, lan: Lan) -> tuple[str, str]:
    """The router's WAN address and its spare (taken over by a rebind)."""
    return f"{prefix}.0.{20 + lan.number}", f"{prefix}.0.{70 + lan.number}"


def router_lan(prefix: str, lan: Lan) -> str:
    return f"{prefix}.{lan.number}.254"


def peer_lan_address(prefix: str, lan: Lan, peer: str) -> str:
    return f"{prefix}.{lan.number}.{10 + lan.peers.index(peer)}"


# ---- compose ----


NETWORK_CPU_SHARES = 8192
"""CPU weight of the containers that are the network (routers, coturn, Toxiproxy; Docker's
default is 1024, compose.yaml says it again for coturn and Toxiproxy) and of the probes
that measure it (scenarios/probe.py): when the machine is busy, a router's userspace delay
line that waits for the CPU behind agents or another stack's containers adds latency
nobody asked for, and the proofs measure it."""


def compose_override(topology: Topology, prefix: str, seed: int) -> str:
    """The Compose override adding each LAN's network and router, and moving each LAN
    peer onto its LAN with the router as default route. JSON is valid YAML; the only
    YAML-specific part is `!override`, which replaces a peer's network list instead of
    merging it with compose.yaml's."""
    hosts = [f"{name}:{infra_address(prefix, name)}" for name in INFRA_ADDRESSES]
    services: dict[str, Any] = {}
    networks: dict[str, Any] = {}
    overrides: dict[str, str] = {}
    for lan in topology.lans:
        wan, spare = router_wan(prefix, lan)
        gateway = router_lan(prefix, lan)
        networks[lan.network] = {
            "driver": "bridge",
            "ipam": {"config": [{"subnet": f"{prefix}.{lan.number}.0/24"}]},
        }
        services[lan.router] = {
            "image": "${PEERLAB_ROUTER_IMAGE:-peerlab/router:dev}",
            "cap_add": ["NET_ADMIN", "NET_RAW"],
            "sysctls": {
                "net.ipv4.ip_forward": "1",
                "net.netfilter.nf_conntrack_udp_timeout": str(lan.udp_timeout),
                "net.netfilter.nf_conntrack_udp_timeout_stream": str(lan.udp_timeout),
            },
            "environment": {
                "ROUTER_NAME": lan.name,
                "ROUTER_NAT": lan.nat,
                "ROUTER_HAIRPIN": "on" if lan.hairpin else "off",
                "ROUTER_WAN_ADDRESS": wan,
                "ROUTER_WAN_SPARE": spare,
                "ROUTER_LAN_ADDRESS": gateway,
                "ROUTER_LAN_HOSTS": ",".join(peer_lan_address(prefix, lan, p) for p in lan.peers),
                "ROUTER_SEED": str(seed * 1000 + lan.number),
                "ROUTER_CONTROL_PORT": str(ROUTER_CONTROL_PORT),
                "ROUTER_SHAPER": "${PEERLAB_SHAPER:-auto}",
            },
            "networks": {
                "lab": {"ipv4_address": wan},
                lan.network: {"ipv4_address": gateway},
            },
            "ports": [f"127.0.0.1::{ROUTER_CONTROL_PORT}"],
            "cpu_shares": NETWORK_CPU_SHARES,
            "healthcheck": {
                "test": [
                    "CMD",
                    "python",
                    "-c",
                    "import urllib.request; urllib.request.urlopen("
                    f"'http://127.0.0.1:{ROUTER_CONTROL_PORT}/healthz', timeout=2)",
                ],
                # For `docker compose ps`; the harness asks /healthz itself. Each check
                # is a `docker exec` of a Python process: seldom, since a lab may run ten
                # routers.
                "interval": "30s",
                "timeout": "3s",
                "retries": 3,
            },
            # docker-init reaps and forwards SIGTERM from the first instant: fast stops.
            "init": True,
        }
        for peer in lan.peers:
            placeholder = f"@networks-of-{peer}@"
            services[peer] = _peer_on_lan(lan, gateway, hosts, placeholder)
            address = peer_lan_address(prefix, lan, peer)
            overrides[placeholder] = "!override " + json.dumps(
                {lan.network: {"ipv4_address": address}}
            )
    text = json.dumps({"services": services, "networks": networks}, indent=2)
    # `!override` (replace compose.yaml's network list instead of merging with it) is
    # YAML with no JSON spelling: the only non-JSON part of the file.
    for placeholder, value in overrides.items():
        text = text.replace(json.dumps(placeholder), value)
    return text + "\n"


def _peer_on_lan(lan: Lan, gateway: str, hosts: list[str], networks: str) -> dict[str, Any]:
    # The agent's image is reused as is: a shell wrapper replaces the default route
    # (Docker's points at the host bridge) before the agent starts.
    route = (
        'ip route replace default via "$$PEERLAB_GATEWAY" || '
        '{ echo "cannot route through $$PEERLAB_GATEWAY (needs NET_ADMIN)" >&2; exit 1; }; '
        'exec "$$@"'
    )
    return {
        "cap_add": ["NET_ADMIN"],
        "entrypoint": ["sh", "-c", route, "lan-route"],
        "environment": {"PEERLAB_GATEWAY": gateway},
        "extra_hosts": hosts,
        # Started, not healthy: until the router forwards, the agent retries signaling.
        "depends_on": [lan.router],
        "networks": networks,
    }
