"""Runs scenarios (scenarios/catalog.py) against fresh stacks, each under a network
profile or none, and records the outcome (results folder, JUnit).

Each scenario (x profile) gets its own results folder `results/<run id>/<scenario>/`
(`<scenario>@<profile>/` under a profile) holding every agent's event log (`events/`),
every container's log (`logs/`), the agents' final states, Toxiproxy's state, the run's
history, `outcome.json`, `check.json`, `bundle.json` and `report.html` (docs/report.md; JUnit
links it): after every scenario the history checker (docs/checker.md) reads all the
agents' event logs and the history together, and an invalid history fails the scenario
even when its own assertions passed. Every folder is kept, a passing run's too: it is the
run's bundle (docs/replay.md), and a failing one's path is printed. One JUnit XML file
describes the whole run, one test case per scenario x profile.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peerlab.scenarios.bundle import replay_command, scenario_record, write_bundle
from peerlab.scenarios.catalog import Scenario
from peerlab.scenarios.check_run import check_folder, load_run
from peerlab.scenarios.checker import CheckResult
from peerlab.scenarios.connect_times import connect_times, summarize
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.profile_runtime import network_profile
from peerlab.scenarios.profiles import Profile
from peerlab.scenarios.report import write_report
from peerlab.scenarios.stack import peer_names


@dataclass
class Outcome:
    scenario: str
    passed: bool
    seconds: float
    """Start, body and teardown: not the wait for a stack slot (PEERLAB_MAX_STACKS)."""
    peers: int
    sent: int
    acked: int
    links: int
    error: str = ""
    details: str = ""
    folder: Path | None = None
    start_s: float = 0.0
    """Stack start (up, healthy, NAT types proven); body_s the scenario itself (its
    profile's shaping included); teardown_s evidence collected and the stack removed."""
    body_s: float = 0.0
    teardown_s: float = 0.0
    connect_p50_ms: float | None = None
    """Offer sent → channel open over every link the scenario connected (None: no link
    was); docs/scenarios.md."""
    connect_p95_ms: float | None = None


def case_name(scenario: Scenario, profile: Profile | None) -> str:
    """The scenario's name in the summary, JUnit and its folder: `name@profile`."""
    return f"{scenario.name}@{profile.name}" if profile else scenario.name


def case_topology(
    scenario: Scenario, profile: Profile | None, peers: int | None = None
) -> tuple[list[str], dict[str, Any] | None]:
    """The peers a case runs (`peers` asks for more than the scenario's own) and its
    topology: the profile's placed over the scenario's, else the scenario's. Pure."""
    names = peer_names(max(peers or scenario.peers, scenario.peers))
    return names, profile.topology(scenario.topology, names) if profile else scenario.topology


async def run_scenario(
    scenario: Scenario,
    run_dir: Path,
    *,
    peers: int | None = None,
    seed: int = 1,
    env: dict[str, str] | None = None,
    profile: Profile | None = None,
) -> Outcome:
    name = case_name(scenario, profile)
    names, topology = case_topology(scenario, profile, peers)
    peers = len(names)
    folder = run_dir / name
    started = time.monotonic()
    # A scenario's own agent settings, under the caller's.
    env = {**scenario.env, **(env or {})}
    lab = Lab.open(
        name, folder, peers=peers, seed=seed, env=env, topology=topology, body_s=scenario.body_s
    )
    error = details = ""
    try:
        async with lab, network_profile(lab, profile):
            await scenario.run(lab)
    except Exception as exc:  # the outcome records it; Ctrl-C still propagates
        error = f"{type(exc).__name__}: {exc}"
        details = traceback.format_exc()
    outcome = Outcome(
        name,
        not error,
        peers=peers,
        sent=lab.counters.sent,
        acked=lab.counters.acked,
        links=len(lab.counters.links),
        error=error,
        details=details,
        folder=folder,
        **_phases(lab.phases, time.monotonic() - started),
    )
    connects = summarize(connect_times(load_run(folder)[0])) if folder.is_dir() else None
    if connects is not None:
        outcome.connect_p50_ms, outcome.connect_p95_ms = connects.p50_ms, connects.p95_ms
    verdict = check_history(folder, lab.progress)
    if verdict is not None and verdict.valid is False and outcome.passed:
        outcome.passed = False
        outcome.error = f"history checker: {verdict.render().splitlines()[0]}"
        outcome.details = verdict.render(limit=10)
    record = {k: v for k, v in asdict(outcome).items() if k not in ("details", "folder")}
    write_outcome(folder, {**record, "origin": scenario.origin})
    if folder.exists():
        try:
            write_bundle(
                folder, scenario=scenario_record(scenario), profile=profile, seed=seed,
                peers=peers, env=env, passed=outcome.passed, error=outcome.error, stack=lab.stack,
            )  # fmt: skip
        except Exception as exc:  # a bundle bug must not change the scenario's verdict
            print(f"{name}: bundle not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    return outcome


def _phases(phases: dict[str, float], total: float) -> dict[str, float]:
    """The scenario's time, split; waiting for a stack slot is in none of them."""
    start, teardown = phases.get("start", 0.0), phases.get("teardown", 0.0)
    body = max(total - phases.get("queued", 0.0) - start - teardown, 0.0)
    return {
        "seconds": start + body + teardown,
        "start_s": start,
        "body_s": body,
        "teardown_s": teardown,
    }


def check_history(folder: Path, progress: Callable[[str], None]) -> CheckResult | None:
    """Run the history checker over a scenario's folder (None: no event logs, the stack
    never started), write check.json, and say the verdict."""
    if not (folder / "events").is_dir():
        return None
    verdict = check_folder(folder)
    (folder / "check.json").write_text(json.dumps(verdict.to_json(), ensure_ascii=False))
    progress(f"history checker: {verdict.render(limit=3).splitlines()[0]}")
    return verdict


OUTCOME = "outcome.json"
"""A scenario's verdict in its results folder (what `write_outcome` writes)."""


def write_outcome(folder: Path, record: dict[str, Any]) -> None:
    """outcome.json and the report (which shows it) in the scenario's folder."""
    if not folder.exists():
        return
    (folder / OUTCOME).write_text(json.dumps(record))
    try:
        write_report(folder)
    except Exception as exc:  # a report bug must not change the scenario's verdict
        print(f"{folder.name}: report not written: {type(exc).__name__}: {exc}", file=sys.stderr)


def new_run_dir(root: Path | None = None) -> Path:
    # Absolute: the folder is bind-mounted, and Compose reads a relative source as a volume name.
    root = (root or Path("results")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # Created, not checked: runs started in the same second by other processes each get
    # a folder of their own.
    suffix = 1
    while True:
        run_dir = root / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            suffix += 1


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
            failure.text = o.details + (
                f"\nevidence: {o.folder}\nreplay: {replay_command(o.folder)}" if o.folder else ""
            )
        out = ET.SubElement(case, "system-out")
        out.text = f"peers={o.peers} links={o.links} sent={o.sent} acked={o.acked}" + (
            f" folder={o.folder}" if o.folder else ""
        )
        if o.folder and (o.folder / "report.html").exists():
            # [[ATTACHMENT|path]]: how Jenkins' and GitLab's JUnit views link a file.
            report = (o.folder / "report.html").resolve()
            out.text += f"\nreport: {report.as_uri()}\n[[ATTACHMENT|{report}]]"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def summary_table(outcomes: Sequence[Outcome]) -> str:
    width = max([20, *(len(o.scenario) + 2 for o in outcomes)])
    header = (
        f"{'scenario':<{width}}{'result':<8}{'time':>8}{'start':>8}{'body':>8}{'down':>8}"
        f"{'peers':>7}{'links':>7}{'sent':>7}{'acked':>7}{'conn p50':>10}{'p95':>8}"
    )
    rows = [header, "-" * len(header)]
    for o in outcomes:
        rows.append(
            f"{o.scenario:<{width}}{'pass' if o.passed else 'FAIL':<8}{o.seconds:>7.1f}s"
            f"{o.start_s:>7.1f}s{o.body_s:>7.1f}s{o.teardown_s:>7.1f}s"
            f"{o.peers:>7}{o.links:>7}{o.sent:>7}{o.acked:>7}"
            f"{_ms(o.connect_p50_ms):>10}{_ms(o.connect_p95_ms):>8}"
        )
    for o in outcomes:
        if not o.passed:
            rows.append(
                f"\n{o.scenario} failed: {o.error}\n  evidence kept in {o.folder}"
                f"\n  replay: {replay_command(o.folder)}"
            )
    return "\n".join(rows)
