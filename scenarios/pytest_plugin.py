"""PeerLab's pytest plugin (entry point `pytest11`, so installing PeerLab is enough): a
test in the user's own repository that asks for the `lab` fixture is a PeerLab scenario.

    import pytest

    @pytest.mark.peerlab(peers=3, profile="4g")
    async def test_chat(lab):
        await lab.connect("peer1", "peer2")
        ...

The fixture starts a fresh stack for the test (with the marker's peers, topology, env
and network profile), yields the `Lab` (docs/stack.md, "Writing a scenario"), and on the
way out tears it down, runs the history checker over the agents' event logs (an invalid
history fails the test even if its own assertions passed) and writes the results folder
with its report, as `peerlab run` does. Options:

    --peerlab-profile lan,4g     run every `lab` test under each profile (parametrized)
    --peerlab-seed N             the seed of all randomness (default 1)
    --peerlab-results DIR        results root (default ./results)
    --peerlab-keep               keep the folders of passing tests too

pytest-asyncio runs the tests: mark them `asyncio` or set `asyncio_mode = auto`
(examples/pytest/ shows a complete setup; docs/plugin.md).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from peerlab.scenarios.lab import Lab
from peerlab.scenarios.profile_runtime import network_profile
from peerlab.scenarios.profiles import Profile, load_profile
from peerlab.scenarios.runner import check_history, new_run_dir, write_outcome
from peerlab.scenarios.spec_files import SpecError

MARKER = "peerlab"
MARKER_KEYS = {"peers", "profile", "topology", "env"}
DEFAULT_PEERS = 2


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("peerlab", "PeerLab scenarios (the `lab` fixture)")
    group.addoption("--peerlab-profile", help="network profile(s), comma-separated")
    group.addoption("--peerlab-seed", type=int, default=1, help="seed of all randomness")
    group.addoption("--peerlab-results", type=Path, help="results root (default ./results)")
    group.addoption(
        "--peerlab-keep", action="store_true", help="keep the results of passing tests too"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "peerlab(peers=2, profile=None, topology=None, env=None): a PeerLab scenario "
        "test; the `lab` fixture reads these",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`--peerlab-profile a,b`: every test that uses `lab` runs once per profile."""
    option = metafunc.config.getoption("--peerlab-profile")
    if option and "lab" in metafunc.fixturenames:
        names = [name.strip() for name in option.split(",") if name.strip()]
        metafunc.parametrize("peerlab_profile", names, ids=names)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    # The `lab` fixture's teardown writes the test's verdict into outcome.json.
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()
_RUN_DIR = pytest.StashKey[Path]()


@pytest.fixture
def peerlab_profile() -> str | None:
    """The profile `--peerlab-profile` parametrizes with (None: the marker's, if any)."""
    return None


@pytest_asyncio.fixture
async def lab(request: pytest.FixtureRequest, peerlab_profile: str | None) -> AsyncIterator[Lab]:
    try:
        options = _marker_options(request.node)
        profile = _profile(peerlab_profile or options.get("profile"), request)
    except SpecError as exc:
        pytest.fail(f"peerlab: {exc}", pytrace=False)
    peers = int(options.get("peers", DEFAULT_PEERS))
    names = [f"peer{i}" for i in range(1, peers + 1)]
    topology = options.get("topology")
    if profile is not None:
        topology = profile.topology(topology, names)
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "-", request.node.name).strip("-")
    folder = _run_dir(request.config) / name
    config = request.config
    started = time.monotonic()
    the_lab = Lab.open(
        name,
        folder,
        peers=peers,
        seed=config.getoption("--peerlab-seed"),
        env=dict(options.get("env") or {}),
        topology=topology,
    )
    async with the_lab, network_profile(the_lab, profile):
        yield the_lab
    verdict = check_history(folder, the_lab.progress)
    call = request.node.stash.get(_CALL_REPORT, None)
    passed = call is not None and call.passed and (verdict is None or verdict.valid is not False)
    error = "" if call is None or call.passed else str(call.longrepr).splitlines()[-1]
    write_outcome(
        folder,
        {
            "scenario": name,
            "passed": passed,
            "seconds": time.monotonic() - started,
            "peers": peers,
            "sent": the_lab.counters.sent,
            "acked": the_lab.counters.acked,
            "links": len(the_lab.counters.links),
            "error": error,
            "origin": str(request.node.path),
        },
    )
    if verdict is not None and verdict.valid is False:
        pytest.fail(
            f"history checker: {verdict.render(limit=10)}\nevidence: {folder}", pytrace=False
        )
    if passed and not config.getoption("--peerlab-keep"):
        shutil.rmtree(folder, ignore_errors=True)


def _marker_options(node: pytest.Item) -> dict[str, Any]:
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise SpecError(f"{node.nodeid}: @pytest.mark.peerlab takes keywords only")
    unknown = sorted(set(marker.kwargs) - MARKER_KEYS)
    if unknown:
        raise SpecError(
            f"{node.nodeid}: @pytest.mark.peerlab: unknown {unknown}; "
            f"expected {sorted(MARKER_KEYS)}"
        )
    return dict(marker.kwargs)


def _profile(reference: str | None, request: pytest.FixtureRequest) -> Profile | None:
    if not reference:
        return None
    return load_profile(reference, Path(request.node.path).parent)


def _run_dir(config: pytest.Config) -> Path:
    """One results folder per pytest session, created on first use."""
    if _RUN_DIR not in config.stash:
        root = config.getoption("--peerlab-results") or Path.cwd() / "results"
        config.stash[_RUN_DIR] = new_run_dir(root)
    return config.stash[_RUN_DIR]
