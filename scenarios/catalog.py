"""Every scenario `peerlab` can run, however it is written and wherever it lives: the
built-in Python plans (scenarios/plans/*.py) and YAML scenarios (scenarios/plans/*.yaml),
found by their files as a user's are (nothing to register), and a user's file given by
path — a Python plan
module (docstring, `PEERS`, `async def run(lab)`, optional `TOPOLOGY`, `ENV` and `BODY_S`)
or a YAML scenario (docs/scenarios.md). All become one `Scenario`; loading one checks it
before any container starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from peerlab.scenarios import plans
from peerlab.scenarios.scenario_spec import ScenarioSpec, load_scenario_spec
from peerlab.scenarios.spec_files import SpecError

if TYPE_CHECKING:
    from peerlab.scenarios.lab import Lab

BUILT_IN = "built-in"
PLANS_DIR = Path(plans.__file__).parent


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    origin: str
    """"built-in", or the file it was loaded from."""
    kind: str
    """"python" or "yaml"."""
    peers: int
    run: Callable[[Lab], Awaitable[None]]
    topology: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    """The profile the scenario asks for (YAML `profile:`); `--profile` overrides it."""
    spec: ScenarioSpec | None = None
    body_s: float = 0.0
    """About how long the body runs, in seconds: a plan's `BODY_S` (0 when it gives none),
    a YAML scenario's workload. Runs waiting for a stack start longest first
    (stack_slots.stack_weight)."""


def from_module(module: ModuleType, origin: str, name: str) -> Scenario:
    """A Python plan module as a Scenario; SpecError naming what the contract misses."""
    missing = [
        what
        for what, ok in (
            ("a docstring", bool(module.__doc__ and module.__doc__.strip())),
            ("PEERS (an int >= 2)", isinstance(getattr(module, "PEERS", None), int)),
            ("async def run(lab)", inspect.iscoroutinefunction(getattr(module, "run", None))),
            ("BODY_S, if given, a number of seconds >= 0", _seconds(getattr(module, "BODY_S", 0))),
        )
        if not ok
    ]
    if missing:
        raise SpecError(f"{origin}: a plan module needs {', '.join(missing)}")
    return Scenario(
        name=name,
        description=" ".join(module.__doc__.split()),
        origin=origin,
        kind="python",
        peers=module.PEERS,
        run=module.run,
        topology=getattr(module, "TOPOLOGY", None),
        env=dict(getattr(module, "ENV", {})),
        body_s=float(getattr(module, "BODY_S", 0)),
    )


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def from_spec(spec: ScenarioSpec, origin: str) -> Scenario:
    from peerlab.scenarios.declarative import run_spec

    async def run(lab: Lab) -> None:
        await run_spec(spec, lab)

    return Scenario(
        name=spec.name,
        description=spec.description,
        origin=origin,
        kind="yaml",
        peers=spec.peers,
        run=run,
        topology=spec.topology,
        env=spec.env,
        profile=spec.profile,
        spec=spec,
        body_s=spec.end,
    )


def built_in() -> dict[str, Scenario]:
    """Every file in scenarios/plans/ (but its `__init__.py`), by file name: a plan
    module, imported as part of the package (its name is its file's), or a YAML file."""
    found = {}
    for path in sorted(PLANS_DIR.iterdir()):
        if path.suffix == ".py" and path.stem != "__init__":
            module = importlib.import_module(f"{plans.__name__}.{path.stem}")
            found[path.stem] = from_module(module, BUILT_IN, path.stem)
        elif path.suffix == ".yaml":
            scenario = from_spec(load_scenario_spec(path), BUILT_IN)
            found[scenario.name] = scenario
    return found


def load(reference: str) -> Scenario:
    """A built-in scenario by name, or a scenario file (.py or .yaml) by path."""
    path = Path(reference)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SpecError(f"{reference}: no such scenario file")
        return from_spec(load_scenario_spec(path), str(path))
    if path.suffix == ".py":
        return _load_module(path)
    scenarios = built_in()
    if reference not in scenarios:
        raise SpecError(
            f"no built-in scenario {reference!r} (built-in: {', '.join(scenarios)}); "
            "give a path to run a .py or .yaml scenario file"
        )
    return scenarios[reference]


def _load_module(path: Path) -> Scenario:
    if not path.is_file():
        raise SpecError(f"{path}: no such scenario file")
    # A name of its own, so that a user's `scenarios.py` or `plan.py` cannot shadow (or be
    # shadowed by) a module PeerLab imports.
    module_name = f"peerlab_user_scenario_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise SpecError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return from_module(module, str(path), path.stem)
