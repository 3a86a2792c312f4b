"""Connect times read from event logs: offer sent → channel open, per attempt."""

from __future__ import annotations

from peerlab.scenarios.connect_times import ConnectSummary, connect_times, summarize


def _event(kind: str, t: float, **fields: object) -> dict[str, object]:
    return {"kind": kind, "t_mono": t, **fields}


def test_each_link_offered_counts_from_its_offer_to_connected():
    logs = {
        "peer1": [
            _event("started", 0.0),
            _event("offer_sent", 1.0, peer="peer2"),
            _event("offer_sent", 1.5, peer="peer3"),
            _event("state", 1.25, peer="peer2", old="connecting", new="connected"),
            _event("state", 2.0, peer="peer3", old="connecting", new="connected"),
            # A later connected state without a new offer (heartbeats came back) is not
            # a connect.
            _event("state", 9.0, peer="peer2", old="disconnected", new="connected"),
        ],
        # The answering end never offered: nothing to pair.
        "peer2": [_event("state", 1.2, peer="peer1", old="connecting", new="connected")],
    }
    assert connect_times(logs) == [0.25, 0.5]


def test_a_retried_connect_counts_from_the_offer_that_succeeded():
    log = [
        _event("offer_sent", 1.0, peer="b"),
        _event("state", 6.0, peer="b", old="connecting", new="failed"),
        _event("offer_sent", 7.0, peer="b"),
        _event("state", 7.1, peer="b", old="connecting", new="connected"),
    ]
    assert [round(t, 3) for t in connect_times({"a": log})] == [0.1]


def test_an_offer_before_a_restart_is_not_paired_with_a_state_after_it():
    log = [
        _event("offer_sent", 100.0, peer="b"),
        _event("started", 3.0),  # a new process: its monotonic clock restarted
        _event("state", 4.0, peer="b", old="connecting", new="connected"),
    ]
    assert connect_times({"a": log}) == []


def test_summary_is_nearest_rank_in_milliseconds():
    assert summarize([]) is None
    times = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert summarize(times) == ConnectSummary(100, 50.0, 95.0)
    assert summarize([0.2]) == ConnectSummary(1, 200.0, 200.0)
