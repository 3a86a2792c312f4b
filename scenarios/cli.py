"""`peerlab`: run scenario plans against the containerized lab.

    peerlab list
    peerlab run <scenario>|<file.py>|<file.yaml>|all [--profile P[,P...]] [--peers N]
                [--seed N] [--junit PATH]
    peerlab matrix nat [--seed N] [--junit PATH]
    peerlab check <results folder> [--limit N] [--json]
    peerlab report <results folder>
    peerlab clean [--dry-run] [--run ID]
    peerlab replay <scenario results folder> [--results DIR]
    peerlab soak <scenario> [--runs N] [--profile P] [--seed S]
    peerlab images [--online|--offline]

A scenario is a built-in one by name, or a file anywhere: a Python plan module or a YAML
scenario (docs/scenarios.md). `--profile lan,4g` runs each scenario under each network
profile (docs/profiles.md): one JUnit test case per scenario x profile. Live progress
goes to stderr; a summary table ends the run. The exit status is 0 only if every scenario
passed, 2 when a scenario or profile cannot be used (nothing was started). Build the
images first (`peerlab images`, or `make images` in a checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from peerlab.scenarios import catalog, stack_slots
from peerlab.scenarios.bundle import replay_command
from peerlab.scenarios.check_run import add_check_parser, run_check
from peerlab.scenarios.cleanup import add_clean_parser, run_clean
from peerlab.scenarios.declarative import check_placement
from peerlab.scenarios.images import add_images_parser, run_images
from peerlab.scenarios.profiles import Profile, load_profile, shipped_profiles
from peerlab.scenarios.replay import add_replay_parser, run_replay
from peerlab.scenarios.report import add_report_parser, run_report
from peerlab.scenarios.runner import (
    Outcome,
    case_topology,
    new_run_dir,
    run_scenario,
    summary_table,
    write_junit,
)
from peerlab.scenarios.soak import add_soak_parser, run_soak
from peerlab.scenarios.spec_files import SpecError
from peerlab.scenarios.topology import parse_topology

BROKEN_AGENTS = {
    "no-acks": "peerlab.scenarios.broken_agent",
    "double-delivery": "peerlab.scenarios.broken_agent_double_delivery",
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def plan_cases(args: argparse.Namespace) -> list[tuple[catalog.Scenario, Profile | None]]:
    """Every (scenario, profile) to run, all loaded and checked before anything starts."""
    if args.command == "matrix":
        scenarios = [catalog.load("nat_matrix")]
    elif args.scenario == "all":
        scenarios = list(catalog.built_in().values())
    else:
        scenarios = [catalog.load(args.scenario)]
    names = [p.strip() for p in (getattr(args, "profile", None) or "").split(",") if p.strip()]
    cli_profiles = [load_profile(name) for name in names]
    cases: list[tuple[catalog.Scenario, Profile | None]] = []
    for scenario in scenarios:
        if cli_profiles:
            profiles: list[Profile | None] = list(cli_profiles)
        elif scenario.profile and scenario.spec:
            profiles = [load_profile(scenario.profile, scenario.spec.source.parent)]
        else:
            profiles = [None]
        for profile in profiles:
            if scenario.spec is not None:
                peers, topology = case_topology(scenario, profile)
                check_placement(scenario.spec, parse_topology(topology, peers))
            cases.append((scenario, profile))
    return cases


def longest_first(
    cases: list[tuple[catalog.Scenario, Profile | None]], peers: int | None
) -> list[int]:
    """The order to start cases in, as indices: longest first (`stack_weight`), ties in
    the listed order."""

    def weight(index: int) -> int:
        scenario = cases[index][0]
        names, topology = case_topology(*cases[index], peers)
        lans = parse_topology(topology, names).lans
        return stack_slots.stack_weight(len(names), len(lans), scenario.body_s)

    return sorted(range(len(cases)), key=lambda index: -weight(index))


async def _run(args: argparse.Namespace, cases: list) -> int:
    # SIGTERM (a CI job cancelled, `kill`) tears the stack down like Ctrl-C does: both
    # cancel the run, and the lab's cleanup is shielded from the cancellation.
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    run_dir = new_run_dir(args.results)
    env = {"PEERLAB_PEER_MODULE": BROKEN_AGENTS[args.broken_agent]} if args.broken_agent else None
    # Independent scenarios run side by side (each lab has its own project, networks and
    # address prefix); the summary keeps the order they were listed in.
    slots = asyncio.Semaphore(args.jobs)

    async def run_case(scenario: catalog.Scenario, profile: Profile | None) -> Outcome:
        async with slots:
            outcome = await run_scenario(
                scenario,
                run_dir,
                peers=args.peers,
                seed=args.seed,
                env=env,
                profile=profile,
            )
        _say_outcome(args, outcome)
        return outcome

    order = longest_first(cases, args.peers)
    started = await asyncio.gather(*(run_case(*cases[i]) for i in order))
    outcomes = [outcome for _, outcome in sorted(zip(order, started, strict=True))]
    junit = args.junit or run_dir / "junit.xml"
    write_junit(outcomes, junit)
    print("\n" + summary_table(outcomes))
    print(f"\nJUnit XML: {junit}")
    return 0 if all(o.passed for o in outcomes) else 1


def _say_outcome(args: argparse.Namespace, outcome: Outcome) -> None:
    if args.command == "matrix" and outcome.folder is not None:
        table = outcome.folder / "nat_matrix.md"
        print(table.read_text() if table.exists() else "(no table: the stack did not start)")
    print(
        f"{outcome.scenario}: {'pass' if outcome.passed else 'FAIL'} ({outcome.seconds:.1f}s)"
        + (
            f"\n  {outcome.error}\n  replay: {replay_command(outcome.folder)}"
            if not outcome.passed and outcome.folder
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="peerlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the scenarios")
    run = commands.add_parser("run", help="run one scenario, or all")
    run.add_argument("scenario", help="a built-in scenario's name, a .py or .yaml file, or all")
    run.add_argument(
        "--profile",
        help=f"network profile(s), comma-separated: shipped ({', '.join(shipped_profiles())}) "
        "or a path to a profile file",
    )
    run.add_argument("--peers", type=int, help="number of peers (at least what the plan needs)")
    run.add_argument(
        "--jobs",
        type=_positive,
        default=1,
        help="scenarios run side by side, each on a stack of its own (default 1)",
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
    matrix.set_defaults(peers=None, broken_agent=None, jobs=1)
    for command in (run, matrix):
        command.add_argument("--seed", type=int, default=1, help="seed of all randomness")
        command.add_argument("--junit", type=Path, help="where to write the JUnit XML report")
        command.add_argument("--results", type=Path, help="results root (default: ./results)")
    add_check_parser(commands)
    add_report_parser(commands)
    add_clean_parser(commands)
    add_replay_parser(commands)
    add_soak_parser(commands)
    add_images_parser(commands)
    args = parser.parse_args(argv)
    tools = {
        "check": run_check,
        "report": run_report,
        "clean": run_clean,
        "replay": run_replay,
        "soak": run_soak,
        "images": run_images,
    }
    if args.command in tools:
        sys.exit(tools[args.command](args))
    try:
        if args.command == "list":
            try:
                _list()
            except BrokenPipeError:
                # `peerlab list | head`: the reader has what it wanted. Quietly, also at
                # exit, when Python flushes stdout once more.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        cases = plan_cases(args)
        stack_slots.max_stacks()  # a bad PEERLAB_MAX_STACKS fails before anything starts
    except (SpecError, ValueError) as exc:
        print(f"peerlab: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(asyncio.run(_run(args, cases)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The loop and its handler are gone: one more SIGTERM now would kill the process
        # (status -15) although the stack is already torn down.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("interrupted: the stack was torn down", file=sys.stderr)
        sys.exit(130)


def _list() -> None:
    print("scenarios:")
    for name, scenario in catalog.built_in().items():
        print(f"  {name:<20} {scenario.kind:<6} {scenario.origin:<9} {scenario.description}")
    print("profiles (docs/profiles.md):")
    for name in shipped_profiles():
        print(f"  {name:<20} {' '.join(load_profile(name).description.split())}")


if __name__ == "__main__":
    main()
