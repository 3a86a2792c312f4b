"""Pure parts of the network lab's proofs: what a fault should show on a STUN round trip,
and the NAT matrix theory."""

from __future__ import annotations

import random

import pytest

from peerlab.router.shaper import LinkFaults, LinkShaper
from peerlab.scenarios.fault_proof import (
    Effect,
    FaultNotApplied,
    expected_effect,
    judge,
    judge_firewalled,
    judge_untouched,
    link_loss,
    loss_floor,
)
from peerlab.scenarios.faults import PROOF_INTERVAL, PROOF_PROBES
from peerlab.scenarios.nat_check import NatMismatch, judge_hairpin
from peerlab.scenarios.nat_matrix import (
    Row,
    expected_outcome,
    matrix_pairs,
    matrix_peers,
    matrix_topology,
    measured_route,
    without_turn,
)
from peerlab.scenarios.probe import ProbeResult
from peerlab.scenarios.profiles import load_profile, shipped_profiles
from peerlab.scenarios.topology import parse_topology


def probe(p50, lost=0, sent=200, duplicates=0, reordered=0, fastest=None):
    fastest = p50 if fastest is None else fastest
    return ProbeResult(
        "peer1", sent, sent - lost, lost, duplicates, reordered, p50, p50, None, fastest
    )


def test_expected_effect_adds_delays_and_compounds_losses():
    effect = expected_effect({"delay_ms": 100, "loss": 0.2}, {"delay_ms": 50, "loss": 0.2})
    assert effect.delay_ms == 150
    assert effect.loss == pytest.approx(0.36)
    assert link_loss({"gilbert_elliott": {"p": 0.1, "r": 0.3}}) == pytest.approx(0.25)


def test_judge_passes_a_visible_delay_and_fails_a_missing_one():
    asked = expected_effect({"delay_ms": 100, "jitter_ms": 20}, {})
    assert "took effect" in judge("peer1's up link", asked, probe(1.0), probe(99.0))
    with pytest.raises(FaultNotApplied) as caught:
        judge("peer1's up link", asked, probe(1.0), probe(4.0))
    assert "asked for +100 ms ± 20, but measured +3.0 ms" in str(caught.value)


def test_judge_checks_loss_against_a_binomial_tolerance():
    asked = expected_effect({"loss": 0.2}, {"loss": 0.2})
    judge("l", asked, probe(1.0), probe(1.0, lost=75))
    with pytest.raises(FaultNotApplied, match=r"measured 1\.0% loss"):
        judge("l", asked, probe(1.0), probe(1.0, lost=2))


def test_a_small_loss_must_show_in_the_probe_unless_bursty_or_duplicated():
    # 10 % asked on one link: 207 probes losing none cannot be it (seen accepted before).
    asked = expected_effect({"loss": 0.1}, {})
    with pytest.raises(FaultNotApplied, match=r"measured 0\.0% loss"):
        judge("l", asked, probe(1.0), probe(1.0, lost=0, sent=207))
    judge("l", asked, probe(1.0), probe(1.0, lost=12, sent=207))  # 5.8 %: 3.3 sd below
    # Too few probes to tell 1 % from nothing: no floor then.
    judge("l", expected_effect({"loss": 0.01}, {}), probe(1.0), probe(1.0, lost=0, sent=40))
    bursty = {"gilbert_elliott": {"p": 0.01, "r": 0.1, "loss_bad": 1.0}}
    judge("l", expected_effect(bursty, {}), probe(1.0), probe(1.0, lost=0, sent=207))
    twins = expected_effect({"loss": 0.1, "duplicate": 0.5}, {})
    judge("l", twins, probe(1.0), probe(1.0, lost=0, sent=207, duplicates=100))


def test_the_loss_floor_rarely_fails_a_shaper_that_drops_what_was_asked():
    rng = random.Random(5)
    for loss in (0.02, 0.1, 0.19, 0.36):
        asked = Effect(loss=loss)
        floor = loss_floor(asked, 200)
        failed = sum(
            sum(rng.random() < loss for _ in range(200)) / 200 < floor for _ in range(2000)
        )
        assert failed <= 2, (loss, failed)  # four standard deviations: about 1 in 30,000


def test_untouched_peer_must_keep_its_round_trip():
    judge_untouched("peer2", probe(1.0), probe(3.0, sent=40), "shape peer1")
    with pytest.raises(FaultNotApplied, match="touched peer2, which it should not"):
        judge_untouched("peer2", probe(1.0), probe(101.0, sent=40), "shape peer1")


def test_untouched_is_judged_on_the_fastest_round_trip():
    # A busy CPU delays some of the probe's packets: the median moves, the fastest not.
    line = judge_untouched("peer2", probe(0.1), probe(28.3, sent=40, fastest=0.2), "partition")
    assert line.startswith("peer2 untouched (+0.1 ms fastest; STUN min 0.1 → 0.2 ms, p50 0.1")
    # A delay on the path delays every packet: the fastest grows by as much.
    with pytest.raises(FaultNotApplied) as caught:
        judge_untouched("peer2", probe(0.1), probe(20.5, sent=40, fastest=19.8), "shape peer1")
    assert "STUN min 0.1 → 19.8 ms, p50 0.1 ms → 20.5 ms, lost 0/40" in str(caught.value)
    with pytest.raises(FaultNotApplied, match="lost 5/40"):
        judge_untouched("peer2", probe(0.1), probe(0.1, sent=40, lost=5), "partition")


@pytest.mark.parametrize(
    ("a", "b", "turn", "expected"),
    [
        ("none", "none", False, "host"),
        ("none", "symmetric", False, "srflx"),
        ("port-restricted", "port-restricted", False, "srflx"),
        ("symmetric", "address-restricted", False, "srflx"),
        ("symmetric", "port-restricted", False, "-"),
        ("symmetric", "symmetric", False, "-"),
        ("symmetric", "symmetric", True, "relay"),
        ("udp-blocked", "none", False, "-"),
        ("udp-blocked", "full-cone", True, "relay"),
        ("full-cone", "symmetric", True, "srflx"),
    ],
)
def test_nat_theory(a, b, turn, expected):
    assert str(expected_outcome(a, b, turn=turn)) == expected
    assert str(expected_outcome(b, a, turn=turn)) == expected


def test_the_matrix_covers_every_pair_of_types_once():
    peers = matrix_peers()
    pairs = matrix_pairs(peers)
    assert len(pairs) == 21
    kinds = {tuple(sorted((peers[a], peers[b]))) for a, b in pairs}
    assert len(kinds) == 21
    assert all(a != b for a, b in pairs)


def test_measured_route_reads_both_ends():
    host = {"type": "host"}
    assert str(measured_route([None, None])) == "-"
    assert str(measured_route([{"local": host, "remote": host}] * 2)) == "host"
    prflx = {"local": host, "remote": {"type": "prflx"}}
    assert str(measured_route([prflx, {"local": host, "remote": host}])) == "srflx"
    relay = {"local": {"type": "relay"}, "remote": host}
    assert str(measured_route([relay, prflx])) == "relay"


def test_a_relay_is_accepted_only_where_turn_was_offered_and_a_path_exists():
    relay = measured_route([{"local": {"type": "relay"}, "remote": {"type": "host"}}] * 2)
    direct = expected_outcome("full-cone", "symmetric", turn=True)
    assert Row("full-cone", "symmetric", True, direct, relay, "").matches
    no_turn = expected_outcome("full-cone", "symmetric", turn=False)
    assert not Row("full-cone", "symmetric", False, no_turn, relay, "").matches
    missing = measured_route([None, None])
    assert not Row("full-cone", "symmetric", True, direct, missing, "").matches


# ---- hairpinning: the matrix's settings and the probe's judge ----


def test_the_matrix_proves_hairpinning_on_and_off_for_every_udp_nat_type():
    placement = matrix_topology(matrix_peers())["peers"]
    settings: dict[str, list[bool]] = {}
    for where in placement.values():
        if where != "internet":
            settings.setdefault(where["nat"], []).append(where["hairpin"])
    assert settings.pop("udp-blocked") == [False, False]
    assert settings and all(sorted(v) == [False, True] for v in settings.values()), settings


HAIRPINNED = {
    "hairpin": True,
    "echoed": True,
    "target": "10.7.0.21:4000",
    "source_seen": "10.7.0.21:4001",
    "sender_mapped": "10.7.0.21:4001",
    "sent": 2,
}


def test_hairpin_proof_lines_for_what_was_asked():
    line = judge_hairpin("peer1", True, "port-restricted", HAIRPINNED)
    assert line.startswith("peer1: hairpinning on confirmed") and "10.7.0.21:4001" in line
    off = {**HAIRPINNED, "hairpin": False, "echoed": False, "source_seen": None}
    assert judge_hairpin("peer1", False, "symmetric", off).startswith(
        "peer1: hairpinning off confirmed (nothing sent to 10.7.0.21:4000 arrived, 2 tries)"
    )
    # Symmetric: a fresh mapping for the hairpinned flow, same external address.
    symmetric = {**HAIRPINNED, "source_seen": "10.7.0.21:5999"}
    assert "on confirmed" in judge_hairpin("peer1", True, "symmetric", symmetric)


@pytest.mark.parametrize(
    ("asked", "nat", "changes", "complaint"),
    [
        (False, "port-restricted", {}, "asked not to hairpin, but a packet to its own external"),
        (True, "port-restricted", {"hairpin": False}, "nothing sent to 10.7.0.21:4000 arrived"),
        (True, "symmetric", {"source_seen": "10.7.1.10:4001"}, "not from the external address"),
        (True, "full-cone", {"source_seen": "10.7.0.21:5999"}, "not from the sender's mapping"),
        (True, "port-restricted", {"echoed": False}, "the answer sent there never came back"),
        (True, "port-restricted", {"hairpin": None, "error": "no STUN"}, "could not start"),
    ],
)
def test_hairpin_proof_fails_naming_what_was_asked_and_seen(asked, nat, changes, complaint):
    with pytest.raises(NatMismatch) as caught:
        judge_hairpin("peer1", asked, nat, {**HAIRPINNED, **changes})
    assert complaint in str(caught.value)


def test_untouched_allows_the_jitter_and_loss_of_the_peers_own_link_and_no_more():
    three_g = expected_effect(load_profile("3g").up, load_profile("3g").down)  # ± 20 each way
    jittered = probe(70.0, sent=40, fastest=34.0 + 40.0)
    judge_untouched("peer1", probe(40.0, fastest=34.0), jittered, "partition", three_g)
    with pytest.raises(FaultNotApplied, match=r"limits \+15 ms and 10% lost"):
        judge_untouched("peer1", probe(40.0, fastest=34.0), jittered, "partition")
    with pytest.raises(FaultNotApplied, match=r"limits \+55 ms"):
        leak = probe(100.0, sent=40, fastest=34.0 + 56.0)
        judge_untouched("peer1", probe(40.0, fastest=34.0), leak, "partition", three_g)
    lossy = expected_effect(load_profile("lossy").up, load_profile("lossy").down)  # 19 %
    judge_untouched("peer1", probe(20.0), probe(20.0, sent=40, lost=8), "partition", lossy)
    with pytest.raises(FaultNotApplied, match="its STUN probe got no answer"):
        judge_untouched("peer1", probe(20.0), probe(None, sent=40, lost=40), "partition", lossy)
    with pytest.raises(FaultNotApplied, match="lost 20/40"):
        judge_untouched("peer1", probe(20.0), probe(20.0, sent=40, lost=20), "partition", lossy)


def _probe_through(up: LinkShaper, down: LinkShaper, start: float, count: int) -> ProbeResult:
    """A STUN probe's round trips through a router's two shapers: requests every
    PROOF_INTERVAL from `start`, answers at once."""
    rtts = []
    for number in range(count):
        sent = start + number * PROOF_INTERVAL
        request = up.on_packet(sent, 62)
        answer = down.on_packet(request[0], 74) if request else []
        if answer:
            rtts.append((answer[0] - sent) * 1000)
    fastest = min(rtts) if rtts else None
    return ProbeResult(
        "peer1", count, len(rtts), count - len(rtts), 0, 0, fastest, None, None, fastest
    )


@pytest.mark.parametrize("name", shipped_profiles())
def test_a_profiles_own_jitter_and_loss_never_read_as_a_touched_bystander(name):
    # A bystander behind a profile's link, nothing else touching it: the baseline as the
    # lab takes it (PROOF_PROBES), then the untouched check's 40 probes, through the
    # shaper itself, seeded. With a bare 15 ms and 10 %, `3g` failed 14 % of these
    # and `lossy` 90 %.
    profile = load_profile(name)
    up, down = LinkFaults.from_json(profile.up), LinkFaults.from_json(profile.down)
    own = expected_effect(profile.up, profile.down)
    rng = random.Random(name)
    for _ in range(300):
        up_shaper = LinkShaper(up, rng.randrange(1 << 30))
        down_shaper = LinkShaper(down, rng.randrange(1 << 30))
        baseline = _probe_through(up_shaper, down_shaper, 0.0, PROOF_PROBES)
        now = _probe_through(up_shaper, down_shaper, 5.0, 40)
        judge_untouched("peer1", baseline, now, "partition", own)


def test_without_turn_names_the_pairs_theory_says_cannot_connect_directly():
    topology = parse_topology(
        {
            "lans": {"home": {"nat": "symmetric"}},
            "peers": {"peer1": "home", "peer2": "home", "peer3": {"nat": "port-restricted"}},
        },
        ["peer1", "peer2", "peer3", "peer4"],
    )
    assert without_turn(topology, "peer1", "peer2") is None  # one LAN: host candidates
    assert without_turn(topology, "peer1", "peer4") is None  # peer4 on the internet
    assert without_turn(topology, "peer3", "peer4") is None
    assert without_turn(topology, "peer1", "peer3") == (
        "peer1 (symmetric) and peer3 (port-restricted) cannot connect without a TURN relay "
        "(RFC 4787; the NAT table in docs/stack.md)"
    )


def test_a_firewalled_link_is_judged_by_the_shapers_own_counts_of_the_up_direction():
    lossy = {"delay_ms": 10, "loss": 0.1, "reorder": 0.05, "reorder_gap_ms": 20}
    counted = {"seen": 207, "dropped": 19, "delayed": 188, "reordered": 9}
    line = judge_firewalled("peer11's link", lossy, 200, counted)
    assert line == (
        "peer11's link: up took effect by the shaper's own counts — the up shaper saw 207 "
        "packets for 200 requests, dropped 19; delayed 188; dropped 9.2% (expected 10.0% ± "
        "11.3%); reordered 9; down not measured (no UDP answer crosses a UDP-blocking "
        "firewall)"
    )
    for change, problem in (
        ({"seen": 150, "dropped": 15, "delayed": 135}, "only 150 of 200 requests reached"),
        ({"delayed": 0}, "188 packets left undelayed"),
        ({"dropped": 60, "delayed": 147}, "dropped 29.0%"),
        ({"reordered": 0}, "nothing reordered"),
    ):
        with pytest.raises(FaultNotApplied, match=problem):
            judge_firewalled("peer11's link", lossy, 200, {**counted, **change})
