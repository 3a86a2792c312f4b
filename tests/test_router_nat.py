"""The router without a kernel: settings validation (router/config.py), the rule builder
(router/nat.py), the formats netfilter.py reads and writes, and the control API over real
HTTP with the system tools replaced by a recorder and the shaper by a stand-in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from peerlab.router.config import ConfigError, RouterConfig, from_env
from peerlab.router.control import ControlServer
from peerlab.router.nat import (
    CHAINS,
    NAT_CHAINS,
    Links,
    deleting,
    hook_rules,
    nat_rules,
    partition_rules,
    recent_list_name,
)
from peerlab.router.netfilter import (
    Address,
    Conflict,
    NatRouter,
    Netfilter,
    NetfilterError,
    UnknownPartition,
    find_links,
    parse_addresses,
    parse_partition_counters,
    restore_script,
)

ENV = {
    "ROUTER_NAME": "lan1",
    "ROUTER_WAN_ADDRESS": "10.77.0.21",
    "ROUTER_LAN_ADDRESS": "10.77.1.254",
    "ROUTER_WAN_SPARE": "10.77.0.71",
    "ROUTER_LAN_HOSTS": "10.77.1.10",
    "ROUTER_NAT": "port-restricted",
    "ROUTER_SEED": "7",
    "ROUTER_CONTROL_PORT": "8080",
    "ROUTER_SHAPER": "auto",
}
LINKS = Links(wan_if="eth0", lan_if="eth1", lan_network="10.77.1.0/24")
HOST = ("10.77.1.10",)


def config(**changes: str) -> RouterConfig:
    return from_env({**ENV, **changes})


def chain_rules(rules: list[list[str]], chain: str) -> list[list[str]]:
    return [r for r in rules if r[3] == chain]


# ---- settings ----


def test_settings_from_the_environment():
    c = config()
    assert (c.name, c.wan_address, c.lan_address, c.wan_spare) == (
        "lan1",
        "10.77.0.21",
        "10.77.1.254",
        "10.77.0.71",
    )
    assert (c.lan_hosts, c.nat, c.seed, c.control_port, c.shaper) == (
        HOST,
        "port-restricted",
        7,
        8080,
        "auto",
    )


def test_defaults_when_only_the_addresses_are_set():
    c = from_env({"ROUTER_WAN_ADDRESS": "10.77.0.21", "ROUTER_LAN_ADDRESS": "10.77.1.254"})
    assert c.hairpin is False
    assert config(ROUTER_HAIRPIN="On").hairpin is True
    assert (c.name, c.nat, c.seed, c.control_port, c.shaper, c.wan_spare, c.lan_hosts) == (
        "router",
        "port-restricted",
        0,
        8080,
        "auto",
        None,
        (),
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ROUTER_NAT": "cone"}, "ROUTER_NAT: expected one of full-cone, address-restricted"),
        ({"ROUTER_NAT": "none"}, "ROUTER_NAT: 'none' means no router at all"),
        (
            {"ROUTER_NAT": "full-cone", "ROUTER_LAN_HOSTS": "10.77.1.10,10.77.1.11"},
            "ROUTER_NAT: full-cone sends new inbound UDP to the one LAN host, so it needs "
            "exactly one in ROUTER_LAN_HOSTS; got 2 (10.77.1.10, 10.77.1.11)",
        ),
        (
            {"ROUTER_NAT": "address-restricted", "ROUTER_LAN_HOSTS": ""},
            "needs exactly one in ROUTER_LAN_HOSTS; got 0 (none)",
        ),
        ({"ROUTER_WAN_ADDRESS": ""}, "ROUTER_WAN_ADDRESS: required, not set"),
        ({"ROUTER_LAN_ADDRESS": "10.77.1"}, "ROUTER_LAN_ADDRESS: expected an IPv4 address"),
        ({"ROUTER_LAN_HOSTS": "10.77.1.10,x"}, "ROUTER_LAN_HOSTS: expected an IPv4 address"),
        ({"ROUTER_LAN_HOSTS": "10.77.1.10, 10.77.1.10"}, "ROUTER_LAN_HOSTS: 10.77.1.10 listed"),
        ({"ROUTER_LAN_HOSTS": "10.77.1.254"}, "ROUTER_LAN_HOSTS: 10.77.1.254 is the router's own"),
        ({"ROUTER_WAN_SPARE": "10.77.0.21"}, "ROUTER_WAN_SPARE: must be a second WAN address"),
        ({"ROUTER_SEED": "seven"}, "ROUTER_SEED: expected an integer, got 'seven'"),
        ({"ROUTER_CONTROL_PORT": "70000"}, "ROUTER_CONTROL_PORT: expected a port 0..65535"),
        ({"ROUTER_SHAPER": "tc"}, "ROUTER_SHAPER: expected one of auto, nfqueue, netem, got 'tc'"),
        ({"ROUTER_HAIRPIN": "yes"}, "ROUTER_HAIRPIN: expected one of 1, true, on, 0, false, off"),
        (
            {"ROUTER_HAIRPIN": "on", "ROUTER_NAT": "udp-blocked"},
            "ROUTER_HAIRPIN: a udp-blocked router lets no UDP through",
        ),
    ],
)  # fmt: skip
def test_a_bad_setting_is_named(changes, expected):
    with pytest.raises(ConfigError) as error:
        config(**changes)
    assert expected in str(error.value)


# ---- NAT rules ----


def test_every_nat_type_drops_new_udp_arriving_on_the_wan_and_unsolicited_inbound():
    for nat in ("full-cone", "address-restricted", "port-restricted", "symmetric", "udp-blocked"):
        rules = nat_rules(nat, LINKS, "10.77.0.21", HOST)
        assert chain_rules(rules, "PEERLAB_INPUT") == [
            ["-t", "filter", "-A", "PEERLAB_INPUT", "-i", "eth0", "-p", "udp",
             "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"],
            ["-t", "filter", "-A", "PEERLAB_INPUT", "-i", "eth1", "-d", "10.77.0.21",
             "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"],
        ], nat  # fmt: skip
        forward = chain_rules(rules, "PEERLAB_FORWARD")
        assert forward[-1][4:] == ["-i", "eth0", "-o", "eth1", "-j", "DROP"], nat
        # Only the router's own chains, so Docker's rules are never touched.
        assert {r[3] for r in rules} <= set(NAT_CHAINS), nat


def test_port_restricted_is_plain_port_preserving_snat():
    rules = nat_rules("port-restricted", LINKS, "10.77.0.21", HOST)
    assert chain_rules(rules, "PEERLAB_POSTROUTING") == [
        ["-t", "nat", "-A", "PEERLAB_POSTROUTING", "-o", "eth0", "-s", "10.77.1.0/24",
         "-j", "SNAT", "--to-source", "10.77.0.21"],
    ]  # fmt: skip
    assert chain_rules(rules, "PEERLAB_PREROUTING") == []


def test_symmetric_snat_picks_random_ports():
    rules = nat_rules("symmetric", LINKS, "10.77.0.21", ("10.77.1.10", "10.77.1.11"))
    (snat,) = chain_rules(rules, "PEERLAB_POSTROUTING")
    assert snat[-1] == "--random-fully"
    assert chain_rules(rules, "PEERLAB_PREROUTING") == []


def test_full_cone_sends_new_inbound_udp_to_the_one_host():
    rules = nat_rules("full-cone", LINKS, "10.77.0.71", HOST)
    assert chain_rules(rules, "PEERLAB_PREROUTING") == [
        ["-t", "nat", "-A", "PEERLAB_PREROUTING", "-i", "eth0", "-d", "10.77.0.71", "-p", "udp",
         "-j", "DNAT", "--to-destination", "10.77.1.10"],
    ]  # fmt: skip
    assert ["-t", "filter", "-A", "PEERLAB_FORWARD", "-i", "eth0", "-o", "eth1", "-p", "udp",
            "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"] in rules  # fmt: skip


def test_address_restricted_lets_in_only_addresses_contacted():
    rules = nat_rules("address-restricted", LINKS, "10.77.0.21", HOST, generation=3)
    name = recent_list_name(3)
    forward = chain_rules(rules, "PEERLAB_FORWARD")
    # Recorded before the ESTABLISHED accept, so that every outbound packet counts.
    assert forward[0][4:] == ["-i", "eth1", "-o", "eth0", "-p", "udp",
                              "-m", "recent", "--name", name, "--set", "--rdest"]  # fmt: skip
    (dnat,) = chain_rules(rules, "PEERLAB_PREROUTING")
    assert dnat[4:] == ["-i", "eth0", "-d", "10.77.0.21", "-p", "udp",
                        "-m", "recent", "--name", name, "--rcheck", "--rsource",
                        "-j", "DNAT", "--to-destination", "10.77.1.10"]  # fmt: skip
    assert recent_list_name(4) != name


def test_udp_blocked_drops_lan_udp_before_anything_is_accepted():
    rules = nat_rules("udp-blocked", LINKS, "10.77.0.21", ("10.77.1.10", "10.77.1.11"))
    forward = chain_rules(rules, "PEERLAB_FORWARD")
    assert forward[0][4:] == ["-i", "eth1", "-o", "eth0", "-p", "udp", "-j", "DROP"]
    assert chain_rules(rules, "PEERLAB_POSTROUTING")  # TCP still leaves


def test_nat_rules_validate_before_anything_is_built():
    with pytest.raises(ConfigError, match=r"^type: full-cone .* got 2"):
        nat_rules("full-cone", LINKS, "10.77.0.21", ("10.77.1.10", "10.77.1.11"))
    with pytest.raises(ConfigError, match=r"^type: expected one of"):
        nat_rules("restricted", LINKS, "10.77.0.21", HOST)
    with pytest.raises(ConfigError, match=r"ROUTER_LAN_HOSTS: 10.77.2.10 not in the LAN network"):
        nat_rules("port-restricted", LINKS, "10.77.0.21", ("10.77.2.10",))


def test_hooks_put_partitions_before_the_nat_filter():
    assert ["-t", "filter", "-I", "FORWARD", "1", "-j", "PEERLAB_PARTITIONS"] in hook_rules()
    assert ["-t", "filter", "-I", "FORWARD", "2", "-j", "PEERLAB_FORWARD"] in hook_rules()
    assert len(hook_rules()) == len(CHAINS)


# ---- partitions ----


def test_partition_both_ways_drops_to_and_from_the_address():
    rules = partition_rules("p1", "10.77.0.22", "both", LINKS)
    assert rules == [
        ["-t", "filter", "-A", "PEERLAB_PARTITIONS", "-i", "eth1", "-o", "eth0",
         "-d", "10.77.0.22", "-m", "comment", "--comment", "peerlab-partition:p1:up",
         "-j", "DROP"],
        ["-t", "filter", "-A", "PEERLAB_PARTITIONS", "-i", "eth0", "-o", "eth1",
         "-s", "10.77.0.22", "-m", "comment", "--comment", "peerlab-partition:p1:down",
         "-j", "DROP"],
    ]  # fmt: skip
    assert [r[-3] for r in partition_rules("p2", "10.77.0.22", "up", LINKS)] == [
        "peerlab-partition:p2:up"
    ]
    assert [r[-3] for r in partition_rules("p3", "10.77.0.22", "down", LINKS)] == [
        "peerlab-partition:p3:down"
    ]


def test_partition_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^direction: expected one of both, up, down, got 'in'"):
        partition_rules("p1", "10.77.0.22", "in", LINKS)
    with pytest.raises(ConfigError, match=r"^address: expected an IPv4 address, got 'stun'"):
        partition_rules("p1", "stun", "up", LINKS)
    with pytest.raises(ConfigError, match=r"^address: expected an IPv4 address string, got 7"):
        partition_rules("p1", 7, "up", LINKS)


def test_deleting_reverses_and_turns_appends_into_deletes():
    rules = partition_rules("p1", "10.77.0.22", "both", LINKS)
    deletes = deleting(rules)
    assert [r[2] for r in deletes] == ["-D", "-D"]
    assert deletes[0][3:] == rules[1][3:]
    with pytest.raises(ValueError, match="not an append rule"):
        deleting(hook_rules())


# ---- formats ----


def test_restore_script_groups_tables_and_replaces_chains():
    rules = nat_rules("port-restricted", LINKS, "10.77.0.21", HOST)
    script = restore_script(rules, replace_chains=NAT_CHAINS)
    assert script.startswith(
        "*filter\n:PEERLAB_INPUT - [0:0]\n:PEERLAB_OUTPUT - [0:0]\n:PEERLAB_FORWARD - [0:0]\n"
    )
    assert script.count("COMMIT\n") == 2
    assert (
        "*nat\n:PEERLAB_PREROUTING - [0:0]\n:PEERLAB_HAIRPIN_DNAT - [0:0]\n"
        ":PEERLAB_POSTROUTING - [0:0]\n:PEERLAB_HAIRPIN_SNAT - [0:0]\n"
        "-A PEERLAB_POSTROUTING -o eth0 -s 10.77.1.0/24 -j SNAT --to-source 10.77.0.21\nCOMMIT\n"
    ) in script
    with pytest.raises(ValueError, match="not a plain word"):
        restore_script([["-t", "filter", "-A", "X", "-m", "comment", "--comment", "a b"]])


# `iptables-save -c -t filter` in the router, with one partition that dropped 2 packets.
IPTABLES_SAVE = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 03:12:10 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PEERLAB_FORWARD - [0:0]
:PEERLAB_INPUT - [0:0]
:PEERLAB_PARTITIONS - [0:0]
[16:1499] -A INPUT -j PEERLAB_INPUT
[2:96] -A FORWARD -j PEERLAB_PARTITIONS
[0:0] -A FORWARD -j PEERLAB_FORWARD
[0:0] -A PEERLAB_FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
[0:0] -A PEERLAB_FORWARD -i eth1 -o eth0 -j ACCEPT
[0:0] -A PEERLAB_FORWARD -i eth0 -o eth1 -j DROP
[0:0] -A PEERLAB_INPUT -i eth0 -p udp -m conntrack --ctstate NEW -j DROP
[2:96] -A PEERLAB_PARTITIONS -d 10.250.0.11/32 -i eth1 -o eth0 -m comment --comment \
"peerlab-partition:p1:up" -j DROP
[0:0] -A PEERLAB_PARTITIONS -s 10.250.0.11/32 -i eth0 -o eth1 -m comment --comment \
"peerlab-partition:p1:down" -j DROP
COMMIT
# Completed on Thu Nov 26 03:12:10 2026
"""

# `ip -j -4 addr show` in the router (eth0: WAN with the spare added, eth1: LAN), shortened.
IP_ADDR_JSON = (
    '[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1",'
    '"prefixlen":8,"scope":"host","label":"lo"}]},'
    '{"ifindex":136,"ifname":"eth1","addr_info":[{"family":"inet","local":"10.250.1.254",'
    '"prefixlen":24,"broadcast":"10.250.1.255","scope":"global","label":"eth1"}]},'
    '{"ifindex":138,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.250.0.21",'
    '"prefixlen":24,"broadcast":"10.250.0.255","scope":"global","label":"eth0"},'
    '{"family":"inet","local":"10.250.0.71","prefixlen":24,"scope":"global",'
    '"secondary":true,"label":"eth0"}]}]'
)


def test_partition_counters_from_iptables_save():
    assert parse_partition_counters(IPTABLES_SAVE) == {"p1": {"up": 2, "down": 0}}


def test_links_found_by_address():
    addresses = parse_addresses(IP_ADDR_JSON)
    assert Address("eth0", "10.250.0.71", 24) in addresses
    lab = config(
        ROUTER_WAN_ADDRESS="10.250.0.21",
        ROUTER_LAN_ADDRESS="10.250.1.254",
        ROUTER_WAN_SPARE="10.250.0.71",
        ROUTER_LAN_HOSTS="10.250.1.10",
    )
    assert find_links(addresses, lab) == (Links("eth0", "eth1", "10.250.1.0/24"), 24)
    with pytest.raises(ConfigError) as error:
        find_links(addresses, config())
    assert str(error.value).startswith(
        "ROUTER_WAN_ADDRESS: 10.77.0.21 is on no interface of this router; it has: "
        "lo 127.0.0.1/8, eth1 10.250.1.254/24, eth0 10.250.0.21/24"
    )


# ---- NatRouter and the control API, with the tools recorded ----


class Tools:
    """Records every command; answers iptables-save like the router; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail: str | None = None

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        self.calls.append((list(argv), stdin))
        if self.fail and self.fail in argv[0]:
            raise NetfilterError(f"`{argv[0]}` failed (exit 1): told to fail")
        if argv[0] == "iptables-save":
            return IPTABLES_SAVE
        return ""

    def programs(self) -> list[str]:
        return [argv[0] for argv, _ in self.calls]


class StandInShaper:
    """The ShaperService interface of router/nfqueue.py, without queues."""

    def __init__(self) -> None:
        self._faults: dict[str, dict] = {"up": {}, "down": {}}

    def kernel_has_netem(self) -> bool:
        return False

    async def set_faults(self, direction: str, faults: dict) -> str:
        if "loss" in faults and not 0 <= faults["loss"] <= 1:
            raise ValueError(f"loss: expected a probability between 0 and 1, got {faults['loss']}")
        self._faults[direction] = faults
        return "nfqueue"

    async def clear_faults(self, direction: str) -> None:
        self._faults[direction] = {}

    def faults(self) -> dict:
        return self._faults

    def counters(self) -> dict:
        return {d: {"seen": 0, "dropped": 0} for d in ("up", "down")}


async def test_router_start_replaces_old_hooks_then_installs_everything():
    tools = Tools()
    router = NatRouter(Netfilter(tools), config(), LINKS)
    await router.start()
    (unhook, _), (restore, script) = tools.calls
    assert unhook == restore == ["iptables-restore", "--noflush"]
    assert script is not None
    assert all(f":{chain} - [0:0]" in script for chain in CHAINS)
    assert "-I FORWARD 1 -j PEERLAB_PARTITIONS" in script


async def test_router_validates_before_touching_iptables():
    tools = Tools()
    two_hosts = config(ROUTER_LAN_HOSTS="10.77.1.10,10.77.1.11")
    router = NatRouter(Netfilter(tools), two_hosts, LINKS)
    with pytest.raises(ConfigError, match=r"^type: full-cone .* got 2"):
        await router.set_nat("full-cone")
    with pytest.raises(ConfigError, match=r"^direction"):
        await router.add_partition("10.77.0.22", "sideways")
    assert tools.calls == []


async def test_nat_change_and_rebind_flush_conntrack():
    tools = Tools()
    router = NatRouter(Netfilter(tools), config(), LINKS)
    await router.set_nat("symmetric")
    assert tools.programs() == ["iptables-restore", "conntrack"]
    assert "--random-fully" in (tools.calls[0][1] or "")
    assert await router.rebind() == ("10.77.0.21", "10.77.0.71")
    assert "--to-source 10.77.0.71 --random-fully" in (tools.calls[2][1] or "")
    assert await router.rebind() == ("10.77.0.71", "10.77.0.21")
    assert router.nat == "symmetric"
    with pytest.raises(Conflict, match="ROUTER_WAN_SPARE"):
        await NatRouter(Netfilter(tools), config(ROUTER_WAN_SPARE=""), LINKS).rebind()


async def test_partitions_are_added_and_removed_by_id():
    tools = Tools()
    router = NatRouter(Netfilter(tools), config(), LINKS)
    first = await router.add_partition("10.77.0.22", "both")
    second = await router.add_partition("10.77.0.23", "up")
    assert (first.id, second.id) == ("p1", "p2")
    await router.remove_partition("p1")
    assert "-D PEERLAB_PARTITIONS -i eth0 -o eth1 -s 10.77.0.22" in (tools.calls[-1][1] or "")
    assert router.partitions() == [{"id": "p2", "address": "10.77.0.23", "direction": "up"}]
    with pytest.raises(UnknownPartition, match=r"^id: no partition 'p1'; there are: p2$"):
        await router.remove_partition("p1")


@pytest.fixture
async def api() -> AsyncIterator[tuple[aiohttp.ClientSession, str, Tools]]:
    tools = Tools()
    router = NatRouter(Netfilter(tools), config(), LINKS)
    server = ControlServer(config(), router, StandInShaper(), "127.0.0.1", 0)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{server.port}", tools
    with contextlib.suppress(Exception):
        await server.close()


async def call(session, method, url, body=None, status=200):
    async with session.request(method, url, json=body) as response:
        data = await response.json()
        assert response.status == status, data
        return data


async def test_api_health_and_state(api):
    session, url, _ = api
    assert await call(session, "GET", f"{url}/healthz") == {
        "status": "ok",
        "router": "lan1",
        "nat": "port-restricted",
        "hairpin": False,
        "wan": "10.77.0.21",
        "lan": "10.77.1.254",
        "shaper": "nfqueue",
        "kernel": {"netem": False},
    }
    state = await call(session, "GET", f"{url}/state")
    assert state["faults"] == {"up": {}, "down": {}}
    assert state["interfaces"] == {"wan": "eth0", "lan": "eth1"}


async def test_api_bad_requests_are_400_naming_the_field_and_the_router_keeps_serving(api):
    session, url, tools = api
    for method, path, body, expected in [
        ("PUT", "/nat", {"type": "cone"}, "type: expected one of"),
        ("PUT", "/nat", {"type": "full-cone"}, None),  # one LAN host: fine
        ("PUT", "/nat", {}, "missing field 'type'"),
        ("PUT", "/nat", {"tipe": "symmetric"}, "unknown field(s) tipe"),
        ("PUT", "/nat", {"hairpin": "yes"}, "hairpin: expected true or false"),
        ("PUT", "/nat", {"type": "udp-blocked", "hairpin": True}, "hairpin: a udp-blocked"),
        ("POST", "/partitions", {"address": "10.77.0.22", "direction": "in"}, "direction:"),
        ("POST", "/partitions", {"address": "x"}, "address: expected an IPv4 address"),
        ("POST", "/partitions", {"address": "10.77.0.22", "dir": "up"}, "unknown field(s) dir"),
        ("PUT", "/faults/up", {"loss": 2}, "loss: expected a probability"),
    ]:
        async with session.request(method, url + path, json=body) as response:
            data = await response.json()
        if expected is None:
            assert response.status == 200, data
        else:
            assert (response.status, expected in data["error"]) == (400, True), data
    async with session.put(f"{url}/nat", data="{not json") as response:
        assert response.status == 400
        assert "not JSON" in (await response.json())["error"]
    assert (await call(session, "GET", f"{url}/healthz"))["nat"] == "full-cone"
    # Only the valid NAT change reached the tools.
    assert tools.programs() == ["iptables-restore", "conntrack"]


async def test_api_unknown_things_are_404_and_a_missing_spare_is_409(api):
    session, url, _ = api
    error = await call(session, "PUT", f"{url}/faults/sideways", {}, status=404)
    assert error["error"].startswith("direction: expected up or down")
    await call(session, "DELETE", f"{url}/partitions/p7", status=404)
    await call(session, "GET", f"{url}/nothing", status=404)


async def test_api_faults_partitions_rebind_counters(api):
    session, url, _ = api
    assert await call(session, "PUT", f"{url}/faults/down", {"delay_ms": 50}) == {
        "direction": "down",
        "faults": {"delay_ms": 50},
        "backend": "nfqueue",
    }
    await call(session, "DELETE", f"{url}/faults/down")
    partition = await call(session, "POST", f"{url}/partitions", {"address": "10.250.0.11"})
    assert partition == {"id": "p1", "address": "10.250.0.11", "direction": "both"}
    counters = await call(session, "GET", f"{url}/counters")
    assert counters["partitions"]["p1"]["dropped"] == {"up": 2, "down": 0}
    assert counters["up"] == {"seen": 0, "dropped": 0}
    assert await call(session, "POST", f"{url}/rebind") == {
        "wan_before": "10.77.0.21",
        "wan_after": "10.77.0.71",
    }
    assert (await call(session, "GET", f"{url}/state"))["wan"] == "10.77.0.71"


async def test_api_tool_failure_is_500_with_the_command_and_nothing_changes(api):
    session, url, tools = api
    tools.fail = "iptables-restore"
    error = await call(session, "PUT", f"{url}/nat", {"type": "symmetric"}, status=500)
    assert "iptables-restore" in error["error"] and "told to fail" in error["error"]
    tools.fail = None
    assert (await call(session, "GET", f"{url}/healthz"))["nat"] == "port-restricted"
