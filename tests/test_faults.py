"""The fault vocabulary refuses what cannot be applied before it touches anything: the
message names the setting and says why. (A stand-in lab: these checks do no I/O.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from peerlab.scenarios import faults as faults_module
from peerlab.scenarios.fault_proof import FaultNotApplied
from peerlab.scenarios.faults import Fault, FaultError, Faults
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


class _CuttingRouter:
    """A router's client that records what the partition asks of it, in order."""

    def __init__(self, steps: list[str], dropped: int | list[int]):
        self.steps = steps
        self.readings = dropped if isinstance(dropped, list) else [dropped]

    async def add_partition(self, address: str, direction: str) -> dict:
        self.steps.append(f"cut {address} {direction}")
        return {"id": "p1"}

    async def counters(self) -> dict:
        self.steps.append("counted")
        dropped = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        if dropped is None:
            raise RuntimeError("the router did not answer")
        return {"partitions": {"p1": {"dropped": {"up": dropped}}}}

    async def remove_partition(self, partition_id: str) -> None:
        self.steps.append("healed")


def _partitioning(
    faults: Faults, monkeypatch, steps: list[str], dropped: int | list[int | None] | None
) -> None:
    """`faults` with a router that cuts, a history, and probes and waits that take no time."""
    lab = faults._lab
    lab.routers = {lab.topology.lan_of("peer1").name: _CuttingRouter(steps, dropped)}
    lab.history = SimpleNamespace(record=lambda *args, **kwargs: None)
    lab.progress = lambda line: None

    async def address(peer):
        return "10.77.0.130"

    lab.containers = SimpleNamespace(address=address)

    async def no_baselines(peers):
        steps.append("baselines")

    async def untouched(fault, peers):
        return "peer1 untouched"

    real_sleep = asyncio.sleep

    async def no_wait(seconds):
        await real_sleep(0)

    monkeypatch.setattr(faults, "_take_baselines", no_baselines)
    monkeypatch.setattr(faults, "_untouched", untouched)
    monkeypatch.setattr("peerlab.scenarios.faults.asyncio.sleep", no_wait)


async def test_what_runs_during_a_partition_starts_once_the_cut_is_in_place(faults, monkeypatch):
    steps: list[str] = []
    _partitioning(faults, monkeypatch, steps, dropped=3)

    async def send() -> None:
        steps.append("sent")

    fault = await faults.partition("peer1", "peer2", direction="b->a", during=send)
    # Right after the cut, before the proof counts what it dropped.
    assert steps[:4] == ["baselines", steps[1], "sent", "counted"], steps
    assert steps[1].startswith("cut 10.77.0.130 "), steps  # peer2, seen from peer1's router
    assert fault.proof == "peer1/peer2: 3 packets dropped in 0.0 s; peer1 untouched"


async def test_a_partitions_proof_reads_the_rule_until_it_has_dropped_something(
    faults, monkeypatch
):
    steps: list[str] = []
    _partitioning(faults, monkeypatch, steps, dropped=[0, 0, 2])
    fault = await faults.partition("peer1", "peer2")
    assert steps.count("counted") == 3, steps
    assert fault.proof.startswith("peer1/peer2: 2 packets dropped in "), fault.proof


async def test_a_partition_of_a_relayed_link_reads_nothing_dropped_for_the_whole_proof(
    faults, monkeypatch
):
    steps: list[str] = []
    _partitioning(faults, monkeypatch, steps, dropped=0)
    monkeypatch.setattr("peerlab.scenarios.faults.PARTITION_PROOF_S", 0.05)
    fault = await faults.partition("peer1", "peer2")
    assert steps.count("counted") > 1, steps
    assert fault.proof.startswith("peer1/peer2: 0 packets dropped in "), fault.proof


async def test_a_partition_whose_proof_fails_cancels_what_runs_during_it(faults, monkeypatch):
    steps: list[str] = []
    _partitioning(faults, monkeypatch, steps, dropped=None)
    never = asyncio.Event()
    beside: list[asyncio.Task] = []

    async def wait_forever() -> None:
        beside.append(asyncio.current_task())
        await never.wait()

    with pytest.raises(RuntimeError, match="did not answer"):
        await faults.partition("peer1", "peer2", during=wait_forever)
    await asyncio.sleep(0)
    assert beside and beside[0].cancelled()


def _counting(counts: list[int]):
    """A partition whose rule reports these drop counts, one per reading, then the last."""
    readings = iter(counts)

    async def drops() -> int:
        nonlocal last
        last = next(readings, last)
        return last

    last = 0
    return Fault("partition", "peer1/peer2", {}, _drops=drops)


async def test_a_cut_is_drained_once_its_drops_stop_for_the_quiet_time():
    faults = Faults(SimpleNamespace())
    assert await faults.drained(_counting([3, 5, 6, 6]), quiet_s=0.25) == 6
    with pytest.raises(FaultError, match="shape peer1 is not a partition"):
        await faults.drained(Fault("shape", "peer1", {}))


async def test_a_cut_that_keeps_dropping_is_not_drained(monkeypatch):
    monkeypatch.setattr(faults_module, "DRAINED_TIMEOUT_S", 0.3)
    with pytest.raises(FaultNotApplied, match=r"still dropping packets after 0\.3 s"):
        await Faults(SimpleNamespace()).drained(_counting(list(range(1, 100))), quiet_s=0.25)


def test_the_round_trip_the_shaping_adds_counts_both_links_both_ways(faults):
    assert faults.added_round_trip_s("peer1", "peer2") == 0.0  # nothing shaped yet
    satellite = {"delay_ms": 300, "jitter_ms": 10}
    faults._shaped["peer1-lan"] = {"up": satellite, "down": satellite}
    assert faults.added_round_trip_s("peer1", "peer2") == pytest.approx(0.62)  # peer2: none
    assert faults.added_round_trip_s("peer2", "peer1") == pytest.approx(0.62)
