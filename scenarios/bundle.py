"""A run's bundle: a scenario's results folder plus `bundle.json`, enough to understand the
run and to rerun it (`peerlab replay <folder>`, scenarios/replay.py; docs/replay.md).

The folder already holds the evidence (every agent's event log, every container's log,
the fault timeline as applied in `history.jsonl`, the generated Compose override files,
`outcome.json`, `check.json`). `bundle.json` adds what a rerun needs and what may have
changed since: the seed, peers and agent settings given; a copy of the scenario file and
of the profile file as they were (a rerun does not depend on them still existing or being
unchanged); PeerLab's version; the id of every image the stack used; the verdict. The
resolved Compose configuration goes next to it, in `compose.config.json`.

A test of the pytest plugin (scenarios/pytest_plugin.py) gets a bundle too: its
`scenario` names the test (`kind` "pytest", its node id, the rootdir, the
`--peerlab-profile` given) with a copy of the test file, and replaying it runs that test
again with pytest.

`bundle_record` and `verdict_record` are pure; `write_bundle` reads the files and asks git
and Docker (the small functions below it) for the rest.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peerlab.scenarios.catalog import Scenario
from peerlab.scenarios.profiles import SHIPPED, Profile, resolve
from peerlab.scenarios.stack import PEERLAB_ROOT

if TYPE_CHECKING:
    from peerlab.scenarios.stack import Stack

FORMAT = 1
"""bundle.json's format version: a reader refuses a bundle of another version."""
BUNDLE = "bundle.json"
PYTEST = "pytest"
"""The `kind` of a bundle's scenario that is a test of the pytest plugin."""
COMPOSE_CONFIG = "compose.config.json"


class BundleError(ValueError):
    """bundle.json is missing, unreadable or of another format; the message says which."""


def replay_command(folder: Path) -> str:
    """The command that reruns the run whose bundle is in `folder`."""
    return f"peerlab replay {shlex.quote(str(folder))}"


def source_file(scenario: Scenario) -> Path:
    """The file a scenario was read from: its YAML file, or its Python plan module."""
    if scenario.spec is not None:
        return scenario.spec.source
    # A plan's `run` is the module's own function, defined in the plan's file.
    return Path(inspect.getsourcefile(scenario.run) or "")


def companion_files(scenario: Scenario) -> dict[str, str]:
    """Files a YAML scenario names by path (its `profile:` file), as reference → text:
    the scenario cannot even be loaded without them."""
    spec = scenario.spec
    if spec is None or spec.profile is None:
        return {}
    path = resolve(spec.profile, spec.source.parent)
    return {} if path.parent == SHIPPED else {spec.profile: path.read_text()}


def scenario_record(scenario: Scenario) -> dict[str, Any]:
    """bundle.json's `scenario` for a scenario `peerlab run` ran: what it is, and copies of
    its file and of the files it names."""
    source = source_file(scenario)
    return {
        "name": scenario.name,
        "kind": scenario.kind,
        "origin": scenario.origin,
        "file": source.name,
        "text": source.read_text(),
        "companions": companion_files(scenario),
    }


def plugin_test_record(
    *, name: str, path: Path, node: str, rootdir: Path, profile_option: str | None
) -> dict[str, Any]:
    """bundle.json's `scenario` for a test of the pytest plugin: the test (node id, run
    from `rootdir` with `--peerlab-profile profile_option`) and a copy of its file."""
    return {
        "name": name,
        "kind": PYTEST,
        "origin": str(path),
        "file": path.name,
        "text": path.read_text(),
        "node": node,
        "rootdir": str(rootdir),
        "profile_option": profile_option,
    }


def verdict_record(passed: bool, error: str, check: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict as bundle.json keeps it: pass/fail, the error (its first line, and all
    its lines, which for an expectation or delivery failure are one problem each), and
    the history checker's verdict with the anomaly classes it found."""
    return {
        "passed": passed,
        "error": error.splitlines()[0] if error else "",
        "problems": error.splitlines(),
        "check": None
        if check is None
        else {
            "valid": check.get("valid"),
            "anomalies": sorted(k for k, n in check.get("counts", {}).items() if n),
        },
    }


def bundle_record(
    *,
    case: str,
    scenario: dict[str, Any],
    profile: Profile | None,
    profile_text: str | None,
    seed: int,
    peers: int,
    env: dict[str, str] | None,
    version: dict[str, Any],
    images: dict[str, str | None],
    compose_files: list[str],
    verdict: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    """bundle.json's content. Pure."""
    return {
        "format": FORMAT,
        "case": case,
        "seed": seed,
        "peers": peers,
        "env": dict(env or {}),
        "scenario": scenario,
        "profile": None
        if profile is None
        else {
            "name": profile.name,
            "source": str(profile.source),
            "shipped": profile.source.parent == SHIPPED,
            "text": profile_text,
        },
        "peerlab": version,
        "images": images,
        "compose": {"files": compose_files, "config": COMPOSE_CONFIG},
        "verdict": verdict,
        "replay": replay_command(folder),
    }


def write_bundle(
    folder: Path,
    *,
    scenario: dict[str, Any],
    profile: Profile | None,
    seed: int,
    peers: int,
    env: dict[str, str] | None,
    passed: bool,
    error: str,
    stack: Stack,
) -> Path:
    """Write `bundle.json` (and `compose.config.json`) into a scenario's results folder,
    named after the case, after its `outcome.json` and `check.json`; `scenario` is
    `scenario_record` or `plugin_test_record`. Returns bundle.json's path."""
    check_path = folder / "check.json"
    check = json.loads(check_path.read_text()) if check_path.exists() else None
    config, config_error = compose_config(stack)
    (folder / COMPOSE_CONFIG).write_text(
        json.dumps(config, indent=2) if config is not None else json.dumps({"error": config_error})
    )
    services = (config or {}).get("services", {})
    record = bundle_record(
        case=folder.name,
        scenario=scenario,
        profile=profile,
        profile_text=profile.source.read_text() if profile else None,
        seed=seed,
        peers=peers,
        env=env,
        version=peerlab_version(),
        images=image_ids(sorted({s["image"] for s in services.values() if "image" in s})),
        compose_files=[str(f) for f in stack.files],
        verdict=verdict_record(passed, error, check),
        folder=folder,
    )
    path = folder / BUNDLE
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def read_bundle(folder_or_file: Path) -> dict[str, Any]:
    """bundle.json of a results folder (or the file itself); BundleError if unusable."""
    path = folder_or_file / BUNDLE if folder_or_file.is_dir() else folder_or_file
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: no bundle here (a results folder holds {BUNDLE})") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise BundleError(f"{path}: bundle format {found!r}, this PeerLab reads {FORMAT}")
    missing = [
        k for k in ("seed", "peers", "env", "scenario", "profile", "verdict") if k not in record
    ]
    if missing:
        raise BundleError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
    return record


# ---- what git and Docker say ----


def _run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str] | None:
    """The command's result, or None if it could not run at all (no git, no docker)."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, **options)
    except (OSError, subprocess.TimeoutExpired):
        return None


def peerlab_version() -> dict[str, Any]:
    """The git commit of this checkout (and whether its tracked files were changed), or
    the installed package's version outside a checkout."""
    # Only PeerLab's own checkout: an installed copy may sit inside a user's repository.
    in_checkout = (PEERLAB_ROOT / ".git").exists()
    head = _run(["git", "-C", str(PEERLAB_ROOT), "rev-parse", "HEAD"]) if in_checkout else None
    if head is not None and head.returncode == 0:
        status = _run(["git", "-C", str(PEERLAB_ROOT), "status", "--porcelain", "-uno"])
        dirty = status is None or status.returncode != 0 or bool(status.stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    return {"version": importlib.metadata.version("peerlab")}


def compose_config(stack: Stack) -> tuple[dict[str, Any] | None, str]:
    """The run's Compose configuration as Compose resolves it (every file, every
    variable), or None and why not."""
    command = [
        "docker", "compose", "--project-name", stack.project,
        "--project-directory", str(PEERLAB_ROOT),
        *(arg for file in stack.files for arg in ("--file", str(file))),
        "config", "--format", "json",
    ]  # fmt: skip
    result = _run(command, env=stack.env)
    if result is None or result.returncode != 0:
        return None, result.stderr.strip() if result else "docker compose could not run"
    return json.loads(result.stdout), ""


def image_ids(images: list[str]) -> dict[str, str | None]:
    """Image reference → the id of the local image it names (None: no such image)."""
    ids: dict[str, str | None] = {}
    for image in images:
        result = _run(["docker", "image", "inspect", "--format", "{{.Id}}", image])
        ok = result is not None and result.returncode == 0
        ids[image] = result.stdout.strip() if ok else None
    return ids
