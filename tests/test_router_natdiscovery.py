"""router/natdiscovery.py on the real outputs of coturn 4.6.1's `turnutils_natdiscovery`,
captured behind the router on this machine (docs/router.md, "Proving the NAT types"):
`docker run --rm --network container:<peer> peerlab/coturn:dev turnutils_natdiscovery -f
10.250.0.11` and, after a fresh NAT state, `... -m 10.250.0.11`."""

from __future__ import annotations

import pytest

from peerlab.router.natdiscovery import answered, behaviour, classify, reflexive_addresses

FULL_CONE_FILTERING = """\

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:50584
0: : IPv4. Local addr: : 0.0.0.0:50584

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3479
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:50584
0: : IPv4. Local addr: : 0.0.0.0:50584

========================================
NAT with Endpoint Independent Filtering!
========================================
"""

FULL_CONE_MAPPING = """\

-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:51148
0: : IPv4. Local addr: : 0.0.0.0:51148

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:51148
0: : IPv4. Local addr: : 0.0.0.0:51148

========================================
NAT with Endpoint Independent Mapping!
========================================
"""

ADDRESS_RESTRICTED_FILTERING = """\

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:54620
0: : IPv4. Local addr: : 0.0.0.0:54620
STUN receive timeout..

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
3: : IPv4. Response origin: : 10.250.0.11:3479
3: : IPv4. Other addr: : 10.250.0.12:3479
3: : IPv4. UDP reflexive addr: 10.250.0.21:54620
3: : IPv4. Local addr: : 0.0.0.0:54620

========================================
NAT with Address Dependent Filtering!
========================================
"""

ADDRESS_RESTRICTED_MAPPING = """\

-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:44450
0: : IPv4. Local addr: : 0.0.0.0:44450

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:44450
0: : IPv4. Local addr: : 0.0.0.0:44450

========================================
NAT with Endpoint Independent Mapping!
========================================
"""

PORT_RESTRICTED_FILTERING = """\

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:46383
0: : IPv4. Local addr: : 0.0.0.0:46383
STUN receive timeout..
STUN receive timeout..

========================================
NAT with Address and Port Dependent Filtering!
========================================
"""

PORT_RESTRICTED_MAPPING = """\

-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:36358
0: : IPv4. Local addr: : 0.0.0.0:36358

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:36358
0: : IPv4. Local addr: : 0.0.0.0:36358

========================================
NAT with Endpoint Independent Mapping!
========================================
"""

SYMMETRIC_FILTERING = """\

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:44066
0: : IPv4. Local addr: : 0.0.0.0:51998
STUN receive timeout..
STUN receive timeout..

========================================
NAT with Address and Port Dependent Filtering!
========================================
"""

SYMMETRIC_MAPPING = """\

-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:34936
0: : IPv4. Local addr: : 0.0.0.0:54071

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.21:53634
0: : IPv4. Local addr: : 0.0.0.0:54071

========================================
RFC 5780 response 3
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 10.250.0.12:3479
0: : IPv4. Other addr: : 10.250.0.12:3478
0: : IPv4. UDP reflexive addr: 10.250.0.21:10195
0: : IPv4. Local addr: : 0.0.0.0:54071

========================================
NAT with Address and Port Dependent Mapping!
========================================
"""

UDP_BLOCKED_FILTERING = """\

-= Filtering Behavior Discovery =-
STUN receive timeout..
"""

UDP_BLOCKED_MAPPING = """\

-= Mapping Behavior Discovery =-
STUN receive timeout..
"""

# turnutils_stunclient 10.250.0.11 from the peer, after POST /rebind.
STUNCLIENT_AFTER_REBIND = """\

========================================
RFC 5780 response 1
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Response origin: : 10.250.0.11:3478
0: : IPv4. Other addr: : 10.250.0.12:3479
0: : IPv4. UDP reflexive addr: 10.250.0.71:58394
"""


@pytest.mark.parametrize(
    ("filtering", "mapping", "expected"),
    [
        (FULL_CONE_FILTERING, FULL_CONE_MAPPING,
         ("endpoint-independent", "endpoint-independent", "full-cone")),
        (ADDRESS_RESTRICTED_FILTERING, ADDRESS_RESTRICTED_MAPPING,
         ("endpoint-independent", "address-dependent", "address-restricted")),
        (PORT_RESTRICTED_FILTERING, PORT_RESTRICTED_MAPPING,
         ("endpoint-independent", "address-and-port-dependent", "port-restricted")),
        (SYMMETRIC_FILTERING, SYMMETRIC_MAPPING,
         ("address-and-port-dependent", "address-and-port-dependent", "symmetric")),
        (UDP_BLOCKED_FILTERING, UDP_BLOCKED_MAPPING, ("unknown", "unknown", "udp-blocked")),
    ],
)  # fmt: skip
def test_each_nat_type_of_the_router_is_recognized(filtering, mapping, expected):
    result = classify(filtering, mapping)
    assert (result["mapping"], result["filtering"], result["nat_type"]) == expected


def test_outputs_swapped_give_no_verdict_of_the_wrong_kind():
    # The filtering test prints no mapping verdict and the other way round.
    assert classify(PORT_RESTRICTED_MAPPING, PORT_RESTRICTED_FILTERING) == {
        "mapping": "unknown",
        "filtering": "unknown",
        "nat_type": "unknown",
    }


def test_both_tests_in_one_run_are_read_from_one_text():
    both = FULL_CONE_MAPPING + FULL_CONE_FILTERING
    assert classify(both, both)["nat_type"] == "full-cone"


def test_a_known_mapping_with_no_filtering_verdict_is_unknown():
    result = classify(UDP_BLOCKED_FILTERING, PORT_RESTRICTED_MAPPING)
    assert result == {
        "mapping": "endpoint-independent",
        "filtering": "unknown",
        "nat_type": "unknown",
    }


def test_no_nat_line_means_no_router():
    output = "\n-= Mapping Behavior Discovery =-\nNo NAT! (Endpoint Independent Mapping)\n"
    assert classify(FULL_CONE_FILTERING, output)["nat_type"] == "none"


def test_empty_output_is_unknown_not_blocked():
    # A crashed client says nothing: that is not proof that UDP is blocked.
    assert classify("", "")["nat_type"] == "unknown"


def test_answered_and_behaviour():
    assert answered(SYMMETRIC_MAPPING)
    assert not answered(UDP_BLOCKED_MAPPING)
    assert behaviour(SYMMETRIC_MAPPING, "Mapping") == "address-and-port-dependent"
    assert behaviour(SYMMETRIC_MAPPING, "Filtering") == "unknown"


def test_reflexive_addresses_show_the_mapping_and_the_rebind():
    # A symmetric NAT maps one local port to a new port per destination.
    assert len(set(reflexive_addresses(SYMMETRIC_MAPPING))) == 3
    assert len(set(reflexive_addresses(PORT_RESTRICTED_MAPPING))) == 1
    assert reflexive_addresses(STUNCLIENT_AFTER_REBIND) == ["10.250.0.71:58394"]
