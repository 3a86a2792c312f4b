"""What a lab container's processes cost, read from inside the container (bench/scale.py).

One `docker exec` per container and sample runs a short `sh` script that prints the
main process's `/proc/1/stat` (CPU time in clock ticks), its `VmRSS`/`VmHWM` (resident
now, and the most it ever was) and its command line, plus the container's cgroup CPU
counter (cgroup v1 `cpuacct.usage`, or v2 `cpu.stat`). Reading from inside works the
same on any Docker host (no host paths), and the few `sh`/`cat` processes it starts are
not charged to the agent's own figures. Parsing is pure (`parse_sample`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

SAMPLE_SCRIPT = (
    'echo "stat $(cat /proc/1/stat)"; '
    'grep -E "^(VmRSS|VmHWM|RssAnon):" /proc/1/status; '
    'echo "cmdline $(tr "\\0" " " </proc/1/cmdline)"; '
    'echo "clk_tck $(getconf CLK_TCK 2>/dev/null || echo 100)"; '
    'grep "^Udp:" /proc/net/snmp | tail -1; '
    "if [ -r /sys/fs/cgroup/cpu.stat ]; then "
    'sed -n "s/^usage_usec /cgroup_usec /p" /sys/fs/cgroup/cpu.stat; fi; '
    "if [ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then "
    'echo "cgroup_ns $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage)"; fi'
)
SAMPLE_COMMAND = ["sh", "-c", SAMPLE_SCRIPT]


class StatsError(RuntimeError):
    """A container's figures could not be read."""


@dataclass(frozen=True, slots=True)
class Sample:
    service: str
    taken: float
    """time.monotonic() when the answer arrived."""
    command: str
    """PID 1's command line."""
    cpu_s: float
    """PID 1's user + system CPU time, seconds."""
    rss_kib: int
    """PID 1's resident set now."""
    hwm_kib: int
    """The most PID 1 was ever resident (high-water mark)."""
    anon_kib: int
    """Of `rss_kib`, the process's own memory (heap, stacks); the rest is files mapped
    (the interpreter, shared libraries), whose pages the containers share."""
    cgroup_cpu_s: float | None
    """Every process of the container, seconds (None: no readable cgroup counter)."""
    udp_dropped: int = 0
    """UDP datagrams the container's network namespace dropped on receipt since it
    started: `InErrors` of /proc/net/snmp (receive buffer full, bad checksum...)."""

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024

    @property
    def anon_mib(self) -> float:
        return self.anon_kib / 1024


def parse_sample(service: str, text: str, taken: float | None = None) -> Sample:
    """The figures of one container from what SAMPLE_SCRIPT printed there."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if match := re.match(r"(\S+?):?\s+(.*)", line.strip()):
            fields[match.group(1)] = match.group(2).strip()
    try:
        stat = fields["stat"]
        # The command name (2nd field) is in parentheses and may hold spaces: split after it.
        after = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(after[11]), int(after[12])  # fields 14 and 15 of proc(5)
        ticks = int(fields["clk_tck"])
        rss = int(re.match(r"(\d+)\s*kB", fields["VmRSS"]).group(1))
        hwm = int(re.match(r"(\d+)\s*kB", fields["VmHWM"]).group(1))
        anon = int(re.match(r"(\d+)\s*kB", fields["RssAnon"]).group(1))
    except (KeyError, ValueError, IndexError, AttributeError):
        raise StatsError(
            f"{service}: unexpected answer from the sampling script: {text[:300]!r}"
        ) from None
    # "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors ...": the values line.
    udp = fields.get("Udp", "").split()
    dropped = int(udp[2]) if len(udp) > 2 and udp[2].isdigit() else 0
    if "cgroup_usec" in fields:
        cgroup: float | None = int(fields["cgroup_usec"]) / 1e6
    elif "cgroup_ns" in fields:
        cgroup = int(fields["cgroup_ns"]) / 1e9
    else:
        cgroup = None
    return Sample(
        service=service,
        taken=time.monotonic() if taken is None else taken,
        command=fields.get("cmdline", ""),
        cpu_s=(utime + stime) / ticks,
        rss_kib=rss,
        hwm_kib=hwm,
        anon_kib=anon,
        cgroup_cpu_s=cgroup,
        udp_dropped=dropped,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p50 of an even count: the lower middle)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least 1
    return ordered[int(rank) - 1]


NEIGHBOUR_COMMAND = ["ip", "-s", "ntable", "show", "name", "arp_cache"]
"""The kernel's IPv4 neighbour (ARP) table: one table for the whole host, every network
namespace's entries in it, so its limits and counters read the same in any container."""


@dataclass(frozen=True, slots=True)
class NeighbourTable:
    thresh2: int
    """Above this many entries the kernel evicts entries at least 5 s old."""
    thresh3: int
    """The most entries the table holds; beyond it no new neighbour is resolved."""
    entries: int
    table_fulls: int
    """How often an entry could not be made because the table was full (since boot)."""
    forced_gc_runs: int


def parse_neighbour_table(text: str) -> NeighbourTable:
    """The first (table-wide) block of `ip -s ntable show name arp_cache`."""
    block = text.split("\n\n")[0]

    def number(name: str) -> int:
        match = re.search(rf"\b{name} (\d+)", block)
        if match is None:
            raise StatsError(f"no {name!r} in the neighbour table's statistics: {block[:300]!r}")
        return int(match.group(1))

    return NeighbourTable(
        thresh2=number("thresh2"),
        thresh3=number("thresh3"),
        entries=number("entries"),
        table_fulls=number("table_fulls"),
        forced_gc_runs=number("forced_gc_runs"),
    )


def neighbours_needed(peers: int) -> int:
    """Neighbour entries a full mesh of `peers` agents on the lab's one bridge needs, at
    least: each agent resolves the other agents, coturn's two addresses, Toxiproxy and
    the bridge's gateway (the control API's connections come from it); coturn resolves
    every agent and Toxiproxy; Toxiproxy every agent, the signaling server and coturn;
    the signaling server Toxiproxy; the host every agent and Toxiproxy."""
    return peers * (peers + 3) + (peers + 1) + (peers + 2) + 1 + (peers + 1)
