"""The per-client bounds of the signaling server as pure logic, without sockets or clocks.

:class:`Outbox` (a client's outbound queue, bounded in frames and bytes) and
:class:`ConnectionLimits` (open connections overall and per address, pending
handshakes).
"""

from __future__ import annotations

import pytest

from peerlab.signaling.limits import ADDRESS_FULL, SERVER_FULL, ConnectionLimits, address_key
from peerlab.signaling.outbox import Outbox

# Outbox.


def test_outbox_is_bounded_in_bytes_before_frames():
    outbox = Outbox(max_frames=1024, max_bytes=150_000)
    offer = "x" * 60_000
    assert outbox.push(offer) and outbox.push(offer)
    assert not outbox.push(offer)  # 180 KB > 150 KB although only 2 of 1024 frames
    assert (len(outbox), outbox.bytes) == (2, 120_000)
    assert outbox.push("y" * 30_000)  # exactly at the bound
    assert not outbox.push("z")
    assert outbox.bytes == 150_000


def test_outbox_is_bounded_in_frames():
    outbox = Outbox(max_frames=3, max_bytes=10**9)
    assert [outbox.push("f") for _ in range(4)] == [True, True, True, False]


def test_outbox_pops_in_order_and_gives_the_bytes_back():
    outbox = Outbox(max_frames=10, max_bytes=10)
    for text in ("aaaa", "bbb", "cc"):
        assert outbox.push(text)
    assert not outbox.push("dddd")
    assert outbox.pop() == "aaaa"
    assert outbox.bytes == 5
    assert outbox.push("dddd")
    assert [outbox.pop(), outbox.pop(), outbox.pop(), outbox.pop()] == ["bbb", "cc", "dddd", None]
    assert (len(outbox), outbox.bytes) == (0, 0)


def test_outbox_clear_drops_every_frame():
    outbox = Outbox(max_frames=10, max_bytes=100)
    outbox.push("a" * 60)
    outbox.push("b" * 40)
    outbox.clear()
    assert (len(outbox), outbox.bytes, outbox.pop()) == (0, 0, None)
    assert outbox.push("c" * 100)  # the whole budget is back


@pytest.mark.parametrize(("frames", "size"), [(0, 1), (1, 0)])
def test_outbox_rejects_nonsense_bounds(frames, size):
    with pytest.raises(ValueError):
        Outbox(max_frames=frames, max_bytes=size)


# ConnectionLimits.


def test_open_connections_are_capped_overall():
    limits = ConnectionLimits(max_connections=3, max_per_address=10, max_handshakes=10)
    slots = [limits.accept(f"10.0.0.{i}") for i in range(5)]
    assert all(slots)
    assert [slot.admit() for slot in slots] == [None, None, None, SERVER_FULL, SERVER_FULL]
    assert (limits.open, limits.pending) == (3, 0)
    slots[0].release()
    again = limits.accept("10.0.0.9")
    assert again is not None and again.admit() is None


def test_open_connections_are_capped_per_address():
    limits = ConnectionLimits(max_connections=10, max_per_address=2, max_handshakes=10)
    slots, refusals = [], []
    for _ in range(3):  # one handshake at a time
        slot = limits.accept("192.0.2.1")
        assert slot is not None
        slots.append(slot)
        refusals.append(slot.admit())
    assert refusals == [None, None, ADDRESS_FULL]
    other = limits.accept("192.0.2.2")
    assert other is not None and other.admit() is None  # other addresses are not affected
    slots[1].release()
    again = limits.accept("192.0.2.1")
    assert again is not None and again.admit() is None


def test_pending_handshakes_are_capped_overall_and_per_address():
    limits = ConnectionLimits(max_connections=10, max_per_address=2, max_handshakes=3)
    first, second = limits.accept("a"), limits.accept("a")
    assert first and second
    assert limits.accept("a") is None  # the address's pending handshakes
    assert limits.accept("b") is not None
    assert limits.accept("c") is None  # every pending handshake
    assert first.admit() is None  # an answered handshake frees its pending place
    assert limits.accept("c") is not None
    assert (limits.open, limits.pending) == (1, 3)


def test_release_is_idempotent_and_counts_go_back_to_zero():
    limits = ConnectionLimits(max_connections=2, max_per_address=2, max_handshakes=2)
    pending, opened = limits.accept("a"), limits.accept("a")
    assert pending and opened
    assert opened.admit() is None
    refused = limits.accept("a")
    assert refused is not None
    opened.release()
    opened.release()
    assert limits.open == 0  # not -1
    assert refused.admit() is None
    refused.release()
    pending.release()
    pending.release()
    assert (limits.open, limits.pending) == (0, 0)
    # No address is remembered once its connections are gone (the tables stay small).
    assert limits._open == {} and limits._pending == {}


def test_a_refused_connection_no_longer_counts():
    limits = ConnectionLimits(max_connections=1, max_per_address=5, max_handshakes=5)
    opened, refused = limits.accept("a"), limits.accept("a")
    assert opened and refused
    assert opened.admit() is None
    assert refused.admit() == SERVER_FULL
    refused.release()
    assert (limits.open, limits.pending) == (1, 0)
    with pytest.raises(RuntimeError):
        refused.admit()


@pytest.mark.parametrize("bounds", [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_connection_limits_reject_nonsense_bounds(bounds):
    with pytest.raises(ValueError):
        ConnectionLimits(*bounds)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # same /64, same key
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped: the IPv4 address
        ("/run/signaling.sock", "/run/signaling.sock"),
    ],
)
def test_addresses_are_counted_by_ipv4_address_or_ipv6_slash_64(host, key):
    assert address_key(host) == key
