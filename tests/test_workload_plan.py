"""What a declarative scenario's seed decides (scenarios/workload_plan.py): pure, no
Docker."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from peerlab.scenarios.scenario_spec import load_scenario_spec
from peerlab.scenarios.workload_plan import plan_run

SEEDED = """\
description: a seeded workload and timeline
peers: 2
topology: {peers: {peer1: {nat: port-restricted}}}
workload:
  - {from: peer1, to: peer2, types: [text, edit, reaction], rate: 5, duration: 20s,
     arrivals: poisson, pick: random}
  - {from: peer2, to: peer1, types: [text, typing], rate: 2, start: 1s, duration: 3s}
faults:
  - at: [2s, 8s]
    for: [1s, 3s]
    partition: {between: [peer1, peer2]}
  - at: 10s
    for: 2s
    shape: {peer: peer1, delay_ms: 50}
"""


def spec(tmp_path: Path, text: str = SEEDED):
    path = tmp_path / "seeded.yaml"
    path.write_text(textwrap.dedent(text))
    return load_scenario_spec(path)


def test_the_same_seed_draws_the_same_plan_and_another_seed_another(tmp_path):
    seeded = spec(tmp_path)
    assert plan_run(seeded, 7) == plan_run(seeded, 7)
    assert plan_run(seeded, 7).record() == plan_run(seeded, 7).record()
    other = plan_run(seeded, 8)
    assert other.sends[0] != plan_run(seeded, 7).sends[0]
    assert other.faults[0].at != plan_run(seeded, 7).faults[0].at


def test_even_arrivals_cycle_their_types_one_every_1_over_rate(tmp_path):
    sends = plan_run(spec(tmp_path), 7).sends[1]
    assert [(s.at, s.kind) for s in sends] == [
        (1.0, "text"), (1.5, "typing"), (2.0, "text"), (2.5, "typing"), (3.0, "text"),
        (3.5, "typing"),
    ]  # fmt: skip
    # Nothing random in it: every seed sends the same.
    assert plan_run(spec(tmp_path), 1).sends[1] == sends


def test_poisson_arrivals_stay_in_the_stream_and_average_the_rate(tmp_path):
    counts = []
    for seed in range(1, 21):
        sends = plan_run(spec(tmp_path), seed).sends[0]
        times = [s.at for s in sends]
        assert times == sorted(times) and all(0 < t < 20 for t in times)
        assert {s.kind for s in sends} <= {"text", "edit", "reaction"}
        counts.append(len(sends))
    # 5/s for 20 s: 100 expected per run; over 20 runs the mean is within a few percent.
    assert 95 <= sum(counts) / len(counts) <= 105
    assert len(set(counts)) > 1  # the count itself is drawn
    # Random picks reach every type.
    assert {s.kind for s in plan_run(spec(tmp_path), 1).sends[0]} == {"text", "edit", "reaction"}


def test_windows_are_drawn_inside_and_fixed_times_stay_fixed(tmp_path):
    for seed in range(1, 51):
        partition, shape = plan_run(spec(tmp_path), seed).faults
        assert 2 <= partition.at <= 8 and 1 <= partition.duration <= 3
        assert (shape.at, shape.duration) == (10.0, 2.0)


def test_adding_a_stream_or_changing_another_fault_moves_nothing_else(tmp_path):
    seeded = spec(tmp_path)
    before = plan_run(seeded, 3)
    extra = dataclasses.replace(seeded.workload[1], conversation="more")
    longer = dataclasses.replace(
        seeded,
        workload=(*seeded.workload, extra),
        faults=(seeded.faults[0], dataclasses.replace(seeded.faults[1], at=(9.0, 11.0))),
    )
    after = plan_run(longer, 3)
    assert after.sends[:2] == before.sends
    assert after.faults[0] == before.faults[0]
