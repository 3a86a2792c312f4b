"""`peerlab`: run scenario plans against the containerized lab.

    peerlab list
    peerlab run <scenario>|all [--peers N] [--seed N] [--keep] [--junit PATH]
    peerlab matrix nat [--seed N] [--junit PATH]

Live progress goes to stderr; a summary table ends the run. The exit status is 0 only if
every scenario passed. Build the images first (`make images`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from scenarios.plans import PLANS
from scenarios.runner import new_run_dir, run_scenario, summary_table, write_junit

BROKEN_AGENTS = {
    "no-acks": "scenarios.broken_agent",
    "double-delivery": "scenarios.broken_agent_double_delivery",
}


async def _run(args: argparse.Namespace) -> int:
    # SIGTERM (a CI job cancelled, `kill`) tears the stack down like Ctrl-C does: both
    # cancel the run, and the lab's cleanup is shielded from the cancellation.
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    if args.command == "matrix":
        names = ["nat_matrix"]
    else:
        names = list(PLANS) if args.scenario == "all" else [args.scenario]
    run_dir = new_run_dir(args.results)
    env = {"PEERLAB_PEER_MODULE": BROKEN_AGENTS[args.broken_agent]} if args.broken_agent else None
    outcomes = []
    for name in names:
        outcome = await run_scenario(
            name, run_dir, peers=args.peers, seed=args.seed, keep=args.keep, env=env
        )
        if args.command == "matrix" and outcome.folder is not None:
            table = outcome.folder / "nat_matrix.md"
            print(table.read_text() if table.exists() else "(no table: the stack did not start)")
        outcomes.append(outcome)
        print(
            f"{name}: {'pass' if outcome.passed else 'FAIL'} ({outcome.seconds:.1f}s)"
            + (f"\n  {outcome.error}" if not outcome.passed else ""),
            file=sys.stderr,
            flush=True,
        )
    junit = args.junit or run_dir / "junit.xml"
    write_junit(outcomes, junit)
    print("\n" + summary_table(outcomes))
    print(f"\nJUnit XML: {junit}")
    return 0 if all(o.passed for o in outcomes) else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="peerlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the scenarios")
    run = commands.add_parser("run", help="run one scenario, or all")
    run.add_argument("scenario", choices=[*PLANS, "all"])
    run.add_argument("--peers", type=int, help="number of peers (at least what the plan needs)")
    run.add_argument(
        "--keep", action="store_true", help="keep the results folder of passing scenarios too"
    )
    run.add_argument(
        "--broken-agent",
        choices=sorted(BROKEN_AGENTS),
        help="run a deliberately broken agent, to see the suite catch it",
    )
    matrix = commands.add_parser(
        "matrix",
        help="measure which NAT pairs connect, and how, next to the theory (markdown)",
    )
    matrix.add_argument("kind", choices=["nat"])
    matrix.set_defaults(peers=None, keep=True, broken_agent=None)
    for command in (run, matrix):
        command.add_argument("--seed", type=int, default=1, help="seed of all randomness")
        command.add_argument("--junit", type=Path, help="where to write the JUnit XML report")
        command.add_argument("--results", type=Path, help="results root (default: ./results)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, plan in PLANS.items():
            print(f"{name:<20} {' '.join(plan.__doc__.split())}")
        return
    try:
        sys.exit(asyncio.run(_run(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the stack was torn down", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
