"""The full mesh's route check (scenarios/plans/full_mesh.py): neighbours on one LAN must
talk over their LAN addresses, and a peer outside must see a LAN peer at the NAT's public
address (or through a relay). Pure: candidate pairs as the agents report them."""

from __future__ import annotations

from peerlab.scenarios.plans.full_mesh import route_problem

LAN, PUBLIC = "10.9.1.", "10.9.0.21"


def end(local: tuple[str, str], remote: tuple[str, str]) -> dict:
    return {
        "local": {"type": local[0], "address": local[1]},
        "remote": {"type": remote[0], "address": remote[1]},
    }


def test_neighbours_over_their_lan_pass_and_over_the_nat_fail():
    lan = {"peer1": end(("host", "10.9.1.10"), ("host", "10.9.1.11"))}
    lan["peer2"] = end(("host", "10.9.1.11"), ("host", "10.9.1.10"))
    assert route_problem(LAN, PUBLIC, "peer1", "peer2", lan) is None
    hairpinned = {**lan, "peer2": end(("host", "10.9.1.11"), ("srflx", PUBLIC))}
    problem = route_problem(LAN, PUBLIC, "peer1", "peer2", hairpinned)
    assert problem is not None and "not on their LAN addresses" in problem


def test_a_peer_outside_must_see_the_nats_public_address_or_a_relay():
    inside = end(("host", "10.9.1.10"), ("host", "10.9.0.100"))
    via_nat = {"peer1": inside, "peer3": end(("host", "10.9.0.100"), ("prflx", PUBLIC))}
    assert route_problem(LAN, PUBLIC, "peer1", "peer3", via_nat) is None
    relayed = {"peer1": inside, "peer3": end(("relay", "10.9.0.11"), ("host", "10.9.0.11"))}
    assert route_problem(LAN, PUBLIC, "peer1", "peer3", relayed) is None
    bypassed = {"peer1": inside, "peer3": end(("host", "10.9.0.100"), ("host", "10.9.1.10"))}
    problem = route_problem(LAN, PUBLIC, "peer1", "peer3", bypassed)
    assert problem == "peer3 sees peer1 at 10.9.1.10, not at the NAT's public address 10.9.0.21"


def test_a_link_end_without_a_pair_is_a_problem():
    ends = {"peer2": None, "peer3": end(("host", "10.9.0.100"), ("prflx", PUBLIC))}
    assert route_problem(LAN, PUBLIC, "peer2", "peer3", ends) == "peer2 reports no nominated pair"
