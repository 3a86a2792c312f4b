"""Tests for router/shaper.py (the link model), the trace files and their generator, the
pure parts of router/nfqueue.py (trace loading, the netem translation) and its verdict
timing, run against a stand-in for the NetfilterQueue library.

Statistical checks use a fixed seed or many packets and bounds of several standard
deviations, so they are deterministic or fail with negligible probability. Property tests
drive the shaper with arrival schedules drawn by hypothesis and check what must hold for
every schedule: order, bounds, conservation of packets.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import socket
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.router import nfqueue
from peerlab.router.nfqueue import TRACE_DIR, load_trace, netem_args
from peerlab.router.shaper import (
    OPPORTUNITY_BYTES,
    GilbertElliott,
    LinkFaults,
    LinkShaper,
    Trace,
    parse_trace,
)

ROOT = Path(__file__).resolve().parent.parent


def shaper(seed: int = 1, **faults) -> LinkShaper:
    return LinkShaper(LinkFaults.from_json(faults, load_trace=load_trace), seed)


def run(link: LinkShaper, arrivals, size: int = 1000) -> list[list[float]]:
    return [link.on_packet(t, size) for t in arrivals]


def delivered(releases: list[list[float]]) -> list[float]:
    return [r[0] for r in releases if r]


arrival_gaps = st.lists(st.floats(0, 0.05, allow_nan=False), min_size=1, max_size=200)


def times(gaps: list[float]) -> list[float]:
    result, now = [], 0.0
    for gap in gaps:
        now += gap
        result.append(now)
    return result


# ---- LinkFaults validation ----


def test_every_field_round_trips_through_json():
    obj = {
        "gilbert_elliott": {"p": 0.1, "r": 0.5, "loss_good": 0.01, "loss_bad": 0.9},
        "delay_ms": 100,
        "jitter_ms": 20,
        "reorder": 0.1,
        "reorder_gap_ms": 30,
        "duplicate": 0.05,
        "queue_packets": 50,
        "trace": "constant-12mbps",
    }
    faults = LinkFaults.from_json(obj, load_trace=load_trace)
    assert faults.trace.period_ms == 1000
    assert faults.to_json() == obj
    assert LinkFaults.from_json(faults.to_json(), load_trace=load_trace) == faults


def test_empty_object_is_no_fault_and_defaults_are_not_echoed():
    assert LinkFaults.from_json({}) == LinkFaults()
    assert LinkFaults.from_json({"reorder_gap_ms": 20, "queue_packets": 100}).to_json() == {}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "faults: expected a JSON object, got an array"),
        ({"los": 0.1}, "unknown field 'los': expected one of loss, gilbert_elliott"),
        ({"loss": 1.5}, "loss: expected a probability between 0 and 1, got 1.5"),
        ({"loss": True}, "loss: expected a probability between 0 and 1, got True"),
        ({"duplicate": "0.1"}, "duplicate: expected a probability between 0 and 1, got '0.1'"),
        ({"delay_ms": -1}, "delay_ms: expected a number >= 0, got -1"),
        ({"delay_ms": math.inf}, "delay_ms: expected a number >= 0, got inf"),
        ({"delay_ms": 10, "jitter_ms": 20}, r"jitter_ms: expected at most delay_ms \(10\), got 20"),
        ({"rate_kbit": 0}, r"rate_kbit: expected a number > 0 \(kbit/s\), got 0"),
        ({"queue_packets": 0}, "queue_packets: expected an integer >= 1, got 0"),
        ({"queue_packets": 10.5}, "queue_packets: expected an integer >= 1, got 10.5"),
        ({"gilbert_elliott": 0.1}, "gilbert_elliott: expected an object with p, r"),
        ({"gilbert_elliott": {"p": 0.1}}, "gilbert_elliott.r: expected a probability, got nothing"),
        (
            {"gilbert_elliott": {"p": 0.1, "r": 0.2, "k": 1}},
            "unknown field 'gilbert_elliott.k': expected one of p, r, loss_good, loss_bad",
        ),
        ({"gilbert_elliott": {"p": 2, "r": 0.2}}, "gilbert_elliott.p: expected a probability"),
        (
            {"loss": 0.1, "gilbert_elliott": {"p": 0.1, "r": 0.2}},
            "loss and gilbert_elliott: expected one loss model, got both",
        ),
        (
            {"rate_kbit": 256, "trace": "constant-12mbps"},
            "rate_kbit and trace: expected one link capacity, got both",
        ),
        ({"trace": ""}, "trace: expected a trace name or absolute path, got ''"),
        ({"trace": "nope"}, "trace: no trace 'nope': expected one of cellular-3g-bursty, "),
        ({"trace": "../x"}, "trace: expected the name of a trace in router/traces/"),
    ],
)
def test_invalid_faults_are_rejected_naming_field_value_and_expectation(obj, message):
    with pytest.raises(ValueError, match=message):
        LinkFaults.from_json(obj, load_trace=load_trace)


def test_a_malformed_trace_file_is_rejected_naming_its_line(tmp_path):
    path = tmp_path / "bad.trace"
    path.write_text("1\n2\nthree\n")
    with pytest.raises(ValueError, match=r"trace '.*bad.trace' line 3: expected a timestamp"):
        LinkFaults.from_json({"trace": str(path)}, load_trace=load_trace)


def test_traces_load_by_name_with_or_without_suffix_and_by_absolute_path():
    by_name = load_trace("cellular-3g-bursty")
    assert load_trace("cellular-3g-bursty.trace").times_ms == by_name.times_ms
    assert load_trace(str(TRACE_DIR / "cellular-3g-bursty.trace")).times_ms == by_name.times_ms


# ---- trace parsing ----


def test_parse_trace_keeps_repeated_timestamps():
    assert parse_trace("1\n1\n3\n5\n", "t") == Trace("t", (1, 1, 3, 5))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected at least one timestamp, got an empty file"),
        ("1\n\n2\n", "line 2: expected a timestamp in milliseconds"),
        ("1\n2.5\n", r"line 2: expected a timestamp .*got '2.5'"),
        ("1\n-3\n", "line 2: expected a timestamp"),
        ("1\n5\n4\n", "line 3: timestamp 4 is earlier than the previous line's 5"),
        ("0\n0\n", "the last timestamp is the loop period and must be > 0"),
    ],
)
def test_parse_trace_rejects_malformed_files(text, message):
    with pytest.raises(ValueError, match=message):
        parse_trace(text, "t")


# ---- the shaper: loss ----


def test_no_faults_releases_every_packet_at_once():
    link = shaper()
    assert run(link, [0.0, 0.5, 0.5, 2.0]) == [[0.0], [0.5], [0.5], [2.0]]
    assert (link.counters.seen, link.counters.delayed, link.counters.dropped) == (4, 0, 0)


@settings(max_examples=30, deadline=None)
@given(st.floats(0, 1), st.integers(0, 2**32))
def test_random_loss_rate_is_within_five_sigma(loss, seed):
    n = 4000
    link = shaper(seed, loss=loss)
    lost = sum(1 for r in run(link, range(n)) if not r)
    assert abs(lost / n - loss) <= 5 * math.sqrt(loss * (1 - loss) / n) + 1e-9
    assert link.counters.dropped == lost


def test_gilbert_elliott_mean_burst_and_loss_fraction():
    p, r = 0.05, 0.25
    link = shaper(3, gilbert_elliott={"p": p, "r": r})
    outcome = [bool(x) for x in run(link, range(200_000))]
    bursts, length = [], 0
    for ok in outcome:
        if not ok:
            length += 1
        elif length:
            bursts.append(length)
            length = 0
    assert sum(bursts) / len(bursts) == pytest.approx(1 / r, rel=0.05)  # mean burst 1/r
    assert outcome.count(False) / len(outcome) == pytest.approx(p / (p + r), rel=0.05)


def test_gilbert_elliott_state_loss_probabilities_apply():
    # Never leaving the good state: only loss_good applies.
    link = shaper(4, gilbert_elliott={"p": 0, "r": 1, "loss_good": 0.1})
    lost = sum(1 for x in run(link, range(20_000)) if not x)
    assert lost / 20_000 == pytest.approx(0.1, abs=0.01)


# ---- the shaper: delay, jitter, order ----


@given(arrival_gaps, st.floats(0, 500), st.floats(0, 1), st.integers(0, 2**32))
def test_delay_and_jitter_stay_in_bounds_and_keep_order(gaps, delay_ms, jitter_part, seed):
    jitter_ms = delay_ms * jitter_part
    link = shaper(seed, delay_ms=delay_ms, jitter_ms=jitter_ms)
    arrivals = times(gaps)
    releases = delivered(run(link, arrivals))
    low, high = (delay_ms - jitter_ms) / 1000, (delay_ms + jitter_ms) / 1000
    previous = -math.inf
    for arrival, release in zip(arrivals, releases, strict=True):
        assert release >= arrival + low - 1e-9
        # Never later than its own latest draw or the packet before it.
        assert release <= max(arrival + high, previous) + 1e-9
        assert release >= previous  # order preserved
        previous = release


def test_jitter_spreads_uniformly_over_the_window():
    link = shaper(5, delay_ms=100, jitter_ms=20)
    # Arrivals far apart: order preservation never kicks in.
    extra = [r - t for t, r in zip(range(10_000), delivered(run(link, range(10_000))), strict=True)]
    assert min(extra) >= 0.080 and max(extra) <= 0.120
    assert sum(extra) / len(extra) == pytest.approx(0.100, abs=0.001)
    assert sum(1 for e in extra if e < 0.090) / len(extra) == pytest.approx(0.25, abs=0.02)


@given(
    arrival_gaps,
    st.fixed_dictionaries(
        {},
        optional={
            "loss": st.floats(0, 0.5),
            "delay_ms": st.floats(10, 100),
            "jitter_ms": st.floats(0, 10),
            "duplicate": st.floats(0, 1),
            "rate_kbit": st.floats(8, 10_000),
            "queue_packets": st.integers(1, 20),
        },
    ),
    st.integers(0, 2**32),
    st.integers(40, 3000),
)
def test_without_reorder_releases_never_go_backwards_and_packets_are_conserved(
    gaps, faults, seed, size
):
    if faults.get("jitter_ms", 0) > faults.get("delay_ms", 0):
        faults["jitter_ms"] = faults.get("delay_ms", 0)
    link = shaper(seed, **faults)
    arrivals = times(gaps)
    releases = run(link, arrivals, size)
    flat = [t for r in releases for t in r]
    assert flat == sorted(flat)
    assert all(t >= a - 1e-9 for a, r in zip(arrivals, releases, strict=True) for t in r)
    counters = link.counters
    kept = sum(1 for r in releases if r)
    assert counters.seen == len(arrivals) == kept + counters.dropped
    assert counters.queue_drops <= counters.dropped
    assert counters.duplicated == sum(1 for r in releases if len(r) == 2)
    assert all(len(r) <= 1 or r[0] == r[1] for r in releases)


def test_reordered_packets_are_held_back_by_the_gap_and_overtaken():
    link = shaper(6, delay_ms=10, reorder=0.25, reorder_gap_ms=20)
    arrivals = [i * 0.001 for i in range(4000)]
    releases = delivered(run(link, arrivals))
    held = [i for i, (a, r) in enumerate(zip(arrivals, releases, strict=True)) if r > a + 0.0101]
    assert len(held) == link.counters.reordered
    assert len(held) / len(arrivals) == pytest.approx(0.25, abs=0.03)
    held_set = set(held)
    for i in held:
        assert releases[i] == pytest.approx(arrivals[i] + 0.030)
        following = next(j for j in range(i + 1, len(releases)) if j not in held_set)
        if following - i < 20:  # it arrives within the gap: it overtakes
            assert releases[following] < releases[i]
    others = [r for i, r in enumerate(releases) if i not in held_set]
    assert others == sorted(others)


# ---- the shaper: rate limit and queue ----


def test_rate_limit_serializes_back_to_back_packets():
    link = shaper(rate_kbit=256)
    releases = delivered(run(link, [0.0, 0.0, 0.0], size=1000))
    assert releases == pytest.approx([0.03125, 0.0625, 0.09375])  # 8000 bits at 256 kbit/s


def test_rate_limit_below_capacity_only_adds_serialization():
    link = shaper(rate_kbit=1000)
    releases = delivered(run(link, [0.0, 0.1, 0.2], size=125))
    assert releases == pytest.approx([0.001, 0.101, 0.201])


def test_rate_limit_throughput_and_queue_drops_under_overload():
    # 800 kbit/s offered for 10 s into a 256 kbit/s link with a 20-packet queue.
    link = shaper(rate_kbit=256, queue_packets=20)
    releases = run(link, [i * 0.01 for i in range(1000)], size=1000)
    sent = delivered(releases)
    in_ten_seconds = sum(1 for t in sent if t <= 10.0)
    assert in_ten_seconds * 8000 / 10 == pytest.approx(256_000, rel=0.01)
    assert link.counters.queue_drops == 1000 - len(sent)
    assert link.counters.queue_drops == pytest.approx(1000 - 320 - 20, abs=2)
    # The queue bounds the delay: the packets ahead plus its own serialization.
    delays = [r[0] - i * 0.01 for i, r in enumerate(releases) if r]
    assert max(delays) <= 21 * 0.03125 + 1e-9


def test_a_burst_beyond_the_queue_is_dropped():
    link = shaper(rate_kbit=256, queue_packets=100)
    releases = run(link, [0.0] * 150, size=1000)
    assert sum(1 for r in releases if r) == 100
    assert link.counters.queue_drops == 50


# ---- the shaper: trace replay ----


def trace_shaper(text: str, **faults) -> LinkShaper:
    trace = parse_trace(text, "t")
    return LinkShaper(LinkFaults(trace=trace, **faults), 1)


def test_trace_opportunities_are_used_in_order_and_loop():
    link = trace_shaper("1\n1\n3\n5\n")  # period 5 ms
    releases = delivered(run(link, [0.0] * 8, size=OPPORTUNITY_BYTES))
    assert releases == pytest.approx([0.001, 0.001, 0.003, 0.005, 0.006, 0.006, 0.008, 0.010])


def test_small_packets_share_an_opportunity_and_large_ones_span_several():
    link = trace_shaper("1\n2\n3\n4\n5\n")
    releases = delivered(run(link, [0.0] * 3, size=500))
    assert releases == pytest.approx([0.001] * 3)
    assert link.on_packet(0.0, 500) == pytest.approx([0.002])
    assert link.on_packet(0.0, 2500) == pytest.approx([0.003])  # 1000 left at 2 ms + 1500 at 3
    assert link.on_packet(0.0, 1501) == pytest.approx([0.005])  # 1500 at 4 ms + 1 at 5


def test_trace_capacity_offered_while_idle_is_lost():
    link = trace_shaper("1\n2\n5\n10\n")
    assert link.on_packet(0.0, 100) == pytest.approx([0.001])
    # At 3.5 ms the opportunities at 1 ms (its unused bytes) and 2 ms are gone.
    assert link.on_packet(0.0035, 100) == pytest.approx([0.005])
    # 12 ms is in the second loop: next opportunity at 10 + 2 ms.
    assert link.on_packet(0.012, 100) == pytest.approx([0.012])


def test_trace_time_starts_at_the_first_packet():
    link = trace_shaper("10\n20\n")
    assert link.on_packet(100.0, 1500) == pytest.approx([100.010])
    assert link.on_packet(100.011, 1500) == pytest.approx([100.020])


def test_constant_trace_delivers_its_rate_and_drops_beyond_the_queue():
    link = LinkShaper(LinkFaults(trace=load_trace("constant-12mbps"), queue_packets=50), 1)
    # 2000 packets/s of 1500 bytes offered for 3 s into 1000 opportunities/s.
    releases = run(link, [i * 0.0005 for i in range(6000)], size=1500)
    sent = delivered(releases)
    assert sum(1 for t in sent if t <= 3.0) == pytest.approx(3000, abs=2)
    assert link.counters.queue_drops == 6000 - len(sent)


@settings(deadline=None, max_examples=50)
@given(arrival_gaps, st.integers(1, 4000))
def test_trace_departures_are_opportunities_in_order(gaps, size):
    trace = load_trace("cellular-3g-bursty")
    link = LinkShaper(LinkFaults(trace=trace, queue_packets=1000), 1)
    arrivals = [5.0 + t for t in times(gaps)]
    releases = delivered(run(link, arrivals, size))
    assert releases == sorted(releases)
    opportunities = set(trace.times_ms)
    for arrival, release in zip(arrivals, releases, strict=True):
        assert release >= arrival - 1e-9
        ms_in_loop = round((release - arrivals[0]) * 1000) % trace.period_ms
        assert ms_in_loop in opportunities or (ms_in_loop == 0 and trace.period_ms in opportunities)


# ---- the shaper: duplication and determinism ----


def test_duplicate_rate_and_copies_leave_with_the_original():
    link = shaper(8, duplicate=0.5, delay_ms=5)
    releases = run(link, range(10_000))
    doubles = [r for r in releases if len(r) == 2]
    assert len(doubles) == link.counters.duplicated
    assert len(doubles) / 10_000 == pytest.approx(0.5, abs=0.03)
    assert all(r[0] == r[1] for r in doubles)


def test_the_seed_fixes_every_decision():
    faults = {"loss": 0.2, "delay_ms": 50, "jitter_ms": 10, "reorder": 0.1, "duplicate": 0.1}
    arrivals = [i * 0.003 for i in range(500)]
    assert run(shaper(9, **faults), arrivals) == run(shaper(9, **faults), arrivals)
    assert run(shaper(9, **faults), arrivals) != run(shaper(10, **faults), arrivals)


# ---- the shipped traces and their generator ----


def test_shipped_traces_are_small_parse_and_are_what_the_generator_makes():
    spec = importlib.util.spec_from_file_location("make_trace", ROOT / "scripts/make-trace.py")
    make_trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_trace)
    shipped = sorted(p.stem for p in TRACE_DIR.glob("*.trace"))
    assert shipped == sorted(make_trace.SHIPPED)
    for name, make in make_trace.SHIPPED.items():
        path = TRACE_DIR / f"{name}.trace"
        assert path.stat().st_size < 100_000
        assert path.read_text() == make_trace.render(make()), f"{name} is not reproducible"
        trace = load_trace(name)
        assert 1000 <= trace.period_ms <= 10_000


def test_generator_rates():
    spec = importlib.util.spec_from_file_location("make_trace", ROOT / "scripts/make-trace.py")
    make_trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_trace)
    assert len(make_trace.constant_trace(12, 1000)) == 1000  # 12 Mbit/s = 1 per ms
    assert len(make_trace.constant_trace(1.2, 1000)) == 100
    outage = make_trace.opportunities([0.0] * 50)
    assert outage == [50]  # only the period marker


# ---- the netem translation ----


@pytest.mark.parametrize(
    ("faults", "args"),
    [
        ({}, ["netem"]),
        ({"delay_ms": 100}, ["netem", "delay", "100ms"]),
        (
            {"delay_ms": 100, "jitter_ms": 20},
            ["netem", "delay", "100ms", "20ms", "rate", "10gbit"],
        ),
        ({"loss": 0.2}, ["netem", "loss", "random", "20%"]),
        (
            {"gilbert_elliott": {"p": 0.05, "r": 0.25, "loss_good": 0.01}},
            ["netem", "loss", "gemodel", "5%", "25%", "100%", "1%"],
        ),
        ({"duplicate": 0.5}, ["netem", "duplicate", "50%"]),
        ({"reorder": 0.25}, ["netem", "delay", "20ms", "reorder", "75%"]),
        (
            {"rate_kbit": 256, "queue_packets": 30, "delay_ms": 40, "jitter_ms": 5},
            ["netem", "limit", "30", "delay", "40ms", "5ms", "rate", "256kbit"],
        ),
    ],
)
def test_netem_args(faults, args):
    assert netem_args(LinkFaults.from_json(faults)) == args


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"trace": "constant-12mbps"}, "trace: netem cannot replay a trace"),
        ({"reorder": 0.1, "delay_ms": 10}, "reorder: netem cannot hold packets back"),
    ],
)
def test_netem_refuses_what_it_cannot_express(faults, message):
    with pytest.raises(ValueError, match=message):
        netem_args(LinkFaults.from_json(faults, load_trace=load_trace))


def test_gilbert_elliott_dataclass_defaults_match_the_contract():
    assert GilbertElliott(0.1, 0.2) == GilbertElliott(0.1, 0.2, loss_good=0.0, loss_bad=1.0)


# ---- router/nfqueue.py's verdict timing, against a stand-in for NetfilterQueue ----


class FakeKernel:
    """What leaves the router, in order, and the packets waiting in each queue."""

    def __init__(self):
        self.wire: list = []
        self.queues: dict[int, FakeNetfilterQueue] = {}


class FakePacket:
    def __init__(self, kernel: FakeKernel, number: int):
        self.kernel, self.id, self.mark = kernel, number, 0

    def get_payload_len(self) -> int:
        return 100

    def get_payload(self) -> bytes:
        return self.id.to_bytes(4, "big")

    def retain(self) -> None:
        pass

    def get_mark(self) -> int:
        return self.mark

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def drop(self) -> None:
        self.kernel.wire.append(("dropped", self.id))

    def accept(self) -> None:
        # Like the kernel: a packet marked for duplication is queued again on its way out.
        duplicates = self.kernel.queues.get(nfqueue.DUPLICATE_QUEUE)
        if self.mark & nfqueue.DUPLICATE_MARK and duplicates is not None:
            self.mark = 0
            duplicates.waiting.append(self)
        else:
            self.kernel.wire.append(self.id)


class FakeNetfilterQueue:
    kernel: FakeKernel

    def bind(self, number, callback, max_len, sock_len):
        self.callback, self.waiting = callback, []
        self._sockets = socket.socketpair()
        self.kernel.queues[number] = self

    def get_fd(self) -> int:
        return self._sockets[0].fileno()

    def run_socket(self, reader) -> None:
        while self.waiting:
            self.callback(self.waiting.pop(0))

    def unbind(self) -> None:
        for s in self._sockets:
            s.close()


class FakeCopies:
    def __init__(self, kernel: FakeKernel):
        self.kernel = kernel

    def send(self, payload: bytes) -> None:
        self.kernel.wire.append(("copy", int.from_bytes(payload, "big")))

    def close(self) -> None:
        pass


@pytest.fixture
def kernel(monkeypatch) -> FakeKernel:
    kernel = FakeKernel()
    FakeNetfilterQueue.kernel = kernel
    monkeypatch.setitem(
        sys.modules, "netfilterqueue", types.SimpleNamespace(NetfilterQueue=FakeNetfilterQueue)
    )
    return kernel


async def test_held_packets_leave_in_order_even_when_released_at_the_same_time(kernel):
    # 300 packets at once with 30 +- 30 ms: the shaper gives most of them the same release
    # time as the packet before (order kept); asyncio alone would run such timers in any order.
    link = LinkShaper(LinkFaults(delay_ms=30, jitter_ms=30), 1)
    queue = nfqueue._ShapedQueue(1, link, nfqueue._IoCounters(), lambda p, c: p.accept())
    for number in range(300):
        queue._queue._queue.callback(FakePacket(kernel, number))
    await asyncio.sleep(0.08)
    assert kernel.wire == list(range(300))
    queue.close()


async def test_closing_releases_held_packets_at_once_in_order(kernel):
    link = LinkShaper(LinkFaults(delay_ms=1000, loss=0.5), 1)
    queue = nfqueue._ShapedQueue(1, link, nfqueue._IoCounters(), lambda p, c: p.accept())
    for number in range(20):
        queue._queue._queue.callback(FakePacket(kernel, number))
    assert all(isinstance(w, tuple) for w in kernel.wire)  # only the drops so far
    queue.close()
    accepted = [w for w in kernel.wire if isinstance(w, int)]
    dropped = [w[1] for w in kernel.wire if isinstance(w, tuple)]
    assert accepted == sorted(accepted)
    assert sorted(accepted + dropped) == list(range(20))


async def test_an_up_copy_follows_its_original_before_the_next_packet(kernel):
    io = nfqueue._IoCounters()
    duplicates = nfqueue._DuplicateQueue(FakeCopies(kernel), io)
    link = LinkShaper(LinkFaults(duplicate=0.5), 2)
    queue = nfqueue._ShapedQueue(1, link, io, duplicates.release)
    for number in range(50):
        queue._queue._queue.callback(FakePacket(kernel, number))
    copied = [n for n in range(50) if ("copy", n) in kernel.wire]
    assert len(copied) == link.counters.duplicated > 0
    expected = [x for n in range(50) for x in ([n, ("copy", n)] if n in copied else [n])]
    assert kernel.wire == expected
    queue.close()
    duplicates.close()
