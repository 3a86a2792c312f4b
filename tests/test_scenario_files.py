"""Declarative scenarios and network profiles without containers: the YAML files are
read against their JSON Schemas (scenarios/spec_files.py), every error names the file,
line and field; scenario_spec.py turns a file into its spec; profiles.py and catalog.py
find what a user names; `peerlab run` refuses a bad file before starting anything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from peerlab.scenarios import catalog
from peerlab.scenarios.cli import longest_first, main
from peerlab.scenarios.declarative import check_placement
from peerlab.scenarios.profiles import load_profile, shipped_profiles
from peerlab.scenarios.scenario_spec import load_scenario_spec
from peerlab.scenarios.spec_files import SpecError, duration
from peerlab.scenarios.topology import parse_topology

REPO_ROOT = Path(__file__).parent.parent
EXAMPLES = REPO_ROOT / "examples" / "scenarios"
GOOD = """\
description: two peers chat
peers: 2
workload:
  - {from: peer1, to: peer2, types: [text, edit], rate: 4, duration: 5s}
  - {from: peer2, to: peer1, start: 1s, duration: 2500ms}
faults:
  - at: 2s
    for: 1s
    shape: {peer: peer1, direction: up, loss: 0.1, delay_ms: 20}
expect: {ack_p95_below: 300ms, settle: 1m}
topology: {peers: {peer1: {nat: port-restricted}}}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file_becomes_its_spec(tmp_path):
    spec = load_scenario_spec(write(tmp_path, GOOD, "chat.yaml"))
    assert (spec.name, spec.peers, spec.end, spec.connect) == (
        "chat", 2, 5.0, (("peer1", "peer2"),),
    )  # fmt: skip
    first, second = spec.workload
    assert (first.types, first.rate, first.arrivals, first.pick) == (
        ("text", "edit"), 4.0, "even", "cycle",
    )  # fmt: skip
    assert (second.start, second.duration, second.conversation) == (1.0, 2.5, "peer2-peer1")
    (fault,) = spec.faults
    assert (fault.at, fault.duration, fault.kind, fault.line) == (
        (2.0, 2.0),
        (1.0, 1.0),
        "shape",
        7,
    )
    assert fault.args == {"peer": "peer1", "direction": "up",
                          "link": {"loss": 0.1, "delay_ms": 20}}  # fmt: skip
    assert (spec.expect.ack_p95_below, spec.expect.settle, spec.expect.all_delivered) == (
        0.3, 60.0, True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("peers: 2", "peers: 2\ncolour: blue"), "s.yaml:3: colour: unknown key; expected one of"),
        (("to: peer2, types", "to: peer3, types"), "s.yaml:4: workload[0].to: 'peer3' is not"),
        (("duration: 5s", "duration: -5s"), "s.yaml:4: workload[0].duration: expected a duration"),
        (("at: 2s", "at: 6s"), "s.yaml:7: faults[0].at: 6s is not before the workload's end (5s)"),
        (("loss: 0.1", "loss: 1.5"), "s.yaml:9: faults[0].shape: loss: expected a probability"),
        (("direction: up", "direction: sideways"), "faults[0].shape.direction: expected one of up"),
        (("for: 1s", "for: 1s\n    rebind: peer1"), "faults[0]: expected exactly one fault kind"),
        (("nat: port-restricted", "nat: cone"), "s.yaml:11: topology.peers.peer1.nat: expected"),
        (("rate: 4", "rate: 0"), "workload[0].rate: 0 is less than or equal to the minimum"),
        (("at: 2s", "at: [1s, 5s]"), "s.yaml:7: faults[0].at: 5s is not before the workload's end"),
        (("at: 2s", "at: [3s, 1s]"), "s.yaml:7: faults[0].at: [3s, 1s]: earliest after latest"),
        (("for: 1s", "for: [0s, 1s]"), "s.yaml:8: faults[0].for: must be longer than 0"),
        (("at: 2s", "at: [1s]"), "s.yaml:7: faults[0].at: expected"),
        (("rate: 4,", "rate: 4, arrivals: bursty,"), "workload[0].arrivals: expected one of"),
        (("300ms,", "300ms, reconnect_within: 2s,"), "reconnect_within: is measured per partition"),
        (("description: two peers chat\n", ""), "s.yaml:1: (top level): 'description' is required"),
    ],
)  # fmt: skip
def test_a_bad_file_names_file_line_field_and_what_was_expected(tmp_path, change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(SpecError) as caught:
        load_scenario_spec(write(tmp_path, text))
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path))


def test_not_yaml_at_all_says_where(tmp_path):
    with pytest.raises(SpecError, match=r"s\.yaml:2: not valid YAML"):
        load_scenario_spec(write(tmp_path, "description: x\npeers: 2: 3\nworkload: []\n"))


def test_durations():
    assert [duration(v) for v in (3, 0.5, "250ms", "2s", "1.5m")] == [3, 0.5, 0.25, 2, 90]


def test_faults_needing_a_router_are_checked_against_the_topology_with_the_profile(tmp_path):
    on_the_internet = GOOD.replace("topology: {peers: {peer1: {nat: port-restricted}}}\n", "")
    spec = load_scenario_spec(write(tmp_path, on_the_internet))
    peers = ["peer1", "peer2"]
    with pytest.raises(SpecError, match=r"s\.yaml:7: faults\[0\]: shape needs peer1 behind"):
        check_placement(spec, parse_topology(None, peers))
    wifi = load_profile("wifi")
    check_placement(spec, parse_topology(wifi.topology(None, peers), peers))


def test_links_without_turn_are_checked_against_the_nats_of_the_profile(tmp_path, capsys):
    no_turn = write(tmp_path, GOOD + "turn: false\n")
    spec = load_scenario_spec(no_turn)
    peers = ["peer1", "peer2"]
    check_placement(spec, parse_topology(load_profile("4g").topology(spec.topology, peers), peers))
    three_g = load_profile("3g").topology(spec.topology, peers)  # peer2 behind a symmetric NAT
    with pytest.raises(SpecError) as refused:
        check_placement(spec, parse_topology(three_g, peers))
    assert str(refused.value) == (
        f"{no_turn}: turn: false, but in this topology (with the profile) peer1 "
        "(port-restricted) and peer2 (symmetric) cannot connect without a TURN relay "
        "(RFC 4787; the NAT table in docs/stack.md): allow TURN, or place them behind NATs "
        "that connect directly"
    )
    with_turn = load_scenario_spec(write(tmp_path, GOOD, "turn.yaml"))
    check_placement(with_turn, parse_topology(three_g, peers))
    with pytest.raises(SystemExit) as exited:
        main(["run", str(no_turn), "--profile", "wifi,3g", "--results", str(tmp_path / "r")])
    assert exited.value.code == 2
    assert "peer2 (symmetric) cannot connect without a TURN relay" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_every_shipped_profile_loads_and_says_its_figures():
    names = shipped_profiles()
    expected = {"lan", "wifi", "4g", "3g", "satellite", "lossy", "flapping", "corporate", "cgnat"}
    assert expected <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.description, name
        if profile.up:
            assert str(profile.up["delay_ms"]) in profile.description, name
    assert load_profile("corporate").nat == "udp-blocked"
    assert load_profile("cgnat").nat == "symmetric"
    assert load_profile("flapping").flap == {"down": 1.0, "up": 4.0}


def test_a_profile_places_the_peers_the_scenario_leaves_alone():
    fourg = load_profile("4g")
    topology = fourg.topology({"peers": {"peer1": {"nat": "symmetric"}}}, ["peer1", "peer2"])
    assert topology == {"peers": {"peer1": {"nat": "symmetric"},
                                  "peer2": {"nat": "port-restricted"}}}  # fmt: skip
    assert load_profile("lan").topology(None, ["peer1"]) == {}


def test_a_bad_profile_file_is_named(tmp_path):
    path = write(tmp_path, "description: x\nnat: none\nup: {delay_ms: 5}\n", "mine.yaml")
    with pytest.raises(SpecError, match=r"mine\.yaml:2: nat: a peer with NAT 'none'"):
        load_profile(str(path))
    path = write(tmp_path, "description: x\nnat: symmetric\ndown: {delay_ms: -5}\n", "neg.yaml")
    with pytest.raises(SpecError, match=r"neg\.yaml:3: down: delay_ms"):
        load_profile(str(path))
    with pytest.raises(SpecError, match="no such shipped profile; shipped: 3g, 4g"):
        load_profile("moon")


def test_catalog_finds_built_in_and_files_anywhere(tmp_path):
    built_in = catalog.built_in()
    assert built_in["two_peers"].origin == "built-in" and built_in["two_peers"].kind == "python"
    yaml_example = catalog.load(str(EXAMPLES / "chat_through_a_cut.yaml"))
    python_example = catalog.load(str(EXAMPLES / "every_message_type.py"))
    assert (yaml_example.kind, yaml_example.peers) == ("yaml", 3)
    assert (python_example.kind, python_example.peers) == ("python", 2)
    assert python_example.topology == {"peers": {"peer2": {"nat": "symmetric"}}}
    # A user's module named like one of PeerLab's does not shadow it.
    plan = write(
        tmp_path, '"""A plan."""\nPEERS = 2\nasync def run(lab):\n    pass\n', "scenarios.py"
    )
    assert catalog.load(str(plan)).name == "scenarios"
    broken = write(tmp_path, "PEERS = 'two'\n", "broken.py")
    with pytest.raises(SpecError, match=r"needs a docstring, PEERS .*, async def run"):
        catalog.load(str(broken))
    with pytest.raises(SpecError, match="no built-in scenario 'nope'"):
        catalog.load("nope")


def test_peerlab_run_refuses_a_bad_file_before_starting_anything(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace("peer2, types", "peer9, types"))
    with pytest.raises(SystemExit) as exited:
        main(["run", str(bad), "--results", str(tmp_path / "results")])
    assert exited.value.code == 2
    assert "workload[0].to: 'peer9' is not a peer" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_longest_cases_start_first_and_ties_keep_their_order():
    built_in = catalog.built_in()
    cases = [(built_in[name], None) for name in ("two_peers", "nat_matrix", "full_mesh")]
    cases.append((built_in["two_peers"], load_profile("4g")))  # two peers, two routers
    cases.append((built_in["receiver_restart"], None))
    cases.append((built_in["two_peers"], None))
    # nat_matrix: 41 s of body, 12 peers and their routers; receiver_restart: a 12 s
    # workload and 2 peers (16 s); two_peers@4g: 2 peers, 2 routers (12 s); full_mesh 3
    # peers, 1 router (10 s); two_peers 2 (4 s), twice, in the listed order.
    assert longest_first(cases, None) == [1, 4, 3, 2, 0, 5]
    # --peers 4 makes the two-peer cases four-peer ones: two_peers@4g 4 + 4 routers.
    assert longest_first(cases, 4)[:3] == [1, 3, 4]


def test_a_plans_body_estimate_is_read_and_a_bad_one_refused(tmp_path):
    plan = '"""A plan."""\nPEERS = 2\nBODY_S = {}\nasync def run(lab):\n    pass\n'
    assert catalog.load(str(write(tmp_path, plan.format(25), "long.py"))).body_s == 25.0
    assert catalog.load(str(write(tmp_path, plan.replace("BODY_S = {}\n", ""), "x.py"))).body_s == 0
    for bad in ("-1", "'soon'", "True"):
        with pytest.raises(SpecError, match="needs BODY_S, if given, a number of seconds >= 0"):
            catalog.load(str(write(tmp_path, plan.format(bad), "bad.py")))


def test_peerlab_list_into_a_reader_that_stops_early_is_not_an_error():
    """`peerlab list | head -1`: the pipe closes under the list, which is no traceback.
    Here the reader is gone before the first line, so every write meets the closed pipe."""
    lister = subprocess.Popen(
        [sys.executable, "-m", "peerlab.scenarios.cli", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lister.stdout.close()
    stderr = lister.stderr.read().decode()
    assert lister.wait() == 0 and stderr == "", stderr


def test_the_docs_explain_every_key_the_schema_accepts():
    """docs/scenarios.md is the YAML format's reference: every key of the schema (top
    level, streams, faults, fault kinds, expectations) is named there."""
    schema = json.loads((REPO_ROOT / "scenarios" / "schemas" / "scenario.schema.json").read_text())
    keys: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    docs = (REPO_ROOT / "docs" / "scenarios.md").read_text()
    missing = sorted(key for key in keys if f"`{key}`" not in docs and f"{key}:" not in docs)
    assert not missing, f"docs/scenarios.md does not name {missing}"
