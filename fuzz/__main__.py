"""Bounded, seeded fuzz campaigns against PeerLab's parsers (`make fuzz`; docs/fuzz.md).

Usage (from the repository root, with the project's virtual environment):

    python -m fuzz [--target all|decoder|signaling|control] [--seed N]
                   [--budget short|full] [--case N]

    --target  the campaign(s) to run, in this order: decoder (the data-channel decoder),
              signaling (the signaling server), control (an agent's control API); all
    --seed    the seed (default 1): the same seed gives the same inputs, case by case
    --budget  short (default): about 20 s for all three (part of `make test`);
              full: about three minutes (`make fuzz`); each campaign stops at its count
              of cases or at its time, whichever comes first
    --case    replay case N of the seed alone (needs one --target), printing its whole
              input and what the target did with it

Progress goes to stderr. Each campaign prints one final line, e.g.

    fuzz decoder seed=1 cases=30000 accepted=4544 rejected=25456 by code {...} findings=0

then each kind of finding once, with its input as a Python literal and the command that
replays it (`python -m fuzz --target decoder --seed 1 --case 1234`), and the other cases
of that kind. Exit status: 0 if no campaign found anything, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fuzz import control, decoder, signaling
from fuzz.campaign import BUDGETS, Budget, Report, summary

CAMPAIGNS: dict[str, Callable[[int, Budget, int | None], Report]] = {
    "decoder": decoder.run,
    "signaling": signaling.run,
    "control": control.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz", description="Bounded, seeded fuzz campaigns (docs/fuzz.md)."
    )
    parser.add_argument("--target", choices=["all", *CAMPAIGNS], default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", choices=list(BUDGETS), default="short")
    parser.add_argument("--case", type=int, metavar="N", help="replay case N alone")
    args = parser.parse_args(argv)
    if args.case is not None and args.target == "all":
        parser.error("--case replays one case of one campaign: give --target")
    if args.case is not None and args.case < 0:
        parser.error("--case must be at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    replaying = args.case is not None
    targets = list(CAMPAIGNS) if args.target == "all" else [args.target]
    found = 0
    for target in targets:
        report = CAMPAIGNS[target](args.seed, BUDGETS[args.budget][target], args.case)
        print(report.line(), flush=True)
        for line in report.trace + summary(report.findings, full=replaying):
            print(line, flush=True)
        found += len(report.findings)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
