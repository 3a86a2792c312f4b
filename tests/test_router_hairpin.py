"""Hairpinning without a kernel: conntrack's lines parsed (router/hairpin.py), the table of
mappings answering each flow with the rules to add or remove, the static rules nat.py
writes, and NatRouter following a stand-in event stream (router/netfilter.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from peerlab.router.config import ConfigError, from_env
from peerlab.router.hairpin import HAIRPIN_DNAT, HAIRPIN_SNAT, Flow, HairpinTable, parse_flow
from peerlab.router.nat import Links, nat_rules
from peerlab.router.netfilter import NatRouter, Netfilter

LAN = "10.77.1.0/24"
WAN = "10.77.0.21"
LINKS = Links(wan_if="eth0", lan_if="eth1", lan_network=LAN)
ENV = {
    "ROUTER_WAN_ADDRESS": WAN,
    "ROUTER_LAN_ADDRESS": "10.77.1.254",
    "ROUTER_WAN_SPARE": "10.77.0.71",
    "ROUTER_LAN_HOSTS": "10.77.1.10,10.77.1.11",
    "ROUTER_HAIRPIN": "on",
}


def line(event: str, src: str, sport: int, dst: str, dport: int, ext_port: int, flow_id: int):
    """A conntrack event line for a LAN flow translated to WAN:ext_port."""
    tag = f"[{event}] " if event != "LISTED" else ""
    return (
        f"    {tag}udp      17 30 src={src} dst={dst} sport={sport} dport={dport} [UNREPLIED] "
        f"src={dst} dst={WAN} sport={dport} dport={ext_port} id={flow_id}"
    )


def test_conntrack_lines_are_parsed_and_others_ignored():
    flow = parse_flow(line("NEW", "10.77.1.10", 5000, "10.77.0.11", 3478, 5000, 42))
    assert flow == Flow(
        "NEW", "42", "10.77.1.10", 5000, "10.77.0.11", 3478, "10.77.0.11", 3478, WAN, 5000
    )
    listed = parse_flow(line("LISTED", "10.77.1.10", 5000, "10.77.0.11", 3478, 5000, 42))
    assert listed is not None and listed.event == "LISTED"
    destroyed = (
        "[DESTROY] udp      17 28 src=172.17.0.2 dst=8.8.8.8 sport=54072 dport=53 [UNREPLIED] "
        "src=8.8.8.8 dst=172.17.0.2 sport=53 dport=54072 id=1414598519 [USERSPACE] portid=16 "
        "progname=conntrack"
    )
    assert parse_flow(destroyed) == Flow(
        "DESTROY", "1414598519", "172.17.0.2", 54072, "8.8.8.8", 53,
        "8.8.8.8", 53, "172.17.0.2", 54072,
    )  # fmt: skip
    for other in (
        "",
        "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.",
        " [UPDATE] udp 17 30 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 "
        "sport=2 dport=1 id=3",
        "[NEW] tcp 6 120 SYN_SENT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 id=4",
        "[NEW] udp 17 30 src=1.1.1.1 dst=2.2.2.2 sport=x dport=2 src=2.2.2.2 dst=1.1.1.1 "
        "sport=2 dport=1 id=5",
    ):
        assert parse_flow(other) is None, other


def flow(event, src, sport, ext_port, flow_id, dst="10.77.0.11", dport=3478):
    parsed = parse_flow(line(event, src, sport, dst, dport, ext_port, flow_id))
    assert parsed is not None
    return parsed


def test_a_mapping_gets_its_dnat_and_snat_and_loses_them_with_its_last_flow():
    table = HairpinTable("eth1", LAN, WAN, symmetric=False)
    assert table.on_flow(flow("NEW", "10.77.1.10", 5000, 40000, 1)) == [
        ["-t", "nat", "-A", HAIRPIN_DNAT, "-i", "eth1", "-d", WAN, "-p", "udp",
         "--dport", "40000", "-j", "DNAT", "--to-destination", "10.77.1.10:5000"],
        ["-t", "nat", "-I", HAIRPIN_SNAT, "1", "-o", "eth1", "-s", "10.77.1.10", "-p", "udp",
         "--sport", "5000", "-m", "conntrack", "--ctstate", "DNAT",
         "-j", "SNAT", "--to-source", f"{WAN}:40000"],
    ]  # fmt: skip
    # The same mapping towards another destination: nothing new; repeated event: ignored.
    assert table.on_flow(flow("NEW", "10.77.1.10", 5000, 40000, 2, dst="10.77.0.12")) == []
    assert table.on_flow(flow("NEW", "10.77.1.10", 5000, 40000, 2, dst="10.77.0.12")) == []
    assert table.on_flow(flow("DESTROY", "10.77.1.10", 5000, 40000, 1)) == []
    removed = table.on_flow(flow("DESTROY", "10.77.1.10", 5000, 40000, 2, dst="10.77.0.12"))
    assert [r[2] for r in removed] == ["-D", "-D"]
    assert [r[3] for r in removed] == [HAIRPIN_DNAT, HAIRPIN_SNAT]
    assert "1" not in removed[1][4:6]  # a delete names the rule, not a position
    assert table.mappings() == []
    assert table.on_flow(flow("DESTROY", "10.77.1.10", 5000, 40000, 9)) == []


def test_symmetric_mappings_get_dnat_only_and_unrelated_flows_are_ignored():
    table = HairpinTable("eth1", LAN, WAN, symmetric=True)
    first = table.on_flow(flow("NEW", "10.77.1.10", 5000, 40001, 1))
    second = table.on_flow(flow("NEW", "10.77.1.10", 5000, 40002, 2, dst="10.77.0.12"))
    assert [r[3] for r in first + second] == [HAIRPIN_DNAT, HAIRPIN_DNAT]
    assert {m.external_port for m in table.mappings()} == {40001, 40002}
    untranslated = Flow("NEW", "3", "10.77.1.10", 1, "10.77.1.11", 2,
                        "10.77.1.11", 2, "10.77.1.10", 1)  # fmt: skip
    from_outside = Flow("NEW", "4", "10.77.0.11", 3478, WAN, 9,
                        "10.77.1.10", 9, "10.77.0.11", 3478)  # fmt: skip
    assert table.on_flow(untranslated) == table.on_flow(from_outside) == []


def test_an_external_port_shared_by_two_hosts_keeps_its_first_owner():
    table = HairpinTable("eth1", LAN, WAN, symmetric=False)
    assert table.on_flow(flow("NEW", "10.77.1.10", 5000, 5000, 1)) != []
    assert table.on_flow(flow("NEW", "10.77.1.11", 5000, 5000, 2, dst="10.77.0.12")) == []
    assert table.on_flow(flow("DESTROY", "10.77.1.11", 5000, 5000, 2, dst="10.77.0.12")) == []
    assert [m.internal for m in table.mappings()] == ["10.77.1.10"]


def test_static_hairpin_rules_only_when_asked():
    def hairpin_chains(rules):
        return [r for r in rules if r[3] in (HAIRPIN_SNAT, "PEERLAB_OUTPUT")]

    assert hairpin_chains(nat_rules("port-restricted", LINKS, WAN, ())) == []
    redirects, fallback = hairpin_chains(nat_rules("port-restricted", LINKS, WAN, (), 0, True))
    assert redirects[3:] == ["PEERLAB_OUTPUT", "-o", "eth1", "-p", "icmp",
                             "--icmp-type", "redirect", "-j", "DROP"]  # fmt: skip
    assert fallback[2:] == ["-A", HAIRPIN_SNAT, "-o", "eth1", "-s", LAN, "-m", "conntrack",
                            "--ctstate", "DNAT", "-j", "SNAT", "--to-source", WAN]  # fmt: skip
    symmetric = nat_rules("symmetric", LINKS, WAN, (), hairpin=True)
    assert hairpin_chains(symmetric)[-1][-1] == "--random-fully"
    with pytest.raises(ConfigError, match=r"^hairpin: a udp-blocked router"):
        nat_rules("udp-blocked", LINKS, WAN, (), hairpin=True)


class EventTools(Netfilter):
    """Records applied rules; conntrack's events come from a queue the test fills, and a
    None in it ends the stream as a crashed `conntrack -E` would."""

    def __init__(self) -> None:
        super().__init__(self._run_tool)
        self.scripts: list[str] = []
        self.events: asyncio.Queue[str | None] = asyncio.Queue()
        self.listing: list[str] = []
        self.streams = 0

    async def _run_tool(self, argv: Sequence[str], stdin: str | None) -> str:
        if argv[0] == "iptables-restore":
            self.scripts.append(stdin or "")
        if argv[:2] == ["conntrack", "-L"]:
            return "\n".join(self.listing)
        return ""

    async def conntrack_events(self) -> AsyncIterator[str | None]:
        self.streams += 1
        yield None
        while (event := await self.events.get()) is not None:
            yield event


async def settle(tools: EventTools) -> None:
    for _ in range(50):
        if tools.events.empty():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


async def test_router_follows_conntrack_and_resyncs_after_the_stream_dies(monkeypatch):
    monkeypatch.setattr("peerlab.router.netfilter.WATCHER_RESTART_DELAY", 0.01)
    tools = EventTools()
    router = NatRouter(tools, from_env(ENV), LINKS)
    await router.start()
    await tools.events.put(line("NEW", "10.77.1.10", 5000, "10.77.0.11", 3478, 40000, 1))
    await settle(tools)
    assert f"-A {HAIRPIN_DNAT} -i eth1 -d {WAN} -p udp --dport 40000" in tools.scripts[-1]
    assert router.hairpin_state()["mappings"] == [
        {"internal": "10.77.1.10:5000", "external_port": 40000}
    ]
    # The stream dies; meanwhile 10.77.1.11 made a mapping: the restart lists it.
    tools.listing = [line("LISTED", "10.77.1.11", 6000, "10.77.0.11", 3478, 40001, 2)]
    await tools.events.put(None)
    await settle(tools)
    assert tools.streams == 2 and router.hairpin_errors == 1
    assert "--to-destination 10.77.1.11:6000" in tools.scripts[-1]
    assert f":{HAIRPIN_DNAT} - [0:0]" in tools.scripts[-1]
    assert [m["external_port"] for m in router.hairpin_state()["mappings"]] == [40001]
    # Off: the table is emptied with the chains and conntrack is no longer followed.
    await router.set_nat(hairpin=False)
    await asyncio.sleep(0.02)
    assert router.hairpin_state() == {"on": False, "mappings": [], "errors": 1}
    assert HAIRPIN_SNAT not in tools.scripts[-1].split("COMMIT")[0].split(":")[-1]
    await router.close()
