"""`peerlab clean`: remove what interrupted or killed runs left on the Docker host.

    peerlab clean [--dry-run] [--run <id>]

What belongs to a run: every container, network and volume labelled `peerlab.run`
(the run id is its Compose project, e.g. `peerlab-20260101-120000-two-peers`), or,
for runs made before the labels, belonging to a Compose project named `peerlab-*`; and
the host's raw-table NOTRACK rules tagged `peerlab:<run id>` (scenarios/host_conntrack.py).
Nothing else is ever touched. A run whose process is still running on this machine (its
`peerlab.owner` label) is left alone, and said so. One line per thing removed, then a
total; a removal that fails is named with its reason, and the exit status is 1.
See docs/cleanup.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import docker
from docker.errors import APIError, DockerException, NotFound

from peerlab.scenarios.host_conntrack import (
    TAG_PREFIX,
    delete_script,
    list_script,
    rule_tag,
    run_on_host,
)
from peerlab.scenarios.stack import OWNER_LABEL, PROJECT_LABEL, RUN_LABEL, SCENARIO_LABEL

PROJECT_PREFIX = "peerlab-"
KINDS = ("container", "network", "volume", "host rule")
"""In removal order: a network goes once its containers have."""


@dataclass(frozen=True)
class Leftover:
    kind: str
    name: str
    run: str
    scenario: str = ""
    owner: str = ""


def run_of(labels: Mapping[str, str] | None) -> str | None:
    """The run an object belongs to: its `peerlab.run` label, else its Compose project if
    that is named `peerlab-*`; None: not PeerLab's. Pure."""
    labels = labels or {}
    if labels.get(RUN_LABEL):
        return labels[RUN_LABEL]
    project = labels.get(PROJECT_LABEL, "")
    return project if project.startswith(PROJECT_PREFIX) else None


def select(
    kind: str, objects: Iterable[tuple[str, Mapping[str, str] | None]], run: str | None
) -> list[Leftover]:
    """The (name, labels) objects that belong to a run (to `run`, if given). Pure."""
    found = []
    for name, labels in objects:
        owner_run = run_of(labels)
        if owner_run is not None and run in (None, owner_run):
            labels = labels or {}
            found.append(
                Leftover(
                    kind,
                    name,
                    owner_run,
                    labels.get(SCENARIO_LABEL, ""),
                    labels.get(OWNER_LABEL, ""),
                )
            )
    return found


def select_rules(iptables_save: str, run: str | None) -> list[Leftover]:
    """The rule lines of `iptables-save` output tagged for a run (for `run`, if given);
    each rule's name is its line. Pure."""
    found = []
    for line in iptables_save.splitlines():
        tag = rule_tag(line) if line.startswith("-A ") else None
        if tag is not None and run in (None, tag.removeprefix(TAG_PREFIX)):
            found.append(Leftover("host rule", line, tag.removeprefix(TAG_PREFIX)))
    return found


def live_runs(
    leftovers: Iterable[Leftover], host: str, alive: Callable[[int], bool]
) -> dict[str, str]:
    """Run → owner, for the runs whose process is provably still running: owned by a
    process of this host that is alive. An owner elsewhere cannot be checked, so its run
    counts as dead (a crashed CI job's leftovers must go). Pure given `alive`."""
    live = {}
    for leftover in leftovers:
        owner_host, _, pid = leftover.owner.rpartition("/")
        if owner_host == host and pid.isdigit() and alive(int(pid)):
            live[leftover.run] = leftover.owner
    return live


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def total(counts: Mapping[str, int], verb: str) -> str:
    """`removed 5 containers, 1 network, 0 volumes, 3 host rules`. Pure."""
    parts = [f"{counts[kind]} {kind}{'' if counts[kind] == 1 else 's'}" for kind in KINDS]
    return f"{verb} {', '.join(parts)}"


def clean(
    *,
    run: str | None = None,
    dry_run: bool = False,
    host_rules: bool = True,
    spare_live: bool = True,
    out: IO[str] = sys.stdout,
) -> int:
    """Remove (or with `dry_run` list) what runs left behind, printing one line per thing
    and a total; 0, or 1 if anything could not be listed or removed (each said why).
    `spare_live=False`: remove even a run whose process is alive (the exit hook of that
    very process)."""
    try:
        client = docker.from_env(version="auto", timeout=60)
    except DockerException as exc:
        print(f"cannot reach Docker: {exc}", file=out)
        return 1
    failures = 0
    try:
        objects: dict[str, list[tuple[Any, Leftover]]] = {}
        for kind, collection in (
            ("container", client.containers),
            ("network", client.networks),
            ("volume", client.volumes),
        ):
            objects[kind] = _find(kind, collection, run)
        leftovers = [leftover for found in objects.values() for _, leftover in found]
        if host_rules:
            try:
                rules = select_rules(run_on_host(client, list_script(_tag(run))), run)
            except DockerException as exc:
                print(f"could not list host rules: {_reason(exc)}", file=out)
                failures += 1
                rules = []
            leftovers += rules
        live = live_runs(leftovers, socket.gethostname(), pid_alive) if spare_live else {}
        for name, owner in sorted(live.items()):
            print(f"left run {name} alone: its process {owner} is still running", file=out)
        verb = "would remove" if dry_run else "removed"
        counts = dict.fromkeys(KINDS, 0)
        for kind in KINDS[:3]:
            for obj, leftover in objects[kind]:
                if leftover.run in live:
                    continue
                if not dry_run:
                    try:
                        _remove(kind, obj)
                    except APIError as exc:
                        print(f"could not remove {kind} {leftover.name}: {_reason(exc)}", file=out)
                        failures += 1
                        continue
                print(f"{verb} {kind} {leftover.name} (run {leftover.run})", file=out)
                counts[kind] += 1
        doomed = [r for r in leftovers if r.kind == "host rule" and r.run not in live]
        if doomed and dry_run:
            for rule in doomed:
                print(f"{verb} host rule {rule.name}", file=out)
            counts["host rule"] = len(doomed)
        elif doomed:
            try:
                deleted = run_on_host(client, delete_script([r.name for r in doomed]))
            except DockerException as exc:
                print(f"could not remove the host rules: {_reason(exc)}", file=out)
                failures += 1
                deleted = ""
            for line in deleted.splitlines():
                print(f"{verb} host rule {line}", file=out)
                counts["host rule"] += 1
        print(total(counts, verb), file=out)
    finally:
        client.close()
    return 1 if failures else 0


def _tag(run: str | None) -> str | None:
    return None if run is None else f"{TAG_PREFIX}{run}"


def _find(kind: str, collection: Any, run: str | None) -> list[tuple[Any, Leftover]]:
    # Both labels are asked for: ours, and Compose's for runs made before ours existed.
    by_id = {}
    for label in (RUN_LABEL, PROJECT_LABEL):
        filters = {"label": label}
        # A container listed, then removed by a run ending meanwhile, is skipped, not a
        # failure: runs may end while this one cleans (they run side by side).
        found = (
            collection.list(all=True, filters=filters, ignore_removed=True)
            if kind == "container"
            else collection.list(filters=filters)
        )
        by_id.update({obj.id: obj for obj in found})
    pairs = []
    for obj in by_id.values():
        labels = obj.labels if kind == "container" else obj.attrs.get("Labels")
        pairs += [(obj, leftover) for leftover in select(kind, [(obj.name, labels)], run)]
    return pairs


def _remove(kind: str, obj: Any) -> None:
    try:
        if kind == "container":
            obj.remove(force=True, v=True)
        elif kind == "network":
            obj.remove()
        else:
            obj.remove(force=True)
    except NotFound:
        pass  # gone meanwhile (another teardown or clean): what was wanted


def _reason(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[-500:]


def add_clean_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "clean",
        help="remove containers, networks, volumes and host rules that runs left behind",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--run", metavar="ID", help="only this run (its Compose project)")
    return parser


def run_clean(args: argparse.Namespace) -> int:
    return clean(run=args.run, dry_run=args.dry_run)
