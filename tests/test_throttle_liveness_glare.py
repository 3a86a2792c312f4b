"""Tests for the small pure rules: typing throttle, heartbeat liveness, offer glare."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.peer.liveness import Liveness
from peerlab.peer.protocol import TypingState
from peerlab.peer.state import wins_glare
from peerlab.peer.throttle import TypingThrottle

STARTED, STOPPED = TypingState.STARTED, TypingState.STOPPED


# ---- typing throttle ----


def test_first_indicator_passes():
    throttle = TypingThrottle()
    assert throttle.offer("c", STARTED, 100.0)
    assert throttle.next_deadline() is None
    assert throttle.due(200.0) == []


def test_repeats_within_the_window_are_dropped():
    throttle = TypingThrottle()
    assert throttle.offer("c", STARTED, 0.0)
    assert not throttle.offer("c", STARTED, 1.0)
    assert not throttle.offer("c", STARTED, 2.99)
    assert throttle.next_deadline() is None  # nothing deferred
    assert throttle.due(10.0) == []
    assert throttle.offer("c", STARTED, 3.0)  # a new window: sent again


def test_stop_within_the_window_is_deferred_to_the_window_end():
    throttle = TypingThrottle()
    throttle.offer("c", STARTED, 10.0)
    assert not throttle.offer("c", STOPPED, 11.0)
    assert throttle.next_deadline() == 13.0
    assert throttle.due(12.99) == []
    assert throttle.due(13.0) == [("c", STOPPED)]
    assert throttle.due(20.0) == []  # delivered once
    assert throttle.next_deadline() is None


def test_deferred_indicator_opens_a_new_window():
    throttle = TypingThrottle()
    throttle.offer("c", STARTED, 0.0)
    throttle.offer("c", STOPPED, 1.0)
    assert throttle.due(3.5) == [("c", STOPPED)]  # counts as sent at 3.5
    assert not throttle.offer("c", STARTED, 6.0)  # within 3.5 + 3
    assert throttle.next_deadline() == 6.5
    assert throttle.due(6.5) == [("c", STARTED)]


def test_latest_pending_state_wins():
    throttle = TypingThrottle()
    throttle.offer("c", STOPPED, 0.0)
    throttle.offer("c", STARTED, 0.5)
    throttle.offer("c", STOPPED, 1.0)
    throttle.offer("c", STARTED, 1.5)
    assert throttle.due(3.0) == [("c", STARTED)]


def test_same_state_as_last_sent_clears_pending():
    throttle = TypingThrottle()
    throttle.offer("c", STARTED, 0.0)
    throttle.offer("c", STOPPED, 1.0)  # pending ...
    throttle.offer("c", STARTED, 2.0)  # ... back to what the remote already shows
    assert throttle.next_deadline() is None
    assert throttle.due(3.0) == []


def test_conversations_have_independent_windows():
    throttle = TypingThrottle()
    assert throttle.offer("a", STARTED, 0.0)
    assert throttle.offer("b", STARTED, 1.0)
    assert not throttle.offer("a", STOPPED, 2.0)
    assert not throttle.offer("b", STOPPED, 2.0)
    assert throttle.next_deadline() == 3.0
    assert throttle.due(3.0) == [("a", STOPPED)]
    assert throttle.due(4.0) == [("b", STOPPED)]


def test_due_at_next_deadline_returns_the_deferred_indicator():
    """Bug: `next_deadline()` is `last_sent_at + window`, but `due` tests
    `now - last_sent_at >= window`; in floats (3.453 + 3.0) - 3.453 < 3.0, so a caller
    that wakes at the deadline gets nothing and must poll again."""
    throttle = TypingThrottle()
    throttle.offer("c", STARTED, 3.453)
    throttle.offer("c", STOPPED, 3.453)
    assert throttle.due(throttle.next_deadline()) == [("c", STOPPED)]


def test_window_is_configurable():
    throttle = TypingThrottle(window=0.5)
    assert throttle.offer("c", STARTED, 0.0)
    assert not throttle.offer("c", STARTED, 0.49)
    assert throttle.offer("c", STARTED, 0.5)
    assert not throttle.offer("c", STOPPED, 0.6)
    assert throttle.due(1.0) == [("c", STOPPED)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from([STARTED, STOPPED]),
            st.floats(min_value=0, max_value=2, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_at_most_one_indicator_per_window_and_the_last_state_arrives(offers):
    """Whatever the typing pattern: sends per conversation are >= window apart, and once
    the user stops, the remote ends up showing the state the user last offered."""
    throttle, now, window = TypingThrottle(), 0.0, 3.0
    sent: dict[str, list[tuple[float, TypingState]]] = {"a": [], "b": []}
    wanted: dict[str, TypingState] = {}
    for conversation, state, gap in offers:
        now += gap
        for due_conversation, due_state in throttle.due(now):
            sent[due_conversation].append((now, due_state))
        wanted[conversation] = state
        if throttle.offer(conversation, state, now):
            sent[conversation].append((now, state))
    now += 2 * window  # clear of the float rounding in `now - last_sent_at >= window`
    for due_conversation, due_state in throttle.due(now):
        sent[due_conversation].append((now, due_state))
    for conversation, history in sent.items():
        times = [t for t, _ in history]
        # In the throttle's own arithmetic (`last + window`, as its deadline is computed):
        # `b - a` can round to just under the window when `b >= a + window` holds.
        assert all(b >= a + window for a, b in itertools.pairwise(times))
        if conversation in wanted:
            assert history[-1][1] == wanted[conversation]


# ---- liveness ----


def test_heartbeat_due_after_an_interval_of_silence():
    liveness = Liveness(now=100.0)
    assert not liveness.heartbeat_due(100.49)
    assert liveness.heartbeat_due(100.5)
    liveness.on_sent(100.5)
    assert not liveness.heartbeat_due(100.9)
    assert liveness.heartbeat_due(101.0)


def test_any_sent_frame_postpones_the_heartbeat():
    liveness = Liveness(now=0.0)
    for t in (0.3, 0.6, 0.9):
        liveness.on_sent(t)
        assert not liveness.heartbeat_due(t + 0.49)


def test_dead_after_timeout_without_received_frames():
    liveness = Liveness(now=0.0)
    liveness.on_sent(2.0)  # sending does not prove the remote is alive
    assert liveness.alive(2.49)
    assert not liveness.alive(2.5)


def test_any_received_frame_keeps_the_link_alive():
    liveness = Liveness(now=0.0)
    for t in range(1, 20):
        liveness.on_received(t * 2.0)
        assert liveness.alive(t * 2.0 + 2.49)
    liveness.on_received(40.0)
    assert not liveness.alive(42.5)
    liveness.on_received(43.0)  # comes back
    assert liveness.alive(43.0)


def test_liveness_is_configurable_and_checked():
    liveness = Liveness(now=0.0, interval=0.1, timeout=0.3)
    assert liveness.heartbeat_due(0.1)
    assert not liveness.alive(0.3)
    for interval, timeout in [(0, 1), (-1, 1), (1, 1), (2, 1)]:
        with pytest.raises(ValueError):
            Liveness(now=0.0, interval=interval, timeout=timeout)


def test_defaults_report_a_dead_link_within_three_seconds():
    liveness = Liveness(now=0.0)
    assert liveness.interval == 0.5 and liveness.timeout == 2.5
    assert liveness.timeout + liveness.interval <= 3.0


# ---- glare ----

peer_ids = st.text(alphabet=string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(peer_ids, peer_ids)
def test_exactly_one_side_wins_glare(a, b):
    if a == b:
        return
    assert wins_glare(a, b) != wins_glare(b, a)


@settings(max_examples=100, deadline=None)
@given(peer_ids, peer_ids)
def test_glare_winner_is_the_bytewise_smaller_id(a, b):
    if a != b:
        assert wins_glare(a, b) == (a.encode() < b.encode())


def test_glare_examples():
    assert wins_glare("alice", "bob")
    assert not wins_glare("bob", "alice")
    assert wins_glare("Zed", "alice")  # byte order: uppercase sorts before lowercase
    assert wins_glare("peer-1", "peer-10")  # a prefix sorts first
    assert wins_glare("peer-10", "peer-2")  # not numeric order


def test_self_connect_raises():
    with pytest.raises(ValueError):
        wins_glare("alice", "alice")
