"""Token bucket (signaling.ratelimit); time is passed in, no clock."""

import pytest

from peerlab.signaling.ratelimit import TokenBucket


def test_burst_then_refill_at_rate():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.05)  # half a token
    assert bucket.allow(0.1)
    assert not bucket.allow(0.1)


def test_refill_is_capped_at_burst():
    bucket = TokenBucket(rate=100, burst=2, now=0.0)
    assert [bucket.allow(1000.0) for _ in range(3)] == [True, True, False]


def test_clock_going_backwards_does_not_add_tokens():
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert not bucket.allow(5.5)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_rejects_nonsense_settings(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)
