"""Seeds, bundles, replay and soak statistics (docs/replay.md).

Without Docker: bundle.json written and read back (copies of the scenario and profile,
the verdict with the checker's anomaly classes), a bundle rebuilt after its files moved,
the "same verdict" comparison, the Wilson interval against published values. With
Docker (`make suite-check`): a scenario that fails on purpose, run with a seed, ends its
failure output with the replay command, and the replay reproduces the same failure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from peerlab.scenarios import bundle, catalog
from peerlab.scenarios.profiles import load_profile
from peerlab.scenarios.replay import (
    compare_plans,
    compare_verdicts,
    normalize,
    rebuild_profile,
    rebuild_scenario,
    recorded_plan,
    rerun_command,
    run_replay,
)
from peerlab.scenarios.scenario_spec import load_scenario_spec
from peerlab.scenarios.soak import RunResult, percentile, summary, wilson_interval
from peerlab.scenarios.workload_plan import plan_run

REPO_ROOT = Path(__file__).resolve().parents[1]
FAILING_ON_PURPOSE = REPO_ROOT / "examples" / "scenarios" / "failing_on_purpose.yaml"

SCENARIO = """\
description: a user's scenario naming its profile by relative path
peers: 2
profile: ../profiles/slow.yaml
workload:
  - {from: peer1, to: peer2, rate: 2, duration: 2s}
expect:
  ack_p95_below: 20ms
"""
PROFILE = """\
description: a user's own profile
nat: port-restricted
up: {delay_ms: 40}
"""


def _failure(*problems: str, anomalies: tuple[str, ...] = ()) -> dict:
    check = {"valid": not anomalies, "counts": {a: 1 for a in anomalies}}
    return bundle.verdict_record(False, "AssertionError: " + "\n".join(problems), check)


PASSED = bundle.verdict_record(True, "", {"valid": True, "counts": {"lost": 0}})


# ---- bundle.json ----


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path]:
    """A YAML scenario in scenarios/ next to profiles/slow.yaml, as a user lays them out."""
    scenario = tmp_path / "mine" / "scenarios" / "slow_chat.yaml"
    profile = tmp_path / "mine" / "profiles" / "slow.yaml"
    for path, text in ((scenario, SCENARIO), (profile, PROFILE)):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    return scenario, profile


def _write(folder: Path, scenario, profile, monkeypatch, error: str = "") -> dict:
    """write_bundle with git and Docker answered by stand-ins."""
    monkeypatch.setattr(bundle, "peerlab_version", lambda: {"commit": "abc123", "dirty": False})
    config = {"services": {"peer1": {"image": "peerlab/python:dev"}}}
    monkeypatch.setattr(bundle, "compose_config", lambda stack: (config, ""))
    monkeypatch.setattr(bundle, "image_ids", lambda images: {i: "sha256:1" for i in images})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.json").write_text(
        json.dumps({"valid": False, "counts": {"lost": 2, "duplicated": 0}})
    )
    stack = SimpleNamespace(files=[REPO_ROOT / "compose.yaml"])
    bundle.write_bundle(
        folder,
        scenario=bundle.scenario_record(scenario),
        profile=profile,
        seed=7,
        peers=2,
        env={"RETRANSMIT_AFTER": "0.3"},
        passed=not error,
        error=error,
        stack=stack,
    )
    return bundle.read_bundle(folder)


def test_the_bundle_copies_the_scenario_and_profile_and_records_the_run(
    tmp_path, user_files, monkeypatch
):
    scenario_file, profile_file = user_files
    scenario = catalog.load(str(scenario_file))
    profile = load_profile(str(profile_file))
    error = "AssertionError: peer1 → peer2: send→ack p95 95 ms, expected below 20 ms"
    record = _write(tmp_path / "run" / "slow_chat@slow", scenario, profile, monkeypatch, error)

    assert record["format"] == bundle.FORMAT and record["seed"] == 7 and record["peers"] == 2
    assert record["env"] == {"RETRANSMIT_AFTER": "0.3"}
    assert record["scenario"]["text"] == SCENARIO
    assert record["scenario"]["companions"] == {"../profiles/slow.yaml": PROFILE}
    assert record["profile"] == {
        "name": "slow",
        "source": str(profile_file),
        "shipped": False,
        "text": PROFILE,
    }
    assert record["images"] == {"peerlab/python:dev": "sha256:1"}
    assert record["peerlab"] == {"commit": "abc123", "dirty": False}
    assert record["verdict"] == {
        "passed": False,
        "error": error,
        "problems": [error],
        "check": {"valid": False, "anomalies": ["lost"]},
    }
    folder = tmp_path / "run" / "slow_chat@slow"
    assert record["replay"] == f"peerlab replay {folder}"
    assert json.loads((folder / bundle.COMPOSE_CONFIG).read_text())["services"]


def test_a_bundle_replays_after_its_files_changed(tmp_path, user_files, monkeypatch):
    scenario_file, profile_file = user_files
    scenario = catalog.load(str(scenario_file))
    record = _write(tmp_path / "run" / "x", scenario, load_profile(str(profile_file)), monkeypatch)
    scenario_file.write_text(SCENARIO.replace("20ms", "2s"))
    profile_file.unlink()  # the scenario cannot even load without it now

    rebuilt, where = rebuild_scenario(record["scenario"], tmp_path / "work")
    assert "the bundle's copy" in where
    assert rebuilt.name == "slow_chat" and rebuilt.spec.expect.ack_p95_below == 0.02
    profile, where = rebuild_profile(record["profile"], tmp_path / "work")
    assert "the bundle's copy" in where
    assert profile.name == "slow" and profile.up == {"delay_ms": 40}


def test_an_unchanged_built_in_scenario_and_shipped_profile_are_used_as_they_are(tmp_path):
    two_peers = catalog.load("two_peers")
    record = {
        "name": "two_peers",
        "origin": catalog.BUILT_IN,
        "file": "two_peers.py",
        "text": bundle.source_file(two_peers).read_text(),
    }
    rebuilt, where = rebuild_scenario(record, tmp_path)
    assert rebuilt is catalog.built_in()["two_peers"] or rebuilt.run is two_peers.run
    assert where == "built-in scenario two_peers (unchanged)"
    profile = load_profile("4g")
    shipped = {"name": "4g", "shipped": True, "source": "x", "text": profile.source.read_text()}
    assert rebuild_profile(shipped, tmp_path)[0] == profile
    assert rebuild_profile(None, tmp_path) == (None, "none")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no bundle here"),
        ("not json", "unreadable"),
        (json.dumps({"format": 99}), "bundle format 99"),
        (json.dumps({"format": bundle.FORMAT, "seed": 1}), "missing peers, env"),
    ],
)
def test_a_bad_bundle_is_refused_with_exit_status_2(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / bundle.BUNDLE).write_text(content)
    with pytest.raises(bundle.BundleError, match=message):
        bundle.read_bundle(tmp_path)
    args = argparse.Namespace(bundle=tmp_path, results=None)
    assert run_replay(args) == 2
    assert message in capsys.readouterr().err


# ---- "same verdict" ----


def test_the_same_failure_with_other_numbers_and_messages_is_the_same_verdict():
    first = _failure(
        "peer1 → peer2: send→ack p95 125 ms, expected below 20 ms",
        "peer2 → peer1: 3 of 10 messages were never acked: text 5f2a1b3c… (conversation c, "
        "seq 4), text 77aa01bc… (conversation c, seq 5)",
        anomalies=("never_acked",),
    )
    second = _failure(
        "peer2 → peer1: 4 of 11 messages were never acked: text 0123abcd… (conversation c, "
        "seq 1), and 3 more",
        "peer1 → peer2: send→ack p95 131 ms, expected below 20 ms",
        anomalies=("never_acked",),
    )
    matched, why = compare_verdicts(first, second)
    assert matched, why
    assert why.startswith("both failed with AssertionError: ")
    assert compare_verdicts(PASSED, PASSED) == (True, "both passed")


@pytest.mark.parametrize(
    ("replayed", "why"),
    [
        (PASSED, "the original run failed, the replay passed"),
        (
            _failure("peer1 → peer2: 1 of 5 messages were never delivered: text 5f2a1b3c…"),
            "different problems",
        ),
        (
            _failure(
                "peer1 → peer2: send→ack p95 125 ms, expected below 20 ms", anomalies=("lost",)
            ),
            "different anomalies",
        ),
        (
            bundle.verdict_record(False, "TimeoutError: peer1 did not connect", None),
            "different error kind",
        ),
    ],
)
def test_a_different_outcome_is_a_different_verdict(replayed, why):
    original = _failure("peer1 → peer2: send→ack p95 125 ms, expected below 20 ms")
    matched, reason = compare_verdicts(original, replayed)
    assert not matched and why in reason, reason


def test_normalizing_keeps_peer_names_and_words():
    assert normalize("peer12 lost 10.0.3.4:5000 after 2.5s in decade") == (
        "peer12 lost #:# after #s in decade"
    )


# ---- soak statistics ----


@pytest.mark.parametrize(
    ("passed", "runs", "low", "high"),
    # Wilson score intervals, z = 1.96 (e.g. Brown, Cai & DasGupta 2001; R's prop.test
    # without continuity correction gives the same bounds).
    [(9, 10, 0.5958, 0.9821), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634)],
)
def test_the_wilson_interval_matches_published_values(passed, runs, low, high):
    got = wilson_interval(passed, runs)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_percentiles_are_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 8.0, 7.0, 9.0]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.95) == 10.0
    assert percentile([3.0], 0.95) == 3.0


def test_the_soak_summary_names_every_failing_seed_with_its_replay_command(tmp_path):
    results = [RunResult(seed, True, 20.0 + seed) for seed in range(1, 10)]
    folder = tmp_path / "soak" / "soak-seed-10" / "two_peers"
    results.append(RunResult(10, False, 40.0, "AssertionError: boom\nmore", folder))
    text = summary(results)
    assert text.splitlines()[:2] == [
        "pass rate 9/10 = 90.0 % (95 % CI 59.6–98.2 %, Wilson)",  # noqa: RUF001 (a range)
        "duration p50 25.0s, p95 40.0s",
    ]
    assert "  seed 10: AssertionError: boom" in text
    assert text.endswith(f"    peerlab replay {folder}")


# ---- a real failing run, replayed ----


def test_a_replay_must_draw_the_same_plan_when_both_runs_recorded_one():
    plan = {"sends": [[[0.1, "text"], [0.5, "edit"]]], "faults": [{"kind": "shape", "at": 1.2}]}
    moved = {**plan, "faults": [{"kind": "shape", "at": 0.7}]}
    assert compare_plans(plan, plan) == (
        True, "the same 2 messages and faults (shape at 1.2s)",
    )  # fmt: skip
    assert compare_plans(plan, moved)[0] is False
    assert compare_plans(None, plan)[0] is True  # a Python plan records none


def test_the_plan_is_read_back_from_the_history_past_damaged_lines(tmp_path):
    plan = {"sends": [], "faults": []}
    entries = [
        "not json",
        json.dumps({"process": "nemesis", "f": "shape", "value": {}}),
        json.dumps({"process": "generator", "type": "info", "f": "plan", "value": plan}),
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(entries) + "\n")
    assert recorded_plan(tmp_path) == plan
    assert recorded_plan(tmp_path / "nothing-here") is None


def test_a_plugin_test_is_rerun_with_its_seed_and_profile_option(tmp_path):
    record = {"node": "tests/test_chat.py::test_chat[4g]", "profile_option": "lan,4g"}
    command = rerun_command(record, 9, tmp_path)
    assert command[1:4] == ["-m", "pytest", "tests/test_chat.py::test_chat[4g]"]
    assert command[-6:] == [
        "--peerlab-seed", "9", "--peerlab-results", str(tmp_path), "--peerlab-profile", "lan,4g",
    ]  # fmt: skip
    assert "--peerlab-profile" not in rerun_command({**record, "profile_option": None}, 9, tmp_path)


def test_object_addresses_do_not_make_two_failures_differ():
    assert normalize("assert 3 == 99 where <Counters object at 0x7f3a2b1c>") == normalize(
        "assert 3 == 99 where <Counters object at 0x7f99aa00>"
    )


def _peerlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerlab.scenarios.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.containers(stack_s=10)
def test_a_failing_seeded_run_ends_with_its_replay_command_and_the_replay_reproduces_it(
    tmp_path,
):
    run = _peerlab("run", str(FAILING_ON_PURPOSE), "--seed", "7", "--results", str(tmp_path))
    assert run.returncode == 1, run.stderr[-3000:]
    (folder,) = tmp_path.glob("*/failing_on_purpose")
    replay_line = f"replay: peerlab replay {folder}"
    # The live failure line (stderr) and the summary's failure entry both end with it.
    assert run.stderr.rstrip().endswith(replay_line), run.stderr[-1000:]
    summary_entry = run.stdout.split("failing_on_purpose failed: ")[1]
    assert summary_entry.split("\n\n")[0].rstrip().endswith(replay_line), run.stdout
    recorded = bundle.read_bundle(folder)
    assert recorded["seed"] == 7 and recorded["verdict"]["passed"] is False
    assert re.match(
        r"AssertionError: peer1 → peer2: send→ack p95 \d+ ms", recorded["verdict"]["error"]
    )

    replay = _peerlab("replay", str(folder), "--results", str(tmp_path))
    assert replay.returncode == 0, replay.stdout + replay.stderr[-3000:]
    assert "verdict matched: both failed with AssertionError: peer1 → peer2: send→ack p95 # ms" in (
        replay.stdout
    )
    assert "seed 7, 2 peers" in replay.stderr
    # The seed drew the messages, their types and times, and the fault's window: the
    # replay drew and played the same (compared from both runs' histories).
    (replayed,) = (f for f in tmp_path.glob("*/failing_on_purpose") if f != folder)
    drawn = recorded_plan(folder)
    assert drawn == plan_run(load_scenario_spec(FAILING_ON_PURPOSE), 7).record()
    assert recorded_plan(replayed) == drawn
    assert "plan matched: the same 11 messages and faults (shape at 0.223s)" in replay.stdout
    assert drawn != plan_run(load_scenario_spec(FAILING_ON_PURPOSE), 8).record()


FAILING_TEST = """\
import pytest

@pytest.mark.peerlab(peers=2)
async def test_acks_come_back_at_once(lab):
    await lab.connect("peer1", "peer2")
    await lab.send_texts("peer1", "peer2", "c", 3)
    await lab.assert_delivered([("peer1", "peer2")])
    acked = lab.counters.acked
    assert acked == 99, f"{acked} acked, the test wants 99"
"""


@pytest.mark.containers(stack_s=14)
def test_a_failing_plugin_test_ends_with_its_replay_command_and_the_replay_reproduces_it(
    tmp_path,
):
    """The pytest plugin's runs are bundles too: the failure's report ends with the replay
    command, and `peerlab replay` runs the test again with pytest and compares."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_acks.py").write_text(FAILING_TEST)
    (project / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--peerlab-seed", "5",
         "--peerlab-results", str(results)],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    (folder,) = results.glob("*/test_acks_come_back_at_once")
    failure = run.stdout.split("= FAILURES =")[1].split("= short test summary")[0]
    assert failure.rstrip(" =\n").endswith(f"replay: peerlab replay {folder}"), failure
    recorded = bundle.read_bundle(folder)
    assert recorded["scenario"]["kind"] == bundle.PYTEST and recorded["seed"] == 5
    assert recorded["verdict"]["problems"] == [
        "AssertionError: 3 acked, the test wants 99",
        "assert 3 == 99",
    ]

    replay = _peerlab("replay", str(folder), "--results", str(tmp_path / "replays"))
    assert replay.returncode == 0, replay.stdout + replay.stderr[-3000:]
    assert "verdict matched: both failed with AssertionError: # acked, the test wants #" in (
        replay.stdout
    )
    assert "pytest test_acks.py::test_acks_come_back_at_once" in replay.stderr
    assert "seed 5" in replay.stderr
