"""Scale benchmark: a full mesh of N agents through the real stack (`make bench-scale`).

    python -m bench.scale [--peers N] [--messages-per-link M] [--size BYTES]
                          [--send-concurrency C] [--connect-concurrency C]
                          [--store-sync always|MS|off] [--connect-timeout S]
                          [--deliver-timeout S] [--idle-s S] [--env NAME=VALUE]...
                          [--results DIR] [--keep] [--seed N] [--no-check]

It starts the lab (`Lab`: signaling server, coturn, Toxiproxy and N peer containers, a
Compose project of its own) and then:

1. connects every pair of agents (N*(N-1)/2 links), at most `--connect-concurrency`
   /connect requests at a time (default: all at once); `all_connected_s` runs from the
   first /connect request to the last link connected. Then it reads every agent's
   /state: every link must be `connected` at both ends, and the ICE candidate pairs
   of both ends are counted (`host→host`, `host→relay`, ...);
2. every agent sends `--messages-per-link` texts to every other (one conversation per
   direction, in order), at most `--send-concurrency` /send requests in flight across
   the whole mesh, so that the harness is not what limits the agents;
3. waits until every receiver has delivered and every sender has had acked what it
   sent (at most `--deliver-timeout` s after the first send), counting only what the
   receivers' event logs say they delivered (GET /events, incrementally), never what
   /send answered;
4. reads each agent's CPU time (its process's utime + stime, /proc/1/stat inside the
   container) before the first send and once everything is acked, and its resident set
   (VmRSS; VmHWM is the peak) at the end (bench/container_stats.py);
5. checks every direction with the delivery report (acked, delivered exactly once, in
   send order), tears the stack down, and runs the history checker over the run's event
   logs (skipped with `--no-check`).

Progress goes to stderr. The last line on stdout is:

    mesh peers=<N> links=<L> all_connected_s=<s> delivered=<d>/<sent> rss_mb_p50=<m>
    rss_mb_max=<m> cpu_s_per_1k_msgs=<c>

(one line): `delivered` counts distinct messages the receivers delivered, `sent` the
messages the agents accepted; `rss_mb_*` are MiB over the agents at the end;
`cpu_s_per_1k_msgs` is the agents' CPU seconds over the send phase (sending, receiving,
acking, and the heartbeats of every link meanwhile) per 1,000 messages delivered.

Exit status: 0 when everything sent was delivered exactly once, in order, and acked
(the targets — all connected in 60 s, 90 MiB per agent — are reported, not enforced);
1 otherwise, or when the mesh could not be built; 2 for bad options; 130 on Ctrl-C.
The stack is always torn down (Ctrl-C and SIGTERM included). The results folder
(`<results>/<timestamp>/scale-<N>/`: event logs, container logs, agents' states) is
removed after a successful run unless `--keep`.

`--store-sync` sets the agents' durable store (docs/store.md): `always` (the lab's
default, a commit with fsync per accepted message and per delivery), a number of ms
(batched commits), or `off` (no store: the agents keep everything in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.container_stats import (
    NEIGHBOUR_COMMAND,
    SAMPLE_COMMAND,
    NeighbourTable,
    Sample,
    StatsError,
    neighbours_needed,
    parse_neighbour_table,
    parse_sample,
    percentile,
)
from peerlab.peer.store import parse_sync
from peerlab.scenarios.agent_client import AgentError
from peerlab.scenarios.checks import delivery_report
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.runner import check_history, new_run_dir
from peerlab.scenarios.stack import INFRA_SERVICES, StackError

CONVERSATION = "mesh"
CONNECTED_TARGET_S = 60.0
RSS_TARGET_MIB = 90.0
PROGRESS_EVERY_S = 5.0
POLL_EVERY_S = 0.5


class BenchError(RuntimeError):
    """The mesh could not be built or measured; the message says what happened."""


@dataclass
class Figures:
    peers: int
    links: int
    all_connected_s: float = math.nan
    sent: int = 0
    """Messages the agents accepted: /send answers while sending, the senders' `sent`
    events once checked."""
    delivered: int = 0
    expected: int = 0
    send_failures: list[str] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    hwm_mib: list[float] = field(default_factory=list)
    cpu_s: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def rss_mib_p50(self) -> float:
        return percentile(self.rss_mib, 0.5) if self.rss_mib else math.nan

    @property
    def rss_mib_max(self) -> float:
        return max(self.rss_mib) if self.rss_mib else math.nan

    @property
    def cpu_s_per_1k(self) -> float:
        return self.cpu_s / (self.delivered / 1000) if self.delivered else math.nan

    def last_line(self) -> str:
        return (
            f"mesh peers={self.peers} links={self.links} "
            f"all_connected_s={self.all_connected_s:.1f} "
            f"delivered={self.delivered}/{self.sent} "
            f"rss_mb_p50={self.rss_mib_p50:.1f} rss_mb_max={self.rss_mib_max:.1f} "
            f"cpu_s_per_1k_msgs={self.cpu_s_per_1k:.2f}"
        )


def _pairs_label(pair: dict[str, Any] | None) -> str:
    if not pair:
        return "none"
    return f"{pair['local']['type']}→{pair['remote']['type']}"


def _endpoint(candidate: dict[str, Any]) -> tuple[str, int]:
    return candidate["address"], candidate["port"]


def tally_candidate_pairs(states: dict[str, dict[str, Any]]) -> tuple[Counter, int, list[str]]:
    """From every agent's /state: the nominated pair kinds over all link ends, how many
    ends use the same pair as the other end, and the links not connected at both ends."""
    kinds: Counter = Counter()
    agreeing = 0
    down = []
    for a, state in states.items():
        for b, link in state["links"].items():
            there = states.get(b, {}).get("links", {}).get(a)
            far = (there or {}).get("state", "unknown")
            if a < b and (link["state"] != "connected" or far != "connected"):
                down.append(f"{a}↔{b}: {link['state']} / {far}")
            pair, other = link.get("candidate_pair"), (there or {}).get("candidate_pair")
            kinds[_pairs_label(pair)] += 1
            if pair and other:
                agreeing += (_endpoint(pair["local"]), _endpoint(pair["remote"])) == (
                    _endpoint(other["remote"]),
                    _endpoint(other["local"]),
                )
    return kinds, agreeing, down


async def _sample(lab: Lab, services: Sequence[str]) -> dict[str, Sample]:
    async def one(service: str) -> Sample:
        try:
            text = await lab.containers.exec(service, SAMPLE_COMMAND)
        except StackError as exc:
            raise StatsError(f"{service}: cannot read its figures: {exc}") from None
        return parse_sample(service, text)

    samples = await asyncio.gather(*(one(s) for s in services))
    return {s.service: s for s in samples}


async def neighbour_table(lab: Lab) -> NeighbourTable:
    try:
        return parse_neighbour_table(await lab.containers.exec(lab.peers[0], NEIGHBOUR_COMMAND))
    except StackError as exc:
        raise StatsError(f"cannot read the kernel's neighbour table: {exc}") from None


def _check_agents(samples: dict[str, Sample], module: str) -> None:
    for name, sample in samples.items():
        if f"-m {module}" not in sample.command:
            raise StatsError(
                f"{name}: PID 1 runs `{sample.command.strip()}`, not the agent (`python -m "
                f"{module}`): its CPU and memory figures would be another process's"
            )


def _machine_busy_s() -> float:
    """CPU seconds this machine spent busy since boot (/proc/stat; NaN elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    except (OSError, ValueError):
        return math.nan
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _harness_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class Ticker:
    """Calls `say()` every PROGRESS_EVERY_S while the block runs."""

    def __init__(self, say: Callable[[], None]):
        self._say = say
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Ticker:
        async def tick() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                self._say()

        self._task = asyncio.create_task(tick())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs with at most `limit` at a time (0: all at once); their results or
    exceptions, in order."""
    gate = asyncio.Semaphore(limit or len(jobs) or 1)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)


async def connect_mesh(lab: Lab, args: argparse.Namespace, figures: Figures) -> None:
    """Connect every pair; `all_connected_s` from the first /connect request to the
    moment the last link end reported `connected` (its agent's `state` event: the
    containers share the host's clock)."""
    links = list(itertools.combinations(lab.peers, 2))
    connected: list[tuple[str, str]] = []
    first_request: list[float] = []

    async def connect(a: str, b: str) -> None:
        first_request.append(time.time())
        await lab.agents[a].connect(b, timeout=args.connect_timeout)
        # The answering end reports its own `connected` a moment later.
        await lab.agents[b].wait_state(a, "connected", timeout=args.connect_timeout)
        connected.append((a, b))
        lab.counters.links.add((a, b))

    def say() -> None:
        lab.progress(f"links connected at both ends: {len(connected)}/{len(links)}")

    lab.progress(
        f"connecting {len(links)} links "
        f"({args.connect_concurrency or 'all'} /connect requests at a time)"
    )
    async with Ticker(say):
        results = await _bounded(
            args.connect_concurrency, [lambda a=a, b=b: connect(a, b) for a, b in links]
        )
    failed = [
        f"{a}↔{b}: {result}"
        for (a, b), result in zip(links, results, strict=True)
        if isinstance(result, Exception)
    ]
    if failed:
        raise BenchError(
            f"{len(failed)} of {len(links)} links did not connect: " + "; ".join(failed[:5])
        )
    logs = await asyncio.gather(*(lab.agents[p].events(0, kind="state") for p in lab.peers))
    last_connected: dict[tuple[str, str], float] = {}
    for peer, events in zip(lab.peers, logs, strict=True):
        for event in events:
            if event.get("new") == "connected":
                last_connected[peer, event["peer"]] = event["t_wall"]
    missing = [(a, b) for a, b in links if (a, b) not in last_connected]
    missing += [(b, a) for a, b in links if (b, a) not in last_connected]
    if missing:
        raise BenchError(f"no `connected` event at {missing[0][0]} for {missing[0][1]}")
    figures.all_connected_s = max(last_connected.values()) - min(first_request)
    lab.progress(f"all {len(links)} links connected in {figures.all_connected_s:.1f}s")
    answers = await asyncio.gather(*(lab.agents[p].state() for p in lab.peers))
    states = dict(zip(lab.peers, answers, strict=True))
    kinds, agreeing, down = tally_candidate_pairs(states)
    if down:
        lab.progress(f"links not connected at both ends just after: {'; '.join(down[:5])}")
    lab.progress(
        "candidate pairs over both ends of every link: "
        + ", ".join(f"{k} {v}" for k, v in kinds.most_common())
        + f"; both ends on the same pair: {agreeing}/{2 * len(links)}"
    )


class DeliveryWatch:
    """Counts, incrementally, what the receivers delivered and the senders had acked in
    the bench's conversation (GET /events?kind=...&since=...), per sender → receiver."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.delivered: dict[tuple[str, str], set[str]] = {}
        self.acked: dict[tuple[str, str], set[str]] = {}
        self.last_delivery_wall = 0.0
        self._since = {(p, k): 0 for p in lab.peers for k in ("delivered", "acked")}

    def count(self, what: str) -> int:
        return sum(len(ids) for ids in getattr(self, what).values())

    async def poll(self) -> None:
        await asyncio.gather(
            *(self._poll(p, kind) for p in self.lab.peers for kind in ("delivered", "acked"))
        )

    async def _poll(self, peer: str, kind: str) -> None:
        since = self._since[peer, kind]
        events = await self.lab.agents[peer].events(
            since, kind=kind, **{"message.conversation": CONVERSATION}
        )
        for event in events:
            other = event["peer"]
            if kind == "delivered":
                self.delivered.setdefault((other, peer), set()).add(event["message"]["id"])
                self.last_delivery_wall = max(self.last_delivery_wall, event["t_wall"])
            else:
                self.acked.setdefault((peer, other), set()).add(event["message"]["id"])
            since = max(since, event["seq"])
        self._since[peer, kind] = since


async def send_mesh(lab: Lab, args: argparse.Namespace, figures: Figures) -> dict[str, Any]:
    directions = list(itertools.permutations(lab.peers, 2))
    figures.expected = len(directions) * args.messages_per_link
    latencies: list[float] = []
    watch = DeliveryWatch(lab)
    sends_done = asyncio.Event()

    async def send(a: str, b: str, i: int) -> None:
        head = f"{a}→{b} #{i} "
        body = head + "x" * max(0, args.size - len(head.encode()))
        started = time.monotonic()
        try:
            message = await lab.send(a, b, "text", conversation=CONVERSATION, body=body)
        except AgentError as exc:
            figures.send_failures.append(str(exc))
            return
        latencies.append(time.monotonic() - started)
        if message is not None:
            figures.sent += 1

    gate = asyncio.Semaphore(args.send_concurrency)

    async def direction(a: str, b: str) -> None:
        # One conversation per direction, sent in order: one message at a time.
        for i in range(args.messages_per_link):
            async with gate:
                await send(a, b, i)

    def say() -> None:
        lab.progress(
            f"sent {figures.sent}/{figures.expected}, delivered {watch.count('delivered')}, "
            f"acked {watch.count('acked')}"
            + (f", {len(figures.send_failures)} sends failed" if figures.send_failures else "")
        )

    agents = list(lab.peers)
    before = await _sample(lab, [*agents, *INFRA_SERVICES])
    _check_agents({a: before[a] for a in agents}, args.peer_module)
    if args.idle_s:
        # What the connected mesh costs doing nothing: heartbeats, ICE consent checks.
        lab.progress(f"idle for {args.idle_s:g}s: what the connected mesh costs by itself")
        await asyncio.sleep(args.idle_s)
        idle = before
        before = await _sample(lab, [*agents, *INFRA_SERVICES])
        spent = sum(before[a].cpu_s - idle[a].cpu_s for a in agents)
        seconds = before[agents[0]].taken - idle[agents[0]].taken
        lab.progress(
            f"idle mesh: the agents used {spent / seconds:.2f} CPU-s per second "
            f"({1e6 * spent / seconds / len(directions):.0f} µs per second per link end)"
        )
    lab.progress(
        f"sending {args.messages_per_link} texts of {args.size} bytes along each of "
        f"{len(directions)} directions ({args.send_concurrency} /send requests at a time)"
    )
    machine_before, harness_before = _machine_busy_s(), _harness_cpu_s()
    first_send_wall = time.time()
    started = time.monotonic()
    deadline = started + args.deliver_timeout

    async def all_sends() -> None:
        await asyncio.gather(*(direction(a, b) for a, b in directions))
        sends_done.set()

    async with Ticker(say):
        sender = asyncio.create_task(all_sends())
        try:
            while True:
                await asyncio.sleep(POLL_EVERY_S)
                await watch.poll()
                complete = (
                    sends_done.is_set()
                    and watch.count("delivered") >= figures.sent
                    and watch.count("acked") >= figures.sent
                )
                if complete or time.monotonic() > deadline:
                    break
        finally:
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    after = await _sample(lab, [*agents, *INFRA_SERVICES])
    elapsed = time.monotonic() - started
    machine_busy = _machine_busy_s() - machine_before
    harness = _harness_cpu_s() - harness_before
    figures.cpu_s = sum(after[a].cpu_s - before[a].cpu_s for a in agents)
    figures.rss_mib = [after[a].rss_mib for a in agents]
    figures.hwm_mib = [after[a].hwm_mib for a in agents]
    delivered_in = watch.last_delivery_wall - first_send_wall if watch.last_delivery_wall else 0
    say()
    lab.progress(
        f"send phase {elapsed:.1f}s; last delivery {delivered_in:.1f}s after the first send"
        + (
            f" ({figures.sent / delivered_in:,.0f} msg/s)"
            if delivered_in > 0 and figures.sent
            else ""
        )
    )
    if latencies:
        lab.progress(
            f"/send as the harness saw it: p50 {1000 * percentile(latencies, 0.5):.0f} ms, "
            f"p99 {1000 * percentile(latencies, 0.99):.0f} ms, max {1000 * max(latencies):.0f} ms"
        )
    infra = ", ".join(
        f"{s} {after[s].cgroup_cpu_s - before[s].cgroup_cpu_s:.1f}s"
        for s in INFRA_SERVICES
        if after[s].cgroup_cpu_s is not None and before[s].cgroup_cpu_s is not None
    )
    lab.progress(
        f"CPU over the send phase: agents {figures.cpu_s:.1f}s in all "
        f"(p50 {percentile([after[a].cpu_s - before[a].cpu_s for a in agents], 0.5):.2f}s "
        f"per agent)" + (f"; infrastructure (whole containers): {infra}" if infra else "")
    )
    if not math.isnan(machine_busy):
        lab.progress(
            f"this machine over the send phase: {machine_busy:.0f} of "
            f"{elapsed * (os.cpu_count() or 1):.0f} CPU-s busy ({os.cpu_count()} CPUs; the agents, "
            f"the harness ({harness:.1f}s), Docker, and anything else running)"
        )
    dropped_before = sum(before[a].udp_dropped for a in agents)
    lab.progress(
        f"UDP datagrams dropped on receipt in the agents' containers (InErrors): "
        f"{dropped_before} until the first send, "
        f"{sum(after[a].udp_dropped for a in agents) - dropped_before} during the send phase"
    )
    lab.progress(
        f"agents resident: p50 {figures.rss_mib_p50:.1f} MiB, "
        f"max {figures.rss_mib_max:.1f} MiB; peak (VmHWM) max {max(figures.hwm_mib):.1f} MiB; "
        f"of it the agent's own memory (RssAnon, the rest is shared files mapped): p50 "
        f"{percentile([after[a].anon_mib for a in agents], 0.5):.1f} MiB"
    )
    return {"directions": directions, "watch": watch}


async def verify(lab: Lab, directions: Sequence[tuple[str, str]], figures: Figures) -> None:
    """The delivery report of every direction, from both ends' whole event logs."""
    logs = await asyncio.gather(*(lab.agents[p].events() for p in lab.peers))
    events = dict(zip(lab.peers, logs, strict=True))
    delivered = accepted = 0
    for a, b in directions:
        report = delivery_report(events[a], events[b], a, b)
        accepted += len(report.sent)
        delivered += len(report.sent) - len(report.undelivered)
        figures.problems += report.problems(limit=3)
    if accepted != figures.sent:
        # A /send cut short at the deadline may still have been accepted: the senders'
        # `sent` events are what counts.
        lab.progress(f"the senders accepted {accepted} messages, /send answered {figures.sent}")
    figures.sent, figures.delivered = accepted, delivered
    if figures.problems:
        lab.progress(f"delivery problems: {len(figures.problems)} (first: {figures.problems[0]})")
    else:
        lab.progress(
            f"{delivered} messages over {len(directions)} directions: all acked, "
            "delivered exactly once, in order"
        )


async def run(args: argparse.Namespace) -> tuple[Figures, Path]:
    run_dir = new_run_dir(args.results) / f"scale-{args.peers}"
    env = dict(args.env)
    if args.store_sync != "off":
        env["STORE_SYNC"] = args.store_sync
    lab = Lab.open("scale", run_dir, peers=args.peers, seed=args.seed, env=env)
    if args.store_sync == "off":
        # compose.yaml gives every peer a store; an empty STORE means none (docs/store.md).
        override = run_dir / "compose.nostore.yaml"
        override.write_text(
            "services:\n" + "".join(f"  {p}:\n    environment: {{STORE: ''}}\n" for p in lab.peers)
        )
        lab.stack.files.append(override)
    figures = Figures(peers=args.peers, links=args.peers * (args.peers - 1) // 2)
    started = time.time()
    async with lab:
        table = await neighbour_table(lab)
        need = neighbours_needed(args.peers)
        lab.progress(
            f"kernel neighbour (ARP) table, one for the whole host: {table.entries} entries, "
            f"limit {table.thresh3} (eviction above {table.thresh2}); this mesh needs ≈{need}"
        )
        if need > table.thresh3:
            lab.progress(
                f"WARNING: {need} > {table.thresh3}: the table will overflow, packets to "
                "peers whose address cannot be resolved are dropped, and ICE falls back to "
                "TURN relays. Raise the limit on the Docker host first: sysctl -w "
                f"net.ipv4.neigh.default.gc_thresh3={4 * need} "
                f"net.ipv4.neigh.default.gc_thresh2={2 * need} "
                f"net.ipv4.neigh.default.gc_thresh1={need}"
            )
        await connect_mesh(lab, args, figures)
        sent = await send_mesh(lab, args, figures)
        after = await neighbour_table(lab)
        lab.progress(
            f"kernel neighbour table during the run: full {after.table_fulls - table.table_fulls} "
            f"times, forced evictions {after.forced_gc_runs - table.forced_gc_runs}; "
            f"{after.entries} entries now"
        )
        await verify(lab, sent["directions"], figures)
        last = sent["watch"].last_delivery_wall
        if last:
            lab.progress(f"bench start to last delivery: {last - started:.1f}s")
    if not args.no_check:
        verdict = check_history(run_dir, lab.progress)
        if verdict is not None and verdict.valid is False:
            figures.problems.append(f"history checker: {verdict.render(limit=3).splitlines()[0]}")
    return figures, run_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="A full mesh of N agents through the real stack: connect every pair, "
        "every agent sends to every other, measure connect time, delivery, memory and CPU.",
    )

    def at_least(minimum: int) -> Callable[[str], int]:
        def parse(text: str) -> int:
            value = int(text)
            if value < minimum:
                raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
            return value

        return parse

    def seconds(text: str) -> float:
        value = float(text)
        if not 0 < value <= 600:
            raise argparse.ArgumentTypeError(f"must be in (0, 600] seconds, not {text}")
        return value

    def idle_seconds(text: str) -> float:
        value = float(text)
        if not 0 <= value <= 600:
            raise argparse.ArgumentTypeError(f"must be in [0, 600] seconds, not {text}")
        return value

    def env_setting(text: str) -> tuple[str, str]:
        name, equals, value = text.partition("=")
        if not equals or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
        if name == "STORE_SYNC":
            raise argparse.ArgumentTypeError("use --store-sync for STORE_SYNC")
        return name, value

    def store_sync(text: str) -> str:
        if text != "off":
            try:
                parse_sync(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"{exc}, or 'off'") from None
        return text

    parser.add_argument("--peers", type=at_least(2), default=16, help="agents (default 16)")
    parser.add_argument(
        "--messages-per-link",
        type=at_least(1),
        default=10,
        help="texts each agent sends each other agent (default 10)",
    )
    parser.add_argument("--size", type=at_least(1), default=64, help="body bytes (default 64)")
    parser.add_argument(
        "--send-concurrency",
        type=at_least(1),
        default=64,
        help="/send requests in flight across the mesh (default 64)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=at_least(0),
        default=0,
        help="/connect requests in flight (default 0: every link at once)",
    )
    parser.add_argument(
        "--store-sync",
        type=store_sync,
        default="always",
        help="the agents' store: always (the lab's default), milliseconds, or off",
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds,
        default=120.0,
        help="seconds one link may take to connect (default 120)",
    )
    parser.add_argument(
        "--deliver-timeout",
        type=seconds,
        default=300.0,
        help="seconds from the first send until everything must be delivered and acked "
        "(default 300)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        type=env_setting,
        help="a lab setting for this run (docs/stack.md), e.g. HEARTBEAT_INTERVAL=2; repeatable",
    )
    parser.add_argument(
        "--idle-s",
        type=idle_seconds,
        default=10.0,
        help="seconds to measure the connected mesh idle before sending (default 10; 0: skip)",
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="results root (default results/)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the results folder")
    parser.add_argument("--seed", type=int, default=1, help="seed of the lab's randomness")
    parser.add_argument("--no-check", action="store_true", help="skip the history checker")
    args = parser.parse_args(argv)
    args.peer_module = os.environ.get("PEERLAB_PEER_MODULE") or "peerlab.peer"
    return args


def _targets(figures: Figures) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return (
        f"targets: all connected ≤ {CONNECTED_TARGET_S:g} s "
        f"{verdict(figures.all_connected_s <= CONNECTED_TARGET_S)}; everything delivered "
        f"{verdict(figures.delivered == figures.sent == figures.expected)}; "
        f"≤ {RSS_TARGET_MIB:g} MiB per agent {verdict(figures.rss_mib_max <= RSS_TARGET_MIB)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures, run_dir = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted: the stack was torn down", file=sys.stderr)
        return 130
    except (BenchError, StatsError, StackError, AgentError, AssertionError) as exc:
        print(f"bench.scale: {exc}", file=sys.stderr)
        return 1
    for failure in figures.send_failures[:5]:
        print(f"send failed: {failure}", file=sys.stderr)
    for problem in figures.problems[:10]:
        print(f"problem: {problem}", file=sys.stderr)
    ok = (
        not figures.problems
        and not figures.send_failures
        and figures.delivered == figures.sent == figures.expected
    )
    if ok and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()  # the run's timestamp folder, when nothing else is in it
    else:
        print(f"results: {run_dir}", file=sys.stderr)
    print(_targets(figures), file=sys.stderr)
    print(figures.last_line(), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
