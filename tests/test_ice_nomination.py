"""peer/ice_nomination.py: with several nominated ICE pairs, aioice sends on the best one.

aioice's own `Connection.check_complete` makes every newly nominated pair the one data
goes out on, so a relay pair whose check succeeds after the host pair's replaces it.
These tests drive aioice's real `Connection` and `CandidatePair` through the order of
events seen under load: the host pair's check succeeds (nominated, ICE completes), then
a lower-priority check still in flight succeeds too.
"""

from __future__ import annotations

import asyncio

from aioice import Candidate, ice

from peerlab.peer import ice_nomination


def _candidate(kind: str, host: str, port: int) -> Candidate:
    return Candidate(
        foundation=f"{kind}{port}",
        component=1,
        transport="udp",
        priority=ice.candidate_priority(1, kind),
        host=host,
        port=port,
        type=kind,
    )


def _pair(connection: ice.Connection, local: Candidate, remote: Candidate) -> ice.CandidatePair:
    protocol = ice.StunProtocol(connection)
    protocol.local_candidate = local
    pair = ice.CandidatePair(protocol, remote)
    connection._check_list.append(pair)
    return pair


def _succeed(connection: ice.Connection, pair: ice.CandidatePair) -> None:
    """What aioice's check_start does when a check it nominated (aggressive) succeeds."""
    pair.nominated = True
    connection.check_state(pair, ice.CandidatePair.State.SUCCEEDED)
    connection.check_complete(pair)


def _host_then_relay(controlling: bool) -> tuple[ice.Connection, ice.CandidatePair]:
    connection = ice.Connection(ice_controlling=controlling)
    local = _candidate("host", "10.0.0.2", 40000)
    host = _pair(connection, local, _candidate("host", "10.0.0.3", 50000))
    relay = _pair(connection, local, _candidate("relay", "10.0.0.11", 49152))
    _succeed(connection, host)
    _succeed(connection, relay)
    return connection, host


def test_a_relay_pair_nominated_after_the_host_pair_does_not_replace_it():
    async def scenario() -> None:
        assert ice_nomination.install()
        for controlling in (True, False):
            connection, host = _host_then_relay(controlling)
            assert connection._nominated[1] is host

    asyncio.run(scenario())


def test_a_better_pair_nominated_later_does_replace_a_worse_one():
    async def scenario() -> None:
        assert ice_nomination.install()
        connection = ice.Connection(ice_controlling=False)
        local = _candidate("host", "10.0.0.2", 40000)
        relay = _pair(connection, local, _candidate("relay", "10.0.0.11", 49152))
        host = _pair(connection, local, _candidate("host", "10.0.0.3", 50000))
        _succeed(connection, relay)
        assert connection._nominated[1] is relay
        _succeed(connection, host)
        assert connection._nominated[1] is host

    asyncio.run(scenario())


def test_install_is_idempotent_and_says_so():
    assert ice_nomination.install()
    wrapped = ice.Connection.check_complete
    assert ice_nomination.install()
    assert ice.Connection.check_complete is wrapped
    assert ice_nomination.installed()
