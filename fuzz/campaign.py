"""What every campaign shares: budgets, per-case randomness, findings, reports and progress.

A campaign runs cases 0, 1, 2, ... of a seed until its budget's count or time runs out.
Case N's input depends only on (target, seed, N) (`case_rng`), never on earlier cases, so
a time-bounded run is a prefix of the same sequence and any case can be replayed alone.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

LITERAL_SHOWN = 2_000
"""Characters of an input literal printed with a finding; `--case` prints all of it."""

CASES_LISTED = 10
"""Further cases listed for one kind of finding (a broken target finds thousands)."""


@dataclass(frozen=True)
class Budget:
    """At most `cases` cases and about `seconds` of fuzzing (whichever comes first)."""

    cases: int
    seconds: float


BUDGETS = {
    # Counts that finish within the time on an ordinary machine, so that a short run
    # does the same cases every time; a full run is bounded by its time.
    "short": {
        "decoder": Budget(30_000, 10.0),
        "signaling": Budget(8_000, 10.0),
        "control": Budget(4_000, 10.0),
    },
    "full": {
        "decoder": Budget(400_000, 60.0),
        "signaling": Budget(100_000, 60.0),
        "control": Budget(60_000, 60.0),
    },
}


def case_rng(target: str, seed: int, case: int) -> random.Random:
    # A string seed is hashed (SHA-512) by random.Random: stable across runs and platforms.
    return random.Random(f"{target}:{seed}:{case}")


@dataclass(frozen=True)
class Finding:
    target: str
    seed: int
    case: int
    problem: str
    literal: str
    """The input, as a Python literal."""

    def describe(self, full: bool = False) -> str:
        literal = self.literal
        if not full and len(literal) > LITERAL_SHOWN:
            literal = (
                f"{literal[:LITERAL_SHOWN]}... ({len(literal) - LITERAL_SHOWN} more characters;"
                " the replay prints all of it)"
            )
        return (
            f"FINDING {self.target} seed={self.seed} case={self.case}: {self.problem}\n"
            f"  input: {literal}\n"
            f"  replay: python -m fuzz --target {self.target} --seed {self.seed} "
            f"--case {self.case}"
        )


@dataclass
class Report:
    """What one campaign did: the cases it ran, what they came to, and its findings."""

    target: str
    seed: int
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    """Target-specific figures for the final line, e.g. `accepted=12`."""
    trace: list[str] = field(default_factory=list)
    """What a replayed case did (`--case`), for the reader."""

    def find(self, case: int, problem: str, literal: str) -> None:
        self.findings.append(Finding(self.target, self.seed, case, problem, literal))

    def line(self) -> str:
        parts = [f"fuzz {self.target} seed={self.seed} cases={self.cases}"]
        parts += self.details
        parts.append(f"findings={len(self.findings)}")
        return " ".join(parts)


def summary(findings: list[Finding], full: bool = False) -> list[str]:
    """Each kind of finding once, with its reproducer, and the other cases of that kind.

    The kind is the problem with its numbers blanked (positions, sizes, timestamps)."""
    kinds: dict[str, list[Finding]] = {}
    for finding in findings:
        kinds.setdefault(re.sub(r"\d+", "N", finding.problem)[:100], []).append(finding)
    lines = []
    for same in kinds.values():
        lines.append(same[0].describe(full))
        if len(same) > 1:
            listed = ", ".join(str(f.case) for f in same[1 : 1 + CASES_LISTED])
            more = "" if len(same) <= 1 + CASES_LISTED else ", ..."
            lines.append(f"  and {len(same) - 1} more like it: cases {listed}{more}")
    return lines


def counts(counter: Counter[str] | Counter[int]) -> str:
    """A stable rendering of a counter: `{a: 1, b: 2}`, sorted by key."""
    return "{" + ", ".join(f"{key}: {counter[key]}" for key in sorted(counter)) + "}"


class Cases:
    """The case indices to run: all of `budget` from 0, or the one case being replayed.

    Iterating stops at the count or when the time budget is spent; it prints a progress
    line about every `every` seconds.
    """

    def __init__(
        self, report: Report, budget: Budget, only: int | None = None, every: float = 2.0
    ) -> None:
        self._report = report
        self._budget = budget
        self._only = only
        self._every = every
        self.started = time.monotonic()

    def __iter__(self) -> Iterator[int]:
        if self._only is not None:
            yield self._only
            return
        last_print = self.started
        for case in range(self._budget.cases):
            now = time.monotonic()
            if now - self.started >= self._budget.seconds:
                return
            if now - last_print >= self._every:
                last_print = now
                self.progress(case)
            yield case

    def progress(self, done: int) -> None:
        report = self._report
        print(
            f"  {report.target}: {done}/{self._budget.cases} cases, "
            f"{len(report.findings)} findings, {time.monotonic() - self.started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
