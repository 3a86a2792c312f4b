#!/usr/bin/env python3
"""Make Mahimahi link traces for the router's shaper (router/traces/, docs/shaper.md).

A trace has one line per 1500-byte delivery opportunity: the millisecond at which it
occurs, repeated for several opportunities in one millisecond; the link replays it in a
loop whose period is the last timestamp (always written, so the period is the duration).
A rate of R Mbit/s is R/12 opportunities per millisecond.

    scripts/make-trace.py constant --mbps 12 --duration-ms 1000 -o my.trace
    scripts/make-trace.py markov --rates 24,16,10,6,3 --step-ms 200 --stay 0.8 \\
        --duration-ms 10000 --seed 1 -o my.trace
    scripts/make-trace.py shipped            # rewrite router/traces/*.trace (reproducible)

`markov`: a Markov-modulated rate. The link holds one of `rates` (Mbit/s; 0 = outage) for
`step_ms`, then stays with probability `stay` or moves to a neighbouring rate in the list
(up or down with equal probability, reflected at the ends): a walk towards and away from
a cell tower. Seeded: the same arguments always make the same file.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

OPPORTUNITY_BITS = 1500 * 8
TRACE_DIR = Path(__file__).resolve().parent.parent / "router" / "traces"


def opportunities(rates_per_ms: list[float]) -> list[int]:
    """Timestamps (1-based ms) for a rate given per millisecond in opportunities/ms; the
    last millisecond is always included so that the loop period is the duration."""
    times: list[int] = []
    credit = 0.0
    for ms, rate in enumerate(rates_per_ms, start=1):
        credit += rate
        while credit >= 1:
            times.append(ms)
            credit -= 1
    if not times or times[-1] != len(rates_per_ms):
        times.append(len(rates_per_ms))
    return times


def per_ms(mbps: float) -> float:
    return mbps * 1e6 / OPPORTUNITY_BITS / 1000


def constant_trace(mbps: float, duration_ms: int) -> list[int]:
    return opportunities([per_ms(mbps)] * duration_ms)


def markov_trace(
    rates_mbps: list[float], duration_ms: int, step_ms: int, stay: float, seed: int
) -> list[int]:
    rng = random.Random(seed)
    state = 0
    schedule: list[float] = []
    while len(schedule) < duration_ms:
        schedule += [per_ms(rates_mbps[state])] * step_ms
        if len(rates_mbps) > 1 and rng.random() >= stay:
            step = rng.choice((-1, 1))
            if not 0 <= state + step < len(rates_mbps):
                step = -step
            state += step
    return opportunities(schedule[:duration_ms])


def render(times: list[int]) -> str:
    return "".join(f"{t}\n" for t in times)


# The shipped traces: name -> how it is made. Each loops in seconds and stays under 100 KB.
SHIPPED = {
    "constant-12mbps": lambda: constant_trace(12, 1000),
    # LTE on foot: 3-24 Mbit/s, a new rate about once a second (200 ms steps, stay 0.8).
    "cellular-lte-walk": lambda: markov_trace([24, 16, 10, 6, 3], 10_000, 200, 0.8, seed=1),
    # Poor 3G: 0.2-2 Mbit/s and outages (rate 0), a new rate about every 0.7 s.
    "cellular-3g-bursty": lambda: markov_trace([2, 1.2, 0.6, 0.2, 0], 10_000, 100, 0.85, seed=2),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    constant = commands.add_parser("constant", help="a constant rate")
    constant.add_argument("--mbps", type=float, required=True)
    markov = commands.add_parser("markov", help="a Markov-modulated rate")
    markov.add_argument("--rates", required=True, help="comma list of Mbit/s, 0 = outage")
    markov.add_argument("--step-ms", type=int, default=100)
    markov.add_argument("--stay", type=float, default=0.9)
    markov.add_argument("--seed", type=int, default=1)
    for sub in (constant, markov):
        sub.add_argument("--duration-ms", type=int, default=1000, help="the loop period")
        sub.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    shipped = commands.add_parser("shipped", help="rewrite the shipped traces")
    shipped.add_argument("--dir", type=Path, default=TRACE_DIR)
    args = parser.parse_args(argv)

    if args.command == "shipped":
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, make in SHIPPED.items():
            (args.dir / f"{name}.trace").write_text(render(make()))
        return 0
    if args.duration_ms < 1:
        parser.error(f"--duration-ms: expected >= 1, got {args.duration_ms}")
    if args.command == "constant":
        if args.mbps <= 0:
            parser.error(f"--mbps: expected > 0, got {args.mbps}")
        times = constant_trace(args.mbps, args.duration_ms)
    else:
        try:
            rates = [float(r) for r in args.rates.split(",")]
        except ValueError:
            parser.error(f"--rates: expected a comma list of numbers, got {args.rates!r}")
        if any(r < 0 for r in rates) or not any(rates):
            parser.error(f"--rates: expected rates >= 0, at least one > 0, got {args.rates!r}")
        if not 0 <= args.stay <= 1 or args.step_ms < 1:
            parser.error("--stay: expected 0..1; --step-ms: expected >= 1")
        times = markov_trace(rates, args.duration_ms, args.step_ms, args.stay, args.seed)
    text = render(times)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
