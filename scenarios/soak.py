"""`peerlab soak <scenario> --runs N`: run one scenario N times with seeds seed, seed+1, ...
and report how flaky it is (docs/replay.md).

    peerlab soak <scenario>|<file.py>|<file.yaml> [--runs N] [--profile P] [--seed S]
                 [--peers N] [--results DIR]

Each run is a `peerlab run` of its own (fresh stack, own results folder under one soak
folder, its bundle). The report: the pass rate with its 95 % Wilson score interval, the
durations' p50 and p95 (nearest rank), and every failing run's seed and replay command.
Exit status 0 if every run passed, 1 if any failed, 2 if the scenario or profile cannot
be used. The statistics (`wilson_interval`, `percentile`, `summary`) are pure.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peerlab.router.probe import percentile as nearest_rank
from peerlab.scenarios.bundle import replay_command
from peerlab.scenarios.runner import new_run_dir, run_scenario
from peerlab.scenarios.spec_files import SpecError

Z_95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95 % interval."""


@dataclass(frozen=True)
class RunResult:
    seed: int
    passed: bool
    seconds: float
    error: str = ""
    folder: Path | None = None


def wilson_interval(passed: int, runs: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate: unlike p ± z·√(p(1-p)/n) it stays
    within [0, 1] and is not zero-width at 0/n or n/n, which is where a soak usually is."""
    if runs == 0:
        return 0.0, 1.0
    p = passed / runs
    scale = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / scale
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1): the smallest value with at least a
    fraction q of all values at or below it."""
    value = nearest_rank(sorted(values), q * 100)
    assert value is not None, "no values"
    return value


def summary(results: Sequence[RunResult]) -> str:
    """The soak's report: pass rate and interval, durations, failing runs. Pure."""
    passed = sum(r.passed for r in results)
    low, high = wilson_interval(passed, len(results))
    seconds = [r.seconds for r in results]
    lines = [
        f"pass rate {passed}/{len(results)} = {100 * passed / len(results):.1f} % "
        f"(95 % CI {100 * low:.1f}–{100 * high:.1f} %, Wilson)",  # noqa: RUF001 (a range)
        f"duration p50 {percentile(seconds, 0.5):.1f}s, p95 {percentile(seconds, 0.95):.1f}s",
    ]
    failed = [r for r in results if not r.passed]
    if failed:
        lines.append(f"failing runs ({len(failed)}):")
    for r in failed:
        lines.append(f"  seed {r.seed}: {r.error.splitlines()[0] if r.error else 'failed'}")
        if r.folder is not None:
            lines.append(f"    {replay_command(r.folder)}")
    return "\n".join(lines)


def add_soak_parser(subparsers: argparse._SubParsersAction) -> None:
    soak = subparsers.add_parser(
        "soak", help="run one scenario N times with successive seeds: pass rate, durations"
    )
    soak.add_argument("scenario", help="a built-in scenario's name, or a .py or .yaml file")
    soak.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    soak.add_argument("--profile", help="one network profile: a shipped name or a file's path")
    soak.add_argument("--seed", type=int, default=1, help="the first run's seed (default 1)")
    soak.add_argument("--peers", type=int, help="number of peers (at least what the plan needs)")
    soak.add_argument("--results", type=Path, help="results root (default: ./results)")


def run_soak(args: argparse.Namespace) -> int:
    # Imported here: the CLI imports this module to add its parser.
    from peerlab.scenarios.cli import plan_cases

    try:
        if args.runs < 1:
            raise SpecError(f"--runs: expected at least 1, got {args.runs}")
        if args.scenario == "all":
            raise SpecError("soak runs one scenario: name it (or give its file)")
        cases = plan_cases(args)
        if len(cases) != 1:
            raise SpecError("soak runs one scenario under one profile: give one --profile")
    except SpecError as exc:
        print(f"peerlab soak: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_soak(args, *cases[0]))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the stack was torn down", file=sys.stderr)
        return 130
    print("\n" + summary(results))
    return 0 if all(r.passed for r in results) else 1


async def _soak(args: argparse.Namespace, scenario, profile) -> list[RunResult]:
    # SIGTERM tears the stack down like Ctrl-C, as in `peerlab run`.
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    soak_dir = new_run_dir(args.results)
    results = []
    for i in range(args.runs):
        seed = args.seed + i
        # A run folder per seed, named after the soak so that its Compose project (made
        # of the run folder's and the scenario's names) is unique to this soak too.
        run_dir = soak_dir / f"{soak_dir.name}-seed-{seed}"
        run_dir.mkdir()
        outcome = await run_scenario(
            scenario, run_dir, peers=args.peers, seed=seed, profile=profile
        )
        results.append(
            RunResult(seed, outcome.passed, outcome.seconds, outcome.error, outcome.folder)
        )
        passed = sum(r.passed for r in results)
        print(
            f"run {i + 1}/{args.runs} seed {seed}: {'pass' if outcome.passed else 'FAIL'} "
            f"({outcome.seconds:.1f}s); {passed}/{len(results)} passed so far"
            + (f"\n  {outcome.error.splitlines()[0]}" if outcome.error else ""),
            flush=True,
        )
    return results
