"""`peerlab replay <bundle>`: rerun a run from its bundle (scenarios/bundle.py) and say
whether the verdict matched (docs/replay.md).

    peerlab replay results/<run id>/<scenario>[@<profile>] [--results DIR]

The scenario and the profile are the bundle's copies: the files they came from are used
only while their text is still the same (so that a Python plan's imports of its
neighbours keep working), otherwise the copies are written to a temporary folder and
loaded from there. The run gets the bundle's seed, peers and agent settings, through the
same runner as `peerlab run`, into a new results folder.

A declarative scenario's replay must also draw the same plan from the seed
(`compare_plans`, pure): the same messages at the same times, the same fault times.

"Same verdict" (`compare_verdicts`, pure): both passed; or both failed the same way —
the same kind of error (the exception type, or "history checker"), the same problems
once normalized (`failure_signature`: numbers, addresses and message ids replaced, lists
of messages cut off, so "send→ack p95 125 ms" equals "send→ack p95 131 ms" and "3 of 10
messages were never acked" equals "4 of 10 ..."), and the same anomaly classes from the
history checker. Exit status: 0 matched, 1 did not, 2 the bundle cannot be replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from peerlab.scenarios import catalog
from peerlab.scenarios.bundle import (
    PYTEST,
    BundleError,
    image_ids,
    peerlab_version,
    read_bundle,
    replay_command,
    source_file,
    verdict_record,
)
from peerlab.scenarios.check_run import read_history
from peerlab.scenarios.profiles import SHIPPED, Profile, load_profile
from peerlab.scenarios.runner import OUTCOME, Outcome, new_run_dir, run_scenario
from peerlab.scenarios.spec_files import SpecError
from peerlab.scenarios.workload_plan import PLAN

# A message id as checks.py and the checker print it ("5f2a1b3c…"), or a whole one: hex
# with at least one digit, so that words made of a-f stay words.
_ID = re.compile(r"\b(?=[0-9a-f]*[0-9])[0-9a-f]{6,}\b…?")
# An object's address in a repr ("<Counters object at 0x7f3a…>"), new in every process.
_ADDRESS = re.compile(r"\b0x[0-9a-f]+\b")
# A number (or dotted address, or decimal) not glued to a name: `peer12` stays `peer12`.
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)*")
# Where a problem starts listing the messages at fault: which ones differ run to run.
_LISTING = re.compile(r":\s+\w+ <id>.*$")


def normalize(line: str) -> str:
    """A problem line with what varies between faithful reruns taken out."""
    line = _ADDRESS.sub("<address>", line)
    line = _ID.sub("<id>", line)
    line = _LISTING.sub("", line)
    return _NUMBER.sub("#", line).strip()


def failure_signature(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """What must be equal for two failures to count as the same (None: it passed).

    The kind is the exception type (the error's text before the first ": "). An
    AssertionError lists one problem per line (an expectation, a delivery check): all of
    them count. Any other error counts by its first line only, as the rest is often a
    tool's output (Compose's) that names this run's containers."""
    if verdict["passed"]:
        return None
    lines = verdict.get("problems") or [verdict.get("error", "")]
    kind, _, first = lines[0].partition(": ")
    lines = [first, *lines[1:]] if kind == "AssertionError" else [first]
    check = verdict.get("check") or {}
    return {
        "kind": kind,
        "problems": sorted({normalize(line) for line in lines if line.strip()}),
        "anomalies": sorted(check.get("anomalies", [])),
    }


def compare_verdicts(original: dict[str, Any], replayed: dict[str, Any]) -> tuple[bool, str]:
    """Whether two verdicts are the same (module docstring), and a line saying why."""
    if original["passed"] != replayed["passed"]:
        was, now = ("passed", "failed") if original["passed"] else ("failed", "passed")
        return False, f"the original run {was}, the replay {now}"
    if original["passed"]:
        return True, "both passed"
    a, b = failure_signature(original), failure_signature(replayed)
    assert a is not None and b is not None
    for key, what in (("kind", "error kind"), ("problems", "problems"), ("anomalies", "anomalies")):
        if a[key] != b[key]:
            return False, f"both failed, with different {what}: {a[key]} vs {b[key]}"
    return True, f"both failed with {a['kind']}: {'; '.join(a['problems'])}"


def compare_plans(
    original: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> tuple[bool, str]:
    """Whether a declarative run's replay drew the same plan from the seed (the messages'
    times and types, the faults' times: scenarios/workload_plan.py), and a line saying
    so. A run that recorded none (a Python plan, a test) has nothing to compare."""
    if original is None or replayed is None:
        return True, "no plan recorded (only declarative scenarios draw one)"
    if original != replayed:
        return False, "the replay drew another workload or fault timeline from the same seed"
    messages = sum(len(stream) for stream in original["sends"])
    faults = ", ".join(f"{f['kind']} at {f['at']:g}s" for f in original["faults"]) or "none"
    return True, f"the same {messages} messages and faults ({faults})"


def recorded_plan(folder: Path | None) -> dict[str, Any] | None:
    """The plan a declarative run recorded in its history, or None."""
    history = read_history(folder)[0] if folder is not None else []
    for entry in history:
        if entry.get("process") == "generator" and entry.get("f") == PLAN:
            return entry.get("value")
    return None


def _folder(bundle: Path) -> Path:
    return bundle if bundle.is_dir() else bundle.parent


# ---- rebuilding the run from the bundle ----


def _unchanged(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text() == text


def rebuild_scenario(record: dict[str, Any], workdir: Path) -> tuple[catalog.Scenario, str]:
    """The bundle's scenario, and a note on where it was loaded from."""
    if record["origin"] == catalog.BUILT_IN:
        current = catalog.built_in().get(record["name"])
        if current is not None and _unchanged(source_file(current), record["text"]):
            return current, f"built-in scenario {record['name']} (unchanged)"
    elif _unchanged(Path(record["origin"]), record["text"]):
        return catalog.load(record["origin"]), f"{record['origin']} (unchanged)"
    # Files the scenario names by relative path must sit where it looks for them: deep
    # enough in the temporary folder that every "../" stays inside it.
    companions = record.get("companions", {})
    depth = max((Path(ref).parts.count("..") for ref in companions), default=0)
    folder = workdir.joinpath("scenario", *["up"] * depth)
    path = folder / record["file"]
    for target, text in [(path, record["text"]), *((folder / r, t) for r, t in companions.items())]:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return catalog.load(str(path)), f"the bundle's copy (the original changed or is gone: {path})"


def rebuild_profile(record: dict[str, Any] | None, workdir: Path) -> tuple[Profile | None, str]:
    """The bundle's profile (None: the run had none), and a note on where it came from."""
    if record is None:
        return None, "none"
    if record["shipped"] and _unchanged(SHIPPED / f"{record['name']}.yaml", record["text"]):
        return load_profile(record["name"]), f"shipped profile {record['name']} (unchanged)"
    if _unchanged(Path(record["source"]), record["text"]):
        return load_profile(str(Path(record["source"]).resolve())), f"{record['source']}"
    # Named after the original, since a profile's name is its file's name.
    path = workdir / "profile" / f"{record['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record["text"])
    return load_profile(str(path)), f"the bundle's copy (the original changed or is gone: {path})"


def environment_notes(bundle: dict[str, Any]) -> list[str]:
    """Warnings for what differs from the recorded run outside the bundle: the images
    (compared by id) and PeerLab's version. A replay goes ahead anyway."""
    notes = []
    recorded = bundle.get("images", {})
    for image, now in image_ids(sorted(recorded)).items():
        if now != recorded[image]:
            notes.append(f"warning: image {image} is {now}, the run used {recorded[image]}")
    was, now = bundle.get("peerlab", {}), peerlab_version()
    if was != now:
        notes.append(f"warning: PeerLab is {_version(now)}, the run used {_version(was)}")
    return notes


def _version(version: dict[str, Any]) -> str:
    if "commit" in version:
        return version["commit"][:12] + (" (with changes)" if version.get("dirty") else "")
    return version.get("version", "unknown")


def _verdict_of(folder: Path | None, passed: bool, error: str) -> dict[str, Any]:
    check_path = folder / "check.json" if folder else None
    check = json.loads(check_path.read_text()) if check_path and check_path.exists() else None
    return verdict_record(passed, error, check)


def _describe(verdict: dict[str, Any]) -> str:
    return "pass" if verdict["passed"] else f"FAIL  {verdict['error']}"


# ---- the command ----


def add_replay_parser(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="rerun a run from its bundle and say whether the verdict matched"
    )
    replay.add_argument(
        "bundle", type=Path, help="a scenario's results folder (or its bundle.json)"
    )
    replay.add_argument("--results", type=Path, help="results root (default: ./results)")


def run_replay(args: argparse.Namespace) -> int:
    try:
        bundle = read_bundle(args.bundle)
    except BundleError as exc:
        print(f"peerlab replay: {exc}", file=sys.stderr)
        return 2
    replay = _replay_test if bundle["scenario"].get("kind") == PYTEST else _replay_scenario
    result = replay(args, bundle)
    if isinstance(result, int):
        return result
    replayed, folder = result
    original = bundle["verdict"]
    matched, why = compare_verdicts(original, replayed)
    print(f"original: {_describe(original)}")
    print(f"replay:   {_describe(replayed)}")
    same_plan, plan_why = compare_plans(recorded_plan(_folder(args.bundle)), recorded_plan(folder))
    print(f"{'plan matched' if same_plan else 'plan DIFFERS'}: {plan_why}")
    if not same_plan:
        matched, why = False, plan_why
    print(f"{'verdict matched' if matched else 'verdict DIFFERS'}: {why}")
    if folder is not None:
        print(f"replay evidence: {folder}\n  replay it: {replay_command(folder)}")
    return 0 if matched else 1


Replayed = tuple[dict[str, Any], Path | None] | int
"""The replay's verdict and results folder, or the exit status of a replay that could
not run."""


def _replay_scenario(args: argparse.Namespace, bundle: dict[str, Any]) -> Replayed:
    with tempfile.TemporaryDirectory(prefix="peerlab-replay-") as workdir:
        try:
            scenario, from_where = rebuild_scenario(bundle["scenario"], Path(workdir))
            profile, profile_from = rebuild_profile(bundle["profile"], Path(workdir))
        except (SpecError, KeyError, OSError) as exc:
            print(f"peerlab replay: {args.bundle}: cannot rebuild the run: {exc}", file=sys.stderr)
            return 2
        print(
            f"replaying {args.bundle}: seed {bundle['seed']}, {bundle['peers']} peers, "
            f"scenario from {from_where}, profile {profile_from}",
            file=sys.stderr,
        )
        for note in environment_notes(bundle):
            print(note, file=sys.stderr)
        try:
            outcome = asyncio.run(_run(args, bundle, scenario, profile))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted: the stack was torn down", file=sys.stderr)
            return 130
    return _verdict_of(outcome.folder, outcome.passed, outcome.error), outcome.folder


async def _run(
    args: argparse.Namespace,
    bundle: dict[str, Any],
    scenario: catalog.Scenario,
    profile: Profile | None,
) -> Outcome:
    # SIGTERM tears the stack down like Ctrl-C, as in `peerlab run`.
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    return await run_scenario(
        scenario,
        new_run_dir(args.results),
        peers=bundle["peers"],
        seed=bundle["seed"],
        env=bundle["env"],
        profile=profile,
    )


def rerun_command(record: dict[str, Any], seed: int, results: Path) -> list[str]:
    """The pytest command that runs a plugin test's bundle again: the same test, seed
    and `--peerlab-profile`, into `results`. Pure."""
    profile = record.get("profile_option")
    return [
        sys.executable, "-m", "pytest", record["node"], "-p", "no:cacheprovider",
        "--peerlab-seed", str(seed), "--peerlab-results", str(results),
        *(["--peerlab-profile", profile] if profile else []),
    ]  # fmt: skip


def _replay_test(args: argparse.Namespace, bundle: dict[str, Any]) -> Replayed:
    """A plugin test's bundle: run the test again with pytest, from its rootdir. The
    test runs as its file is now (its fixtures and conftest.py are the project's):
    a changed file is said, not replaced by the bundle's copy."""
    record = bundle["scenario"]
    rootdir = Path(record["rootdir"])
    test_file = rootdir / record["node"].split("::")[0]
    if not test_file.is_file():
        print(f"peerlab replay: {args.bundle}: the test file {test_file} is gone", file=sys.stderr)
        return 2
    print(
        f"replaying {args.bundle}: pytest {record['node']} in {rootdir}, seed {bundle['seed']}",
        file=sys.stderr,
    )
    if not _unchanged(test_file, record["text"]):
        print(f"warning: {test_file} changed since the run: replaying it as it is now",
              file=sys.stderr)  # fmt: skip
    for note in environment_notes(bundle):
        print(note, file=sys.stderr)
    results = new_run_dir(args.results)
    try:
        status = subprocess.run(
            rerun_command(record, bundle["seed"], results), cwd=rootdir, stdout=sys.stderr
        ).returncode
    except KeyboardInterrupt:
        print("interrupted: the test's stack was torn down", file=sys.stderr)
        return 130
    # The plugin writes results/<its run id>/<test>/: the one folder under ours.
    folders = [o.parent for o in results.glob(f"*/{record['name']}/{OUTCOME}")]
    if status not in (0, 1) or len(folders) != 1:
        print(
            f"peerlab replay: {args.bundle}: pytest exited with {status} and left "
            f"{len(folders)} results for {record['name']} in {results}",
            file=sys.stderr,
        )
        return 2
    outcome = json.loads((folders[0] / OUTCOME).read_text())
    return _verdict_of(folders[0], outcome["passed"], outcome["error"]), folders[0]
