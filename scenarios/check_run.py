"""`peerlab check <folder>`: read a results folder tolerantly and run scenarios/checker.py on it.

A scenario folder holds `events/<peer>.jsonl` (each agent's event log) and, usually,
`history.jsonl` (the harness's entries). A run folder holds one scenario folder per
scenario; each is checked and the worst verdict decides the exit code (invalid is worse than
unknown, as in Jepsen). Reading never raises on bad content: a line that is not a JSON
object is skipped and reported, which makes the verdict "unknown".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from peerlab.scenarios.checker import EXAMPLES, HISTORY, CheckResult, check

# A restarted agent appends to its log right after a line its kill cut short (that line has
# no newline), so its first event ends up on the cut line: it is recovered from there.
_EVENT_START = '{"seq"'

# Exit codes from best to worst: valid, unknown, invalid.
_SEVERITY = {0: 0, 2: 1, 1: 2}


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects of a JSON-lines file, and a description of each line that is not one
    (phrased to follow "<agent>'s event log", e.g. "ends in a cut line (line 311)")."""
    data = path.read_bytes()
    raw_lines = data.split(b"\n")
    # The bytes after the last newline are a line the writer did not finish (or nothing).
    last_is_cut = not data.endswith(b"\n")
    if not last_is_cut:
        raw_lines.pop()
    entries, damaged = [], []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            # Line by line, as the agent reads it (docs/event-log.md): a bad byte costs
            # its own line only.
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            damaged.append(f"has a line that is not UTF-8 (line {number})")
            continue
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
            continue
        if number == len(raw_lines) and last_is_cut:
            damaged.append(f"ends in a cut line (line {number})")
            continue
        recovered = _recover_glued_event(line)
        if recovered is not None:
            entries.append(recovered)
            damaged.append(f"has a cut line (line {number}), the next event written onto it")
        else:
            damaged.append(f"has a line that is not a JSON object (line {number})")
    return entries, damaged


def _recover_glued_event(line: str) -> dict[str, Any] | None:
    start = line.find(_EVENT_START, 1)
    while start != -1:
        try:
            entry = json.loads(line[start:])
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            return entry
        start = line.find(_EVENT_START, start + 1)
    return None


def load_run(folder: Path) -> tuple[dict[str, list[dict]], list[dict], dict[str, list[str]]]:
    """A scenario folder's event logs by agent (the file's stem), its history entries (none
    without history.jsonl) and its damaged lines by agent (HISTORY for history.jsonl)."""
    events_by_agent: dict[str, list[dict]] = {}
    damaged: dict[str, list[str]] = {}
    for path in sorted((folder / "events").glob("*.jsonl")):
        events_by_agent[path.stem], bad = _read_jsonl(path)
        if bad:
            damaged[path.stem] = bad
    history, bad = read_history(folder)
    if bad:
        damaged[HISTORY] = bad
    return events_by_agent, history, damaged


def read_history(folder: Path) -> tuple[list[dict], list[str]]:
    """A scenario folder's history entries (none without history.jsonl) and its damaged
    lines, read as the event logs are."""
    if not (folder / HISTORY).is_file():
        return [], []
    return _read_jsonl(folder / HISTORY)


def check_folder(folder: Path) -> CheckResult:
    """Check one scenario folder."""
    return check(*load_run(folder))


def scenario_folders(folder: Path) -> list[Path]:
    """`folder` itself when it is a scenario folder (it has `events/`), else its scenario
    subfolders (a run folder); empty when there is nothing to check."""
    if (folder / "events").is_dir():
        return [folder]
    return sorted(p for p in folder.iterdir() if (p / "events").is_dir()) if folder.is_dir() else []


def add_check_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `check` subcommand to `peerlab`'s subparsers; `run_check` runs it."""
    parser = subparsers.add_parser(
        "check",
        help="check a finished run's event logs for lost, duplicated, reordered, ... messages",
        description=(
            "Check a scenario folder (results/<run>/<scenario>) or every scenario of a run "
            "folder. Exit 0: valid, 1: invalid, 2: unknown (evidence incomplete). "
            "docs/checker.md defines each anomaly."
        ),
    )
    parser.add_argument("folder", type=Path, help="a scenario folder or a run folder")
    parser.add_argument(
        "--limit",
        type=int,
        default=EXAMPLES,
        help="anomalies shown per class, per sender → receiver and conversation",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run_check(args: argparse.Namespace) -> int:
    """Print each scenario's report; return the worst exit code (invalid > unknown > valid)."""
    folders = scenario_folders(args.folder)
    if not folders:
        print(f"UNKNOWN: no scenario folder with event logs (events/) in {args.folder}")
        return 2
    results = {folder: check_folder(folder) for folder in folders}
    if args.json:
        report = {folder.name: r.to_json(limit=args.limit) for folder, r in results.items()}
        print(json.dumps(report, indent=2))
    else:
        for folder, result in results.items():
            if len(results) > 1:
                print(f"== {folder.name}")
            print(result.render(limit=args.limit))
    return max((r.exit_code for r in results.values()), key=_SEVERITY.__getitem__)
