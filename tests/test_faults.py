"""The fault vocabulary refuses what cannot be applied before it touches anything: the
message names the setting and says why. (A stand-in lab: these checks do no I/O.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from peerlab.scenarios.faults import FaultError, Faults
from peerlab.scenarios.topology import parse_topology

PEERS = ["peer1", "peer2"]


@pytest.fixture
def faults() -> Faults:
    topology = parse_topology({"peers": {"peer1": {"nat": "port-restricted"}}}, PEERS)
    return Faults(SimpleNamespace(peers=PEERS, topology=topology))


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (
            "peer1",
            {"loss": 1.5},
            "shape peer1: loss: expected a probability between 0 and 1, got 1.5",
        ),
        ("peer1", {"delay_ms": -5}, "shape peer1: delay_ms"),
        ("peer1", {"trace": "no-such-trace"}, "no trace 'no-such-trace'"),
        ("peer1", {"latency": 5}, "latency"),
        ("peer2", {"loss": 0.1}, "shape peer2: it sits on the internet with no router"),
        ("peer9", {"loss": 0.1}, "shape 'peer9': not a peer of this run"),
        ("signaling", {"loss": 0.1}, "['loss'] cannot be applied by Toxiproxy, which proxies TCP"),
        ("signaling", {}, "shape signaling: no fault given"),
        ("signaling", {"delay_ms": -1}, "shape signaling: delay_ms: expected a number >= 0"),
        ("turn_tcp", {"rate_kbit": 0}, "shape turn_tcp: rate_kbit: expected a rate > 0"),
    ],
)
async def test_bad_faults_are_refused_naming_the_setting(faults, target, options, message):
    with pytest.raises(FaultError) as caught:
        await faults.shape(target, "both", **options)
    assert message in str(caught.value)


async def test_unknown_direction_and_partition_without_a_router(faults):
    with pytest.raises(FaultError, match="direction 'sideways'"):
        await faults.shape("peer1", "sideways", loss=0.1)
    lone = Faults(SimpleNamespace(peers=PEERS, topology=parse_topology(None, PEERS)))
    with pytest.raises(FaultError, match="neither peer sits behind a router"):
        await lone.partition("peer1", "peer2")
    with pytest.raises(FaultError, match="flap: down_s and up_s must be positive"):
        await faults.flap("peer1", "peer2", down_s=0, up_s=1, cycles=1)


async def test_a_profiles_links_are_refused_before_anything_is_touched(faults):
    with pytest.raises(FaultError, match="shape_links peer1: nothing to apply"):
        await faults.shape_links(["peer1"], {}, {})
    with pytest.raises(FaultError, match="shape peer1: loss: expected a probability"):
        await faults.shape_links(["peer1"], {"loss": 2}, {})
    with pytest.raises(FaultError, match="shape peer2: it sits on the internet with no router"):
        await faults.shape_links(["peer1", "peer2"], {"delay_ms": 5}, {})
