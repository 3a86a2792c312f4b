"""Runs scenario plans against fresh stacks and records the outcome (results folder, JUnit).

Each scenario gets its own results folder `results/<run id>/<scenario>/` holding every
agent's event log (`events/`), every container's log (`logs/`), the agents' final
states and Toxiproxy's state. A passing scenario's folder is removed unless `keep`; a
failing one is kept and its path printed. One JUnit XML file describes the whole run.
"""

from __future__ import annotations

import shutil
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scenarios.lab import Lab
from scenarios.plans import PLANS
from scenarios.stack import REPO_ROOT


@dataclass
class Outcome:
    scenario: str
    passed: bool
    seconds: float
    peers: int
    sent: int
    acked: int
    links: int
    error: str = ""
    details: str = ""
    folder: Path | None = None


async def run_scenario(
    name: str,
    run_dir: Path,
    *,
    peers: int | None = None,
    seed: int = 1,
    keep: bool = False,
    env: dict[str, str] | None = None,
) -> Outcome:
    plan = PLANS[name]
    peers = max(peers or plan.PEERS, plan.PEERS)
    folder = run_dir / name
    started = time.monotonic()
    # A plan's own agent settings (ENV), under the caller's.
    env = {**getattr(plan, "ENV", {}), **(env or {})}
    lab = Lab.open(
        name, folder, peers=peers, seed=seed, env=env, topology=getattr(plan, "TOPOLOGY", None)
    )
    error = details = ""
    try:
        async with lab:
            await plan.run(lab)
    except Exception as exc:  # the outcome records it; Ctrl-C still propagates
        error = f"{type(exc).__name__}: {exc}"
        details = traceback.format_exc()
    outcome = Outcome(
        name,
        not error,
        time.monotonic() - started,
        peers,
        lab.counters.sent,
        lab.counters.acked,
        len(lab.counters.links),
        error,
        details,
        folder,
    )
    if outcome.passed and not keep:
        shutil.rmtree(folder, ignore_errors=True)
        outcome.folder = None
    return outcome


def new_run_dir(root: Path | None = None) -> Path:
    root = root or REPO_ROOT / "results"
    run_dir = root / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def write_junit(outcomes: Sequence[Outcome], path: Path, suite: str = "peerlab") -> None:
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(outcomes)),
        failures=str(sum(not o.passed for o in outcomes)),
        time=f"{sum(o.seconds for o in outcomes):.1f}",
    )
    for o in outcomes:
        case = ET.SubElement(
            root, "testcase", classname="scenarios", name=o.scenario, time=f"{o.seconds:.1f}"
        )
        if not o.passed:
            failure = ET.SubElement(case, "failure", message=o.error.splitlines()[0][:500])
            failure.text = o.details + (f"\nevidence: {o.folder}" if o.folder else "")
        out = ET.SubElement(case, "system-out")
        out.text = f"peers={o.peers} links={o.links} sent={o.sent} acked={o.acked}" + (
            f" folder={o.folder}" if o.folder else ""
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def summary_table(outcomes: Sequence[Outcome]) -> str:
    header = (
        f"{'scenario':<20}{'result':<8}{'time':>8}{'peers':>7}{'links':>7}{'sent':>7}{'acked':>7}"
    )
    rows = [header, "-" * len(header)]
    for o in outcomes:
        rows.append(
            f"{o.scenario:<20}{'pass' if o.passed else 'FAIL':<8}{o.seconds:>7.1f}s"
            f"{o.peers:>7}{o.links:>7}{o.sent:>7}{o.acked:>7}"
        )
    for o in outcomes:
        if not o.passed:
            rows.append(f"\n{o.scenario} failed: {o.error}\n  evidence kept in {o.folder}")
    return "\n".join(rows)
