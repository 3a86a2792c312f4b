"""The topology a scenario declares: validation, the address plan, the Compose override."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
import tempfile
import types

import pytest

from peerlab.scenarios.host_conntrack import exempt_script, remove_script
from peerlab.scenarios.stack import bridge_name
from peerlab.scenarios.subnets import NoFreeSubnet, claim_prefix, pick_prefix, release_prefix
from peerlab.scenarios.topology import (
    TopologyError,
    compose_override,
    parse_topology,
    peer_lan_address,
    router_lan,
    router_wan,
)

PEERS = ["peer1", "peer2", "peer3"]


def test_shared_and_own_lans_and_the_internet():
    topology = parse_topology(
        {
            "lans": {"office": {"nat": "port-restricted"}, "cell": {"nat": "symmetric"}},
            "peers": {"peer1": "office", "peer2": "office", "peer3": {"nat": "full-cone"}},
        },
        [*PEERS, "peer4"],
    )
    assert [(lan.name, lan.nat, lan.peers) for lan in topology.lans] == [
        ("office", "port-restricted", ("peer1", "peer2")),
        ("cell", "symmetric", ()),
        ("peer3-lan", "full-cone", ("peer3",)),
    ]
    assert topology.nat_of("peer4") == "none" and topology.lan_of("peer4") is None
    office = topology.lan("office")
    assert router_wan("10.5", office) == ("10.5.0.21", "10.5.0.71")
    assert router_lan("10.5", office) == "10.5.1.254"
    assert peer_lan_address("10.5", office, "peer2") == "10.5.1.11"
    assert topology.routers == ["router-office", "router-cell", "router-peer3-lan"]


def test_no_topology_means_everyone_on_the_internet():
    topology = parse_topology(None, PEERS)
    assert topology.lans == () and topology.nat_of("peer1") == "none"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"peers": {"peer9": {"nat": "symmetric"}}}, "topology.peers.peer9: 'peer9' is not a peer"),
        (
            {"peers": {"peer1": {"nat": "cone"}}},
            "topology.peers.peer1.nat: unknown NAT type 'cone'",
        ),
        ({"peers": {"peer1": "home"}}, "topology.peers.peer1: no LAN named 'home'"),
        ({"lan": {}}, "topology: unknown key(s) ['lan']"),
        ({"lans": {"Home": {"nat": "symmetric"}}}, "topology.lans.Home: LAN names are lowercase"),
        (
            {"lans": {"x": {"nat": "symmetric", "udp_timeout": -1}}},
            "topology.lans.x.udp_timeout: whole seconds in [1, 3600], got -1",
        ),
        (
            {"lans": {"x": {"nat": "full-cone"}}, "peers": {"peer1": "x", "peer2": "x"}},
            "full-cone forwards unsolicited UDP to the LAN's one host, but 2 peers",
        ),
        ({"lans": {"x": {"nat": "none"}}}, "'none' means no router"),
        (
            {"lans": {"x": {"nat": "symmetric", "hairpin": "yes"}}},
            "topology.lans.x.hairpin: expected true or false, got 'yes'",
        ),
        (
            {"peers": {"peer1": {"nat": "udp-blocked", "hairpin": True}}},
            "topology.peers.peer1.hairpin: a udp-blocked router lets no UDP through",
        ),
        (
            {"peers": {"peer1": {"nat": "none", "hairpin": True}}},
            "topology.peers.peer1.hairpin: 'none' means no router",
        ),
    ],
)
def test_bad_topologies_name_the_setting(spec, message):
    with pytest.raises(TopologyError) as caught:
        parse_topology(spec, PEERS)
    assert message in str(caught.value)


def test_compose_override_moves_lan_peers_behind_their_router():
    topology = parse_topology({"peers": {"peer1": {"nat": "symmetric"}}}, PEERS)
    text = compose_override(topology, "10.9", seed=3)
    assert '"networks": !override {"lan-peer1-lan": {"ipv4_address": "10.9.1.10"}}' in text
    plain = json.loads(text.replace("!override ", ""))
    router = plain["services"]["router-peer1-lan"]
    assert router["environment"]["ROUTER_NAT"] == "symmetric"
    assert router["environment"]["ROUTER_LAN_HOSTS"] == "10.9.1.10"
    assert router["networks"] == {
        "lab": {"ipv4_address": "10.9.0.21"},
        "lan-peer1-lan": {"ipv4_address": "10.9.1.254"},
    }
    peer = plain["services"]["peer1"]
    assert peer["environment"] == {"PEERLAB_GATEWAY": "10.9.1.254"}
    assert "stun:10.9.0.11" in peer["extra_hosts"]
    assert plain["networks"]["lan-peer1-lan"]["ipam"]["config"] == [{"subnet": "10.9.1.0/24"}]


def test_hairpinning_is_off_unless_asked_and_reaches_the_router():
    topology = parse_topology(
        {"lans": {"home": {"nat": "port-restricted", "hairpin": True}},
         "peers": {"peer1": "home", "peer2": {"nat": "symmetric"}}},
        PEERS,
    )  # fmt: skip
    assert [(lan.name, lan.hairpin) for lan in topology.lans] == [
        ("home", True),
        ("peer2-lan", False),
    ]
    services = json.loads(compose_override(topology, "10.9", 1).replace("!override ", ""))[
        "services"
    ]
    assert services["router-home"]["environment"]["ROUTER_HAIRPIN"] == "on"
    assert services["router-peer2-lan"]["environment"]["ROUTER_HAIRPIN"] == "off"


def test_pick_prefix_avoids_every_used_network():
    used = [ipaddress.ip_network(f"10.{x}.0.0/16") for x in range(100, 200) if x != 142]
    assert pick_prefix(used, random.Random(1)) == "10.142"
    used.append(ipaddress.ip_network("10.142.7.0/24"))
    with pytest.raises(NoFreeSubnet, match="docker network prune"):
        pick_prefix(used, random.Random(1))


# A Docker client with no networks (the claim's own logic, without an engine), as source:
# the test runs it in another process too.
NO_NETWORKS = "types.SimpleNamespace(networks=types.SimpleNamespace(list=lambda: []))"


def test_a_claimed_prefix_is_held_against_other_processes_until_released(tmp_path, monkeypatch):
    # Locks of their own: in `make test`, the lab stacks running beside the unit tests hold
    # real prefixes, the one this seed picks first among them at times.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = types.SimpleNamespace(networks=types.SimpleNamespace(list=lambda: []))
    mine = claim_prefix(client, random.Random(7))
    claim = (
        "import random, types; from peerlab.scenarios.subnets import claim_prefix; "
        f"print(claim_prefix({NO_NETWORKS}, random.Random(7)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", claim],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    ).stdout.strip()
    # The same seed makes the same first choice: held, so each got another one.
    assert other != mine
    second = claim_prefix(client, random.Random(7))
    release_prefix(second)
    release_prefix(mine)
    assert second != mine
    # Released (and the other process gone): the same seed gets the first choice again.
    again = claim_prefix(client, random.Random(7))
    release_prefix(again)
    assert again == mine


def test_host_conntrack_rules_are_tagged_and_removed_by_tag():
    script = exempt_script(["br-abc", "br-def"], "peerlab:run-1")
    assert script.count("-j NOTRACK") == 2
    assert "iptables -t raw -I PREROUTING -i br-abc -m comment --comment peerlab:run-1" in script
    assert "grep -E -- '--comment \"?peerlab:run-2\"?( |$)' |" in remove_script("peerlab:run-2")
    assert bridge_name({"Id": "0123456789abcdef", "Options": {}}) == "br-0123456789ab"
    named = {"Id": "x", "Options": {"com.docker.network.bridge.name": "lab0"}}
    assert bridge_name(named) == "lab0"
