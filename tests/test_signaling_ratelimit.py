"""Token bucket and log throttle (signaling.ratelimit); time is passed in, no clock."""

import pytest

from peerlab.signaling.ratelimit import LogThrottle, TokenBucket


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


# LogThrottle: one line per kind per interval, with the count of the suppressed ones.


def test_log_throttle_lets_one_line_per_interval_and_counts_the_rest():
    throttle = LogThrottle(interval=10)
    assert throttle.allow("EMFILE", 0.0) == 0
    assert [throttle.allow("EMFILE", t) for t in (0.0, 1.0, 9.9)] == [None, None, None]
    assert throttle.allow("EMFILE", 10.0) == 3  # the three above, reported once
    assert throttle.allow("EMFILE", 10.5) is None
    assert throttle.allow("EMFILE", 25.0) == 1


def test_log_throttle_kinds_are_independent():
    throttle = LogThrottle(interval=10)
    assert throttle.allow("EMFILE", 0.0) == 0
    assert throttle.allow("ECONNRESET", 0.0) == 0
    assert throttle.allow("EMFILE", 1.0) is None
    assert throttle.allow("ECONNRESET", 1.0) is None
    assert throttle.allow("ECONNRESET", 2.0) is None
    assert throttle.drain() == {"EMFILE": 1, "ECONNRESET": 2}
    assert throttle.drain() == {}
    assert throttle.allow("EMFILE", 10.0) == 0  # drained counts are not reported twice


def test_log_throttle_clock_going_backwards_lets_a_line_through():
    throttle = LogThrottle(interval=10)
    assert throttle.allow("k", 100.0) == 0
    assert throttle.allow("k", 50.0) == 0


def test_log_throttle_zero_interval_lets_everything_through():
    throttle = LogThrottle(interval=0)
    assert [throttle.allow("k", 1.0) for _ in range(3)] == [0, 0, 0]


def test_log_throttle_rejects_a_negative_interval():
    with pytest.raises(ValueError):
        LogThrottle(interval=-1)
