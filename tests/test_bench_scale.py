"""bench/scale.py and bench/container_stats.py: the pure parts (parsing what containers
print, counting candidate pairs, the last line). The bench itself runs the real stack:
`make bench-scale`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, like fuzz/

from bench.container_stats import (  # noqa: E402
    StatsError,
    neighbours_needed,
    parse_neighbour_table,
    parse_sample,
    percentile,
)
from bench.scale import Figures, parse_args, tally_candidate_pairs  # noqa: E402

# What SAMPLE_SCRIPT printed in a lab agent's container (the stat line shortened after
# the fields that are read: utime 250, stime 50).
SAMPLE = """stat 1 (python -m peerl) S 0 1 1 0 -1 4194560 9000 0 12 0 250 50 0 0 20 0 7 0
VmHWM:\t   90112 kB
VmRSS:\t   86016 kB
RssAnon:\t   45056 kB
cmdline python -m peerlab.peer
clk_tck 100
Udp: 5120 0 3 5200 3 0 0 0 0
cgroup_ns 3500000000
"""

NTABLE = """inet arp_cache
    thresh1 128 thresh2 512 thresh3 1024 gc_int 30000
    config key_len 4 entry_size 336 entries 13
    stats allocs 41446 destroys 41433 hash_grows 8
    res_failed 226 lookups 411200 hits 189490
    periodic_gc_runs 1911 forced_gc_runs 17105
    table_fulls 16911

inet arp_cache
    dev eth0
    refcnt 1 reachable 15700 base_reachable 30000 retrans 1000
"""


def test_a_sample_reads_cpu_memory_and_udp_drops():
    sample = parse_sample("peer1", SAMPLE, taken=1.0)
    assert sample.cpu_s == pytest.approx(3.0)
    assert (sample.rss_mib, sample.hwm_mib, sample.anon_mib) == (84.0, 88.0, 44.0)
    assert sample.command == "python -m peerlab.peer"
    assert sample.cgroup_cpu_s == pytest.approx(3.5)
    assert sample.udp_dropped == 3


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields():
    text = SAMPLE.replace("(python -m peerl)", "(a (b) c)")
    assert parse_sample("peer1", text).cpu_s == pytest.approx(3.0)


def test_an_unexpected_answer_is_an_error_naming_the_container():
    with pytest.raises(StatsError, match="peer7: unexpected answer"):
        parse_sample("peer7", "sh: cat: not found\n")


def test_the_neighbour_table_is_read_from_its_first_block():
    table = parse_neighbour_table(NTABLE)
    assert (table.thresh2, table.thresh3, table.entries) == (512, 1024, 13)
    assert (table.table_fulls, table.forced_gc_runs) == (16911, 17105)


def test_a_mesh_of_32_needs_more_neighbour_entries_than_the_kernel_default():
    assert neighbours_needed(16) < 512 < neighbours_needed(24) < 1024 < neighbours_needed(30)


def test_percentile_is_nearest_rank():
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([5.0], 0.99) == 5.0


def _link(state: str, local: tuple[str, str, int], remote: tuple[str, str, int]) -> dict:
    def candidate(c: tuple[str, str, int]) -> dict:
        return {"type": c[0], "protocol": "udp", "address": c[1], "port": c[2]}

    return {
        "state": state,
        "candidate_pair": {"local": candidate(local), "remote": candidate(remote)},
    }


def test_candidate_pairs_are_counted_per_link_end_and_compared_across_ends():
    a, b = ("host", "10.0.0.2", 4000), ("host", "10.0.0.3", 5000)
    relay_b = ("relay", "10.0.0.11", 49152)
    states = {
        # peer1 sends to peer2's relay while peer2 sends to peer1's host: ends disagree.
        "peer1": {"links": {"peer2": _link("connected", a, relay_b)}},
        "peer2": {"links": {"peer1": _link("connected", b, a)}},
    }
    kinds, agreeing, down = tally_candidate_pairs(states)
    assert kinds == {"host→relay": 1, "host→host": 1}
    assert (agreeing, down) == (0, [])
    states["peer1"]["links"]["peer2"] = _link("connecting", a, b)
    kinds, agreeing, down = tally_candidate_pairs(states)
    assert agreeing == 2
    assert down == ["peer1↔peer2: connecting / connected"]


def test_the_last_line_has_the_documented_shape():
    figures = Figures(peers=16, links=120, all_connected_s=2.04, sent=2400, delivered=2400)
    figures.rss_mib = [83.0, 84.0, 85.0]
    figures.cpu_s = 5.4
    assert figures.last_line() == (
        "mesh peers=16 links=120 all_connected_s=2.0 delivered=2400/2400 "
        "rss_mb_p50=84.0 rss_mb_max=85.0 cpu_s_per_1k_msgs=2.25"
    )


def test_bad_options_are_refused(capsys):
    for argv in (["--peers", "1"], ["--store-sync", "0"], ["--env", "X"], ["--idle-s", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == 2
    assert "--store-sync" in capsys.readouterr().err
