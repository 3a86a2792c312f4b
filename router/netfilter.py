"""The router's netfilter state and the tools that change it.

`Netfilter` runs the tools: iptables-restore (rule lists from router/nat.py, applied
atomically per call), iptables-save (partition counters), conntrack (flush, list, events),
ip (addresses). `NatRouter` owns what the router has installed — NAT type, SNAT address,
partitions, hairpin translations — and changes it only with rules nat.py or hairpin.py
have built and validated, so a bad request never reaches iptables. With hairpinning on,
it follows `conntrack -E` and feeds every UDP flow to the hairpin table. The text
formats (restore script, counters, addresses) are parsed and written by the pure
functions at the top, which the unit tests cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peerlab.router.config import ConfigError, RouterConfig, check_hairpin, check_nat_type
from peerlab.router.hairpin import Flow, HairpinTable, parse_flow
from peerlab.router.nat import (
    CHAINS,
    NAT_CHAINS,
    PARTITION_COMMENT_PREFIX,
    Links,
    Rule,
    check_partition,
    deleting,
    hook_rules,
    nat_rules,
    partition_rules,
    unhook_rules,
)

Runner = Callable[[Sequence[str], str | None], Awaitable[str]]

log = logging.getLogger(__name__)

# conntrack's netlink receive buffer for events: a burst of new flows (ICE checks) must
# not overrun it (ENOBUFS loses events; the watcher then resyncs from a listing).
CONNTRACK_EVENT_BUFFER = 4 * 1024 * 1024
CONNTRACK_EVENTS = ["conntrack", "-E", "-p", "udp", "-e", "NEW,DESTROY", "-o", "id",
                    "-b", str(CONNTRACK_EVENT_BUFFER)]  # fmt: skip
WATCHER_RESTART_DELAY = 0.5


class NetfilterError(RuntimeError):
    """A tool failed; the message has the command line and its stderr."""


class Conflict(RuntimeError):
    """The request cannot be done in the router's current state (HTTP 409)."""


class UnknownPartition(LookupError):
    """No partition has that id (HTTP 404)."""


# ---- pure: formats ----


def restore_script(rules: Iterable[Rule], replace_chains: Iterable[str] = ()) -> str:
    """iptables-restore input (for --noflush) that empties (creating if needed) each chain of
    `replace_chains`, then applies `rules`, one table block per table, in one call."""
    blocks: dict[str, list[str]] = {}
    for chain in replace_chains:
        blocks.setdefault(CHAINS[chain][0], []).append(f":{chain} - [0:0]")
    for rule in rules:
        if len(rule) < 3 or rule[0] != "-t":
            raise ValueError(f"rule must start with -t TABLE: {rule}")
        for arg in rule:
            # iptables-restore has no shell quoting to speak of: keep every word plain.
            if not arg or any(c.isspace() or c in "\"'#" for c in arg):
                raise ValueError(f"rule argument {arg!r} is not a plain word: {rule}")
        blocks.setdefault(rule[1], []).append(" ".join(rule[2:]))
    return "".join(
        f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
        for table, lines in blocks.items()
    )


_SAVE_LINE = re.compile(r'^\[(\d+):(\d+)\] -A \S+ .*--comment "?([^"\s]+)"?')


def parse_partition_counters(save_output: str) -> dict[str, dict[str, int]]:
    """{partition id: {"up"|"down": packets dropped}} from `iptables-save -c -t filter`."""
    counters: dict[str, dict[str, int]] = {}
    for line in save_output.splitlines():
        match = _SAVE_LINE.match(line)
        if not match:
            continue
        prefix, _, rest = match.group(3).partition(":")
        if prefix != PARTITION_COMMENT_PREFIX:
            continue
        partition_id, _, direction = rest.partition(":")
        counters.setdefault(partition_id, {})[direction] = int(match.group(1))
    return counters


@dataclass(frozen=True)
class Address:
    interface: str
    address: str
    prefixlen: int


def parse_addresses(ip_json: str) -> list[Address]:
    """The IPv4 addresses of `ip -j -4 addr show`."""
    return [
        Address(link["ifname"], info["local"], int(info["prefixlen"]))
        for link in json.loads(ip_json)
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def find_links(addresses: list[Address], config: RouterConfig) -> tuple[Links, int]:
    """The router's Links (which interface holds the WAN and LAN addresses) and the WAN
    prefix length; ConfigError naming the setting when an address is on no interface."""
    by_address = {a.address: a for a in addresses}
    seen = ", ".join(f"{a.interface} {a.address}/{a.prefixlen}" for a in addresses) or "none"
    found = {}
    for setting, address in (
        ("ROUTER_WAN_ADDRESS", config.wan_address),
        ("ROUTER_LAN_ADDRESS", config.lan_address),
    ):
        if address not in by_address:
            raise ConfigError(
                f"{setting}: {address} is on no interface of this router; it has: {seen}"
            )
        found[setting] = by_address[address]
    wan, lan = found["ROUTER_WAN_ADDRESS"], found["ROUTER_LAN_ADDRESS"]
    if wan.interface == lan.interface:
        raise ConfigError(
            f"ROUTER_LAN_ADDRESS: {lan.address} is on {lan.interface} like the WAN address "
            f"{wan.address}; the router needs the LAN and the WAN on two interfaces"
        )
    network = ipaddress.IPv4Interface(f"{lan.address}/{lan.prefixlen}").network
    return Links(wan.interface, lan.interface, str(network)), wan.prefixlen


# ---- I/O ----


async def run_command(argv: Sequence[str], stdin: str | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        if "not permitted" in detail or "Permission denied" in detail:
            detail += " (the router's container needs cap_add NET_ADMIN and NET_RAW)"
        shown = f" <<< {stdin.strip()!r}" if stdin else ""
        raise NetfilterError(
            f"`{shlex.join(argv)}`{shown} failed (exit {process.returncode}): {detail}"
        )
    return out.decode(errors="replace")


class Netfilter:
    """The system tools, through `runner` (a fake one in the unit tests)."""

    def __init__(self, runner: Runner = run_command):
        self._run = runner

    async def apply(self, rules: Iterable[Rule], replace_chains: Iterable[str] = ()) -> None:
        script = restore_script(rules, replace_chains)
        await self._run(["iptables-restore", "--noflush"], script)

    async def partition_counters(self) -> dict[str, dict[str, int]]:
        return parse_partition_counters(
            await self._run(["iptables-save", "-c", "-t", "filter"], None)
        )

    async def flush_conntrack(self) -> None:
        await self._run(["conntrack", "-F"], None)

    async def udp_flows(self) -> list[Flow]:
        listing = await self._run(["conntrack", "-L", "-p", "udp", "-o", "id"], None)
        return [flow for line in listing.splitlines() if (flow := parse_flow(line))]

    async def conntrack_events(self) -> AsyncIterator[str | None]:
        """Runs `conntrack -E` for new and destroyed UDP flows: yields None once it has
        started, then each line it prints; NetfilterError (with its stderr) when it exits."""
        process = await asyncio.create_subprocess_exec(
            *CONNTRACK_EVENTS,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            yield None
            while line := await process.stdout.readline():
                yield line.decode(errors="replace")
            err = (await process.stderr.read()).decode(errors="replace").strip()
            raise NetfilterError(
                f"`{shlex.join(CONNTRACK_EVENTS)}` exited ({await process.wait()}): {err}"
            )
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def addresses(self) -> list[Address]:
        return parse_addresses(await self._run(["ip", "-j", "-4", "addr", "show"], None))

    async def add_address(self, interface: str, address: str, prefixlen: int) -> None:
        await self._run(["ip", "addr", "add", f"{address}/{prefixlen}", "dev", interface], None)


@dataclass
class Partition:
    id: str
    address: str
    direction: str
    rules: list[Rule] = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "address": self.address, "direction": self.direction}


class NatRouter:
    """The NAT, partitions and WAN address the router has installed."""

    def __init__(self, netfilter: Netfilter, config: RouterConfig, links: Links):
        self._netfilter = netfilter
        self._config = config
        self.links = links
        self.nat = config.nat
        self.hairpin = config.hairpin
        self.wan = config.wan_address
        self._hairpin_table = self._new_hairpin_table()
        self._watcher: asyncio.Task[None] | None = None
        self.hairpin_errors = 0
        # Bumped by every NAT change: names a fresh `recent` list (nat.recent_list_name).
        self._generation = 0
        self._partitions: dict[str, Partition] = {}
        self._next_partition = 1
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Creates the chains, fills them for the configured NAT type, hooks them in."""
        rules = self._nat_rules(self.nat, self.wan, self._generation)
        async with self._lock:
            # A router restarted in the same network namespace finds its old jumps: take
            # them out first (failing, as a whole, when there are none).
            with contextlib.suppress(NetfilterError):
                await self._netfilter.apply(unhook_rules())
            await self._netfilter.apply([*rules, *hook_rules()], replace_chains=CHAINS)
        self._follow_conntrack()

    async def set_nat(self, nat: object = None, hairpin: object = None) -> None:
        """Switch to NAT type `nat` and/or hairpinning on or off (None: unchanged; each
        validated first, errors naming "type" or "hairpin") and forget every mapping
        (conntrack flush)."""
        nat = check_nat_type(self.nat if nat is None else nat, self._config.lan_hosts, "type")
        hairpin = check_hairpin(self.hairpin if hairpin is None else hairpin, nat, "hairpin")
        async with self._lock:
            await self._replace(nat, self.wan, hairpin)
        self._follow_conntrack()

    async def rebind(self) -> tuple[str, str]:
        """SNAT to the other WAN address (primary <-> spare) and forget every mapping."""
        spare = self._config.wan_spare
        if spare is None:
            raise Conflict("rebind: no spare WAN address configured (ROUTER_WAN_SPARE)")
        async with self._lock:
            before = self.wan
            after = spare if before == self._config.wan_address else self._config.wan_address
            await self._replace(self.nat, after, self.hairpin)
            return before, after

    async def add_partition(self, address: object, direction: object) -> Partition:
        address, direction = check_partition(address, direction)
        async with self._lock:
            partition_id = f"p{self._next_partition}"
            rules = partition_rules(partition_id, address, direction, self.links)
            await self._netfilter.apply(rules)
            self._next_partition += 1
            partition = Partition(partition_id, address, direction, rules)
            self._partitions[partition_id] = partition
            return partition

    async def remove_partition(self, partition_id: str) -> Partition:
        async with self._lock:
            partition = self._partitions.get(partition_id)
            if partition is None:
                known = ", ".join(self._partitions) or "none"
                raise UnknownPartition(f"id: no partition {partition_id!r}; there are: {known}")
            await self._netfilter.apply(deleting(partition.rules))
            del self._partitions[partition_id]
            return partition

    def partitions(self) -> list[dict[str, str]]:
        return [p.to_json() for p in self._partitions.values()]

    async def partition_counters(self) -> dict[str, dict[str, Any]]:
        """Per partition: its address, direction and packets dropped per direction."""
        counted = await self._netfilter.partition_counters()
        return {
            pid: {**p.to_json(), "dropped": counted.get(pid, {})}
            for pid, p in self._partitions.items()
        }

    def hairpin_state(self) -> dict[str, Any]:
        """Whether hairpinning is on, the mappings it translates, failed rule updates."""
        return {
            "on": self.hairpin,
            "mappings": [
                {"internal": f"{m.internal}:{m.internal_port}", "external_port": m.external_port}
                for m in self._hairpin_table.mappings()
            ],
            "errors": self.hairpin_errors,
        }

    async def close(self) -> None:
        """Removes every rule and chain of the router."""
        await self._stop_following()
        async with self._lock:
            flush = [["-t", table, "-F", chain] for chain, (table, _, _) in CHAINS.items()]
            delete = [["-t", table, "-X", chain] for chain, (table, _, _) in CHAINS.items()]
            await self._netfilter.apply([*unhook_rules(), *flush, *delete])
            self._partitions.clear()

    def _nat_rules(
        self, nat: str, snat_address: str, generation: int, hairpin: bool | None = None
    ) -> list[Rule]:
        hairpin = self.hairpin if hairpin is None else hairpin
        return nat_rules(nat, self.links, snat_address, self._config.lan_hosts, generation, hairpin)

    def _new_hairpin_table(self) -> HairpinTable:
        return HairpinTable(
            self.links.lan_if, self.links.lan_network, self.wan, self.nat == "symmetric"
        )

    async def _replace(self, nat: str, snat_address: str, hairpin: bool) -> None:
        generation = self._generation + 1
        rules = self._nat_rules(nat, snat_address, generation, hairpin)
        await self._netfilter.apply(rules, replace_chains=NAT_CHAINS)
        self.nat, self.wan, self._generation, self.hairpin = nat, snat_address, generation, hairpin
        # The hairpin chains were emptied with the others.
        self._hairpin_table = self._new_hairpin_table()
        # Existing mappings would keep the old translation: a NAT change or a rebind
        # starts from no mapping at all, as a rebooted or re-addressed NAT would.
        await self._netfilter.flush_conntrack()

    # ---- hairpinning: following conntrack ----

    def _follow_conntrack(self) -> None:
        """Start following conntrack when hairpinning is on, stop when it is off."""
        if self.hairpin and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_conntrack())
        elif not self.hairpin and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _stop_following(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_conntrack(self) -> None:
        restarted = False
        while True:
            try:
                async for line in self._netfilter.conntrack_events():
                    if line is None:
                        if restarted:
                            # Flows came and went while no one was listening.
                            await self._resync_hairpin()
                        continue
                    flow = parse_flow(line)
                    if flow is not None:
                        await self._on_flow(flow)
            except (NetfilterError, OSError) as exc:
                reason = str(exc)
            else:
                reason = "its output ended"
            self.hairpin_errors += 1
            log.warning("hairpin: following conntrack failed, restarting: %s", reason)
            restarted = True
            await asyncio.sleep(WATCHER_RESTART_DELAY)

    async def _on_flow(self, flow: Flow) -> None:
        async with self._lock:
            rules = self._hairpin_table.on_flow(flow)
            if not rules:
                return
            try:
                await self._netfilter.apply(rules)
            except NetfilterError as exc:
                # The table and the chains now disagree: rebuild both from conntrack.
                self.hairpin_errors += 1
                log.warning("hairpin: %s; resyncing", exc)
                await self._resync_hairpin(locked=True)

    async def _resync_hairpin(self, locked: bool = False) -> None:
        """Rebuild the hairpin table and chains from conntrack's current UDP flows."""
        async with contextlib.AsyncExitStack() as stack:
            if not locked:
                await stack.enter_async_context(self._lock)
            table = self._new_hairpin_table()
            flows = await self._netfilter.udp_flows()
            rules = [rule for flow in flows for rule in table.on_flow(flow)]
            static = self._nat_rules(self.nat, self.wan, self._generation)
            await self._netfilter.apply([*static, *rules], replace_chains=NAT_CHAINS)
            self._hairpin_table = table
