"""Benchmark: PeerLab's messaging path against a raw aiortc data channel, same run.

    python -m bench.agent_vs_raw [--messages N] [--size BYTES] [--rtt-samples N]
                                 [--repeat K] [--profile DIR]

Each run starts two fresh processes (spawn), one per end, on loopback:
- raw: two RTCPeerConnections (no STUN), one ordered reliable data channel, the SDP
  crossing a pipe between the processes (bench/raw_end.py);
- agent: two `peer.agent.Agent`s that connect through a `SignalingServer` running in this
  process (bench/agent_end.py).
Both send the same body (`--size` bytes of text): round trips one at a time (raw:
ping-pong; agent: send → ack), then `--messages` messages one way with the same
`bufferedAmount` backpressure. Throughput is messages ÷ (last arrival at the receiver -
first send), both read from the host-wide monotonic clock. Connect time runs from the
moment both ends are up (their processes start at different times) to the open data
channel, each RTCPeerConnection made on the clock in both paths. Raw and agent runs
alternate `--repeat` times (the machines are noisy) and the summary takes medians. The
agent also runs with a durable store (`--store`, docs/store.md), reported in a second
table next to the agent in memory; the targets are the in-memory agent's.

Per message of the throughput phase, the summary gives each end's CPU time, the
data-channel frames it sent, and what it put on the wire (bench/wire.py): UDP datagrams,
i.e. SCTP packets, data or acknowledgement (SACK), one each since aiortc bundles no
chunks, and their bytes. A regression then shows where it comes from: more CPU at one
end, more frames (acks, no batching), or more or bigger packets.

The last line is machine-readable:
    agent_vs_raw throughput_ratio=<agent msgs/s ÷ raw> rtt_p50_ratio=<agent p50 ÷ raw p50>
`--profile DIR` also writes cProfile statistics of each end's throughput phase (and of the
agent sender's round trips) to DIR; profiling slows the ends, so its figures are not
comparable with unprofiled runs.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import agent_end, raw_end
from bench.processes import EndFailed, EndProcess, run_ends
from bench.workload import Workload, median, percentile
from peerlab.peer.store import parse_sync
from peerlab.signaling.server import ServerConfig, SignalingServer

THROUGHPUT_TARGET = 0.9
"""The agent should deliver at least this fraction of raw aiortc's messages per second."""
SENDER, RECEIVER = "sender", "receiver"
"""Peer ids of the two agents (each agent run has a room of its own)."""

MEMORY = "agent"
"""The agent without a store: the path the targets are measured on."""

RTT_TARGET = 1.5
"""The agent's send→ack p50 should be at most this multiple of raw ping-pong p50."""


@dataclass(frozen=True, slots=True)
class RunFigures:
    connect_ms: float
    msgs_per_s: float
    rtt_p50_ms: float
    rtt_p90_ms: float
    frame_bytes: int
    sender_cpu_us: float
    """CPU time of the sending process per message of the throughput phase."""
    receiver_cpu_us: float
    sender_frames: float
    """Data-channel frames the sending end put on the wire per message (throughput phase)."""
    receiver_frames: float
    """The same for the receiving end (acks; heartbeats on an idle moment)."""
    sender_packets: float | None
    """UDP datagrams the sending end sent per message (SCTP data packets and SACKs);
    None if aiortc's counters could not be read."""
    sender_wire_bytes: float | None
    """Their bytes per message."""
    receiver_packets: float | None
    """The same for the receiving end (its SACKs, and the packets of its acks)."""
    receiver_wire_bytes: float | None
    acked_msgs_per_s: float | None = None
    """Agent only: messages ÷ (last ack at the sender - first send)."""

    def describe(self) -> str:
        acked = (
            f", all acked at {self.acked_msgs_per_s:,.0f} msg/s"
            if self.acked_msgs_per_s is not None
            else ""
        )
        return (
            f"connect {self.connect_ms:.0f} ms, RTT p50 {self.rtt_p50_ms:.3f} ms "
            f"p90 {self.rtt_p90_ms:.3f} ms, {self.msgs_per_s:,.0f} msg/s delivered{acked}, "
            f"CPU/msg {self.sender_cpu_us:.0f} µs sender {self.receiver_cpu_us:.0f} µs receiver"
        )


def _print_progress(name: str, text: str) -> None:
    print(f"    {name}: {text}", flush=True)


def _timeout(workload: Workload) -> float:
    """Generous: a slow machine must not fail, but a hang must end."""
    return 60 + workload.messages / 200 + workload.round_trips / 50


def _figures(
    sender: dict[str, Any], receiver: dict[str, Any], arrival: float, workload: Workload
) -> RunFigures:
    rtts = sender["rtts"]
    acked = sender.get("last_acked")

    def per_message(counts: tuple[int, int] | None, index: int) -> float | None:
        return None if counts is None else counts[index] / workload.messages

    return RunFigures(
        connect_ms=sender["connect_s"] * 1000,
        msgs_per_s=workload.messages / (arrival - sender["first_sent"]),
        rtt_p50_ms=percentile(rtts, 0.5) * 1000,
        rtt_p90_ms=percentile(rtts, 0.9) * 1000,
        frame_bytes=sender["frame_bytes"],
        sender_cpu_us=sender["cpu_s"] / workload.messages * 1e6,
        receiver_cpu_us=receiver["cpu_s"] / workload.messages * 1e6,
        sender_frames=sender["frames"] / workload.messages,
        receiver_frames=receiver["frames"] / workload.messages,
        sender_packets=per_message(sender["wire"], 0),
        sender_wire_bytes=per_message(sender["wire"], 1),
        receiver_packets=per_message(receiver["wire"], 0),
        receiver_wire_bytes=per_message(receiver["wire"], 1),
        acked_msgs_per_s=(
            None if acked is None else workload.messages / (acked - sender["first_sent"])
        ),
    )


async def run_raw(workload: Workload, profile_dir: Path | None) -> RunFigures:
    sender_pipe, receiver_pipe = raw_end.pipe()
    common = {"profile_dir": profile_dir, "on_progress": _print_progress, "workload": workload}
    ends = [
        EndProcess("raw sender", raw_end.sender, peer=sender_pipe, **common),
        EndProcess("raw receiver", raw_end.receiver, peer=receiver_pipe, **common),
    ]
    sender_pipe.close()
    receiver_pipe.close()
    sender, receiver = await run_ends(ends, _timeout(workload))
    return _figures(sender, receiver, receiver["last_received"], workload)


async def run_agent(
    workload: Workload,
    url: str,
    secret: str,
    room: str,
    profile_dir: Path | None,
    store: str | None = None,
) -> RunFigures:
    with tempfile.TemporaryDirectory(prefix="peerlab-bench-") as folder:
        common = {
            "profile_dir": profile_dir,
            "on_progress": _print_progress,
            "workload": workload,
            "url": url,
            "room": room,
            "secret": secret,
            "store": store,
            "folder": folder,
        }
        ends = [
            EndProcess("agent sender", agent_end.sender, local=SENDER, remote=RECEIVER, **common),
            EndProcess(
                "agent receiver", agent_end.receiver, local=RECEIVER, remote=SENDER, **common
            ),
        ]
        sender, receiver = await run_ends(ends, _timeout(workload))
    if sender["retransmissions"] or receiver["duplicates"]:
        print(
            f"    agent: {sender['retransmissions']} retransmissions, "
            f"{receiver['duplicates']} duplicates received",
            flush=True,
        )
    return _figures(sender, receiver, receiver["last_delivered"], workload)


def _verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def print_table(raw: list[RunFigures], agent: list[RunFigures]) -> tuple[float, float]:
    """Print the medians over the runs; returns (throughput ratio, RTT p50 ratio)."""

    def mid(runs: list[RunFigures], name: str) -> float:
        return median([getattr(r, name) for r in runs])

    def mid_or_dash(runs: list[RunFigures], name: str, number: str) -> str:
        values = [getattr(r, name) for r in runs]
        return "-" if None in values else number.format(median(values))

    throughput_ratio = mid(agent, "msgs_per_s") / mid(raw, "msgs_per_s")
    rtt_ratio = mid(agent, "rtt_p50_ms") / mid(raw, "rtt_p50_ms")
    connect = (f"{mid(raw, 'connect_ms'):.0f}", f"{mid(agent, 'connect_ms'):.0f}")
    rows = [
        ("frame size (bytes)", f"{raw[0].frame_bytes}", f"{agent[0].frame_bytes}", "", ""),
        ("connect (ms)", *connect, "", ""),
        (
            "throughput (msg/s)",
            f"{mid(raw, 'msgs_per_s'):,.0f}",
            f"{mid(agent, 'msgs_per_s'):,.0f}",
            f"{throughput_ratio:.2f}",
            f"≥ {THROUGHPUT_TARGET:.2f} {_verdict(throughput_ratio >= THROUGHPUT_TARGET)}",
        ),
        ("  all acked (msg/s)", "-", f"{mid(agent, 'acked_msgs_per_s'):,.0f}", "", ""),
        (
            "RTT p50 (ms)",
            f"{mid(raw, 'rtt_p50_ms'):.3f}",
            f"{mid(agent, 'rtt_p50_ms'):.3f}",
            f"{rtt_ratio:.2f}",
            f"≤ {RTT_TARGET:.2f} {_verdict(rtt_ratio <= RTT_TARGET)}",
        ),
        (
            "RTT p90 (ms)",
            f"{mid(raw, 'rtt_p90_ms'):.3f}",
            f"{mid(agent, 'rtt_p90_ms'):.3f}",
            f"{mid(agent, 'rtt_p90_ms') / mid(raw, 'rtt_p90_ms'):.2f}",
            "",
        ),
    ]
    for side in ("sender", "receiver"):
        name = f"{side}_cpu_us"
        rows.append(
            (
                f"CPU/msg {side} (µs)",
                f"{mid(raw, name):.0f}",
                f"{mid(agent, name):.0f}",
                f"{mid(agent, name) / mid(raw, name):.2f}",
                "",
            )
        )
    for side in ("sender", "receiver"):
        name = f"{side}_frames"
        rows.append(
            (f"frames/msg {side}", f"{mid(raw, name):.2f}", f"{mid(agent, name):.2f}", "", "")
        )
    for label, name, number in (
        ("packets/msg", "packets", "{:.2f}"),
        ("wire B/msg", "wire_bytes", "{:.0f}"),
    ):
        for side in ("sender", "receiver"):
            cells = [mid_or_dash(runs, f"{side}_{name}", number) for runs in (raw, agent)]
            rows.append((f"{label} {side}", *cells, "", ""))
    header = ("median of runs", "raw aiortc", "PeerLab agent", "ratio", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        numbers = [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *numbers, row[4]]).rstrip())
    return throughput_ratio, rtt_ratio


def print_durability(durable: dict[str, list[RunFigures]]) -> None:
    """The agent with a durable store (docs/store.md) next to the agent in memory."""
    rows = [
        ("throughput (msg/s)", "msgs_per_s", "{:,.0f}"),
        ("RTT p50 (ms)", "rtt_p50_ms", "{:.3f}"),
        ("CPU/msg sender (µs)", "sender_cpu_us", "{:.0f}"),
        ("CPU/msg receiver (µs)", "receiver_cpu_us", "{:.0f}"),
    ]
    modes = list(durable)
    table = [("median of runs", *(f"store={m}" if m != MEMORY else "in memory" for m in modes))]
    for label, name, number in rows:
        memory = median([getattr(r, name) for r in durable[MEMORY]])
        cells = []
        for mode in modes:
            value = median([getattr(r, name) for r in durable[mode]])
            ratio = "" if mode == MEMORY else f" ({value / memory:.2f}x)"
            cells.append(number.format(value) + ratio)
        table.append((label, *cells))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for row in table:
        cells = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *cells]))


async def benchmark(args: argparse.Namespace) -> tuple[float, float]:
    workload = Workload(messages=args.messages, body_bytes=args.size, rtt_samples=args.rtt_samples)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(
        f"agent_vs_raw: {workload.messages} messages of a {workload.body_bytes}-byte body, "
        f"{workload.rtt_samples} round trips (after {workload.warmup} warm-up), "
        f"{args.repeat} alternating runs each",
        flush=True,
    )
    secret = secrets.token_hex(16)
    raw: list[RunFigures] = []
    agent: dict[str, list[RunFigures]] = {mode: [] for mode in (MEMORY, *args.store)}
    paths = ["raw", *agent]
    async with SignalingServer(ServerConfig(secret=secret, host="127.0.0.1", port=0)) as server:
        for index in range(args.repeat):
            # Rotate which path goes first, so a drift in machine load hits all alike.
            shift = index % len(paths)
            for path in paths[shift:] + paths[:shift]:
                name = path if path in ("raw", MEMORY) else f"agent store={path}"
                print(f"[{name} {index + 1}/{args.repeat}]", flush=True)
                if path == "raw":
                    figures = await run_raw(workload, args.profile)
                    raw.append(figures)
                else:
                    room = f"bench-{index}-{len(agent[path])}-{path}"
                    store = None if path == MEMORY else path
                    figures = await run_agent(
                        workload, server.url, secret, room, args.profile, store
                    )
                    agent[path].append(figures)
                print(f"  {name} {index + 1}/{args.repeat}: {figures.describe()}", flush=True)
    print()
    ratios = print_table(raw, agent[MEMORY])
    if args.store:
        print_durability(agent)
    return ratios


def _store_modes(text: str) -> list[str]:
    modes = [] if text == "none" else [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes:
        try:
            parse_sync(mode)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return modes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_vs_raw",
        description="Throughput and round trip of PeerLab's agent against raw aiortc.",
    )
    parser.add_argument("--messages", type=_positive, default=5_000, help="one-way messages")
    parser.add_argument("--size", type=_positive, default=200, help="message body bytes")
    parser.add_argument("--rtt-samples", type=_positive, default=2000, help="measured round trips")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs of each path")
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR", help="write cProfile stats to DIR"
    )
    parser.add_argument(
        "--store",
        type=_store_modes,
        default=_store_modes("always,10"),
        metavar="SYNC[,SYNC]",
        help="also run the agent with a durable store synced each way (docs/store.md: "
        "'always' or milliseconds; default always,10), next to the agent in memory; "
        "'none' for none",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        throughput_ratio, rtt_ratio = asyncio.run(benchmark(args))
    except EndFailed as failure:
        print(f"agent_vs_raw: {failure}", file=sys.stderr)
        return 1
    print(f"agent_vs_raw throughput_ratio={throughput_ratio:.2f} rtt_p50_ratio={rtt_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
