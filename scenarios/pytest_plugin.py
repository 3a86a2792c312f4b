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
with its report and bundle, as `peerlab run` does: a failing test's report ends with the
command that replays it (`peerlab replay <folder>`, which runs the test again with
pytest, the same seed and profile option, and says whether the verdict matched). Options:

    --peerlab-profile lan,4g     run every `lab` test under each profile (parametrized)
    --peerlab-seed N             the seed of all randomness (default 1)
    --peerlab-results DIR        results root (default ./results)

pytest-asyncio runs the tests: mark them `asyncio` or set `asyncio_mode = auto`
(examples/pytest/ shows a complete setup; docs/plugin.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from peerlab.scenarios.bundle import plugin_test_record, replay_command, write_bundle
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
    call = item.stash.get(_CALL_REPORT, None)
    folder = item.stash.get(_FOLDER, None)
    if report.when == "teardown" and call is not None and call.failed and folder is not None:
        # On the teardown's report, the last part of a failure's entry pytest prints
        # (it shows a teardown's sections whose name says "teardown"): the failure's
        # last lines are the way back to it.
        report.sections.append(("peerlab, after teardown", _evidence(folder)))
    return report


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()
_FOLDER = pytest.StashKey[Path]()
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
    request.node.stash[_FOLDER] = folder
    config = request.config
    seed = config.getoption("--peerlab-seed")
    env = dict(options.get("env") or {})
    started = time.monotonic()
    the_lab = Lab.open(name, folder, peers=peers, seed=seed, env=env, topology=topology)
    async with the_lab, network_profile(the_lab, profile):
        yield the_lab
    verdict = check_history(folder, the_lab.progress)
    call = request.node.stash.get(_CALL_REPORT, None)
    invalid = verdict is not None and verdict.valid is False
    passed = call is not None and call.passed and not invalid
    error = _error(call, verdict.render().splitlines()[0] if invalid else "")
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
    try:
        record = plugin_test_record(
            name=name,
            path=Path(request.node.path),
            node=request.node.nodeid,
            rootdir=config.rootpath,
            profile_option=config.getoption("--peerlab-profile"),
        )
        write_bundle(
            folder, scenario=record, profile=profile, seed=seed, peers=peers, env=env,
            passed=passed, error=error, stack=the_lab.stack,
        )  # fmt: skip
    except Exception as exc:  # a bundle bug must not change the test's verdict
        the_lab.progress(f"bundle not written: {type(exc).__name__}: {exc}")
    if invalid:
        pytest.fail(
            f"history checker: {verdict.render(limit=10)}\n{_evidence(folder)}", pytrace=False
        )


def _error(call: pytest.TestReport | None, checker: str) -> str:
    """The verdict's error line, as `peerlab run` words it: the exception (type: message)
    the test failed with, else the history checker's first line, else none."""
    if call is not None and call.failed:
        crash = getattr(call.longrepr, "reprcrash", None)
        return crash.message if crash is not None else str(call.longrepr).splitlines()[-1]
    if call is None:
        return "the test did not run"
    return f"history checker: {checker}" if checker else ""


def _evidence(folder: Path) -> str:
    return f"evidence: {folder}\nreplay: {replay_command(folder)}"


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
