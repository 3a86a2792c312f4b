"""Tests for router/stun.py (the STUN codec) and the probe's report (router/probe.py).

A real Binding success response captured from coturn 4.6.1 in the lab (through a router
doing SNAT to 10.251.0.21) pins the decoder against a real server; the rest are round trips
and the decoder's complaints about malformed input. The hairpin probe runs on loopback
against a small STUN responder: no NAT, so every packet "hairpins" with its own address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerlab.router import stun
from peerlab.router.probe import probe_hairpin, probe_stun, summarize

COTURN_TRANSACTION_ID = bytes.fromhex("0123456789abcdef01234567")
# coturn's answer to binding_request(COTURN_TRANSACTION_ID): XOR-MAPPED-ADDRESS,
# MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE, FINGERPRINT.
COTURN_RESPONSE = bytes.fromhex(
    "010100502112a4420123456789abcdef0123456700200008000195ad2be9a457000100080001b4bf0afb"
    "0015802b000800010d960afb000b802c000800010d970afb000b80220014436f7475726e2d342e362e31"
    "2027476f72737427802800043c7ad961"
)
COTURN_REQUEST = bytes.fromhex("000100082112a4420123456789abcdef0123456780280004a4a5e8a0")

transaction_ids = st.binary(min_size=12, max_size=12)
attributes = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF).filter(lambda t: t != stun.FINGERPRINT), st.binary(max_size=64)
    ),
    max_size=6,
)


def test_a_captured_coturn_response_decodes_to_the_routers_mapped_address():
    message = stun.decode(COTURN_RESPONSE)
    assert message.type == stun.BINDING_SUCCESS
    assert message.transaction_id == COTURN_TRANSACTION_ID
    assert stun.mapped_address(message) == ("10.251.0.21", 46271)
    assert message.attribute(stun.SOFTWARE) == b"Coturn-4.6.1 'Gorst'"


def test_binding_request_is_byte_for_byte_what_coturn_answered():
    assert stun.binding_request(COTURN_TRANSACTION_ID) == COTURN_REQUEST
    assert stun.decode(COTURN_REQUEST).type == stun.BINDING_REQUEST


@given(st.integers(0, 0x3FFF), transaction_ids, attributes, st.booleans())
def test_encode_decode_round_trip(kind, transaction_id, attrs, fingerprint):
    data = stun.encode(stun.StunMessage(kind, transaction_id, tuple(attrs)), fingerprint)
    assert len(data) % 4 == 0
    decoded = stun.decode(data)
    assert (decoded.type, decoded.transaction_id) == (kind, transaction_id)
    assert decoded.attributes[: len(attrs)] == tuple(attrs)
    assert len(decoded.attributes) == len(attrs) + fingerprint


@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))),
    ),
    st.integers(0, 0xFFFF),
    transaction_ids,
)
def test_xor_mapped_address_round_trip(host, port, transaction_id):
    value = stun.encode_xor_address(host, port, transaction_id)
    message = stun.StunMessage(
        stun.BINDING_SUCCESS, transaction_id, ((stun.XOR_MAPPED_ADDRESS, value),)
    )
    assert stun.mapped_address(stun.decode(stun.encode(message))) == (host, port)


def test_plain_mapped_address_is_used_when_there_is_no_xor_one():
    value = bytes([0, 1]) + (3478).to_bytes(2, "big") + bytes([192, 0, 2, 7])
    message = stun.StunMessage(stun.BINDING_SUCCESS, bytes(12), ((stun.MAPPED_ADDRESS, value),))
    assert stun.mapped_address(message) == ("192.0.2.7", 3478)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (COTURN_RESPONSE[:19], "at least a 20-byte STUN header"),
        (b"\xc1" + COTURN_RESPONSE[1:], "top two bits 0"),
        (COTURN_RESPONSE[:4] + b"\0\0\0\0" + COTURN_RESPONSE[8:], "magic cookie"),
        (COTURN_RESPONSE[:-4], "message length"),
        (COTURN_RESPONSE[:-1] + bytes([COTURN_RESPONSE[-1] ^ 1]), "FINGERPRINT: expected"),
        (
            stun.HEADER.pack(1, 4, stun.MAGIC_COOKIE, bytes(12)) + b"\0\x01\0\x09",
            "attribute 0x0001: expected 9 bytes",
        ),
    ],
)
def test_malformed_messages_are_rejected_saying_what_is_wrong(data, complaint):
    with pytest.raises(stun.StunError, match=complaint):
        stun.decode(data)


def test_an_error_response_reports_its_code_and_reason():
    error = bytes([0, 0, 4, 20]) + b"Unknown Attribute"
    message = stun.StunMessage(stun.BINDING_ERROR, bytes(12), ((stun.ERROR_CODE, error),))
    with pytest.raises(stun.StunError, match="420 Unknown Attribute"):
        stun.mapped_address(message)


def test_a_success_without_an_address_is_an_error():
    with pytest.raises(stun.StunError, match="without XOR-MAPPED-ADDRESS"):
        stun.mapped_address(stun.StunMessage(stun.BINDING_SUCCESS, bytes(12)))


# ---- the probe's report ----


def test_summary_counts_losses_duplicates_and_reordering():
    answers = [
        (0, 10.0, "a:1"),
        (2, 30.0, "a:1"),
        (1, 50.0, "a:1"),  # after 2: reordered
        (2, 31.0, "a:1"),  # duplicate
        (4, 20.0, "b:2"),
    ]
    report = summarize(5, answers)
    assert report == {
        "sent": 5,
        "received": 4,
        "lost": 1,
        "duplicates": 1,
        "reordered": 1,
        "rtt_ms": {"p50": 20.0, "p95": 50.0, "min": 10.0, "max": 50.0},
        "mapped": "a:1",
    }


def test_summary_of_nothing_received():
    report = summarize(3, [])
    assert (report["received"], report["lost"], report["mapped"]) == (0, 3, None)
    assert report["rtt_ms"] == {"p50": None, "p95": None, "min": None, "max": None}


@given(st.integers(1, 50).flatmap(lambda n: st.tuples(st.just(n), _answers(n))))
def test_summary_invariants(case):
    sent, answers = case
    report = summarize(sent, answers)
    assert report["received"] + report["lost"] == sent
    assert report["received"] + report["duplicates"] == len(answers)
    assert report["reordered"] < max(report["received"], 1)
    if report["received"]:
        rtt = report["rtt_ms"]
        assert rtt["min"] <= rtt["p50"] <= rtt["p95"] <= rtt["max"]


def _answers(sent: int):
    return st.lists(
        st.tuples(st.integers(0, sent - 1), st.floats(0, 1000), st.sampled_from(["a:1", "b:2"]))
    )


@contextlib.contextmanager
def stun_responder(copies: int = 1, ignore: int | None = None) -> Iterator[tuple[str, int]]:
    """A STUN server on loopback answering Binding requests with the sender's address,
    `copies` times each; the request numbered `ignore` (the probe's last four bytes of
    transaction id) gets no answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, (host, port) = sock.recvfrom(2048)
            except TimeoutError:
                continue
            request = stun.decode(data)
            if int.from_bytes(request.transaction_id[8:], "big") == ignore:
                continue
            address = stun.encode_xor_address(host, port, request.transaction_id)
            answer = stun.StunMessage(
                stun.BINDING_SUCCESS, request.transaction_id, ((stun.XOR_MAPPED_ADDRESS, address),)
            )
            for _ in range(copies):
                sock.sendto(stun.encode(answer), (host, port))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join()
        sock.close()


def _probe(server: tuple[str, int], count: int, timeout: float) -> tuple[dict, float]:
    started = time.monotonic()
    answers = probe_stun(server, count, interval=0.001, timeout=timeout)
    return summarize(count, answers), time.monotonic() - started


def test_a_probe_whose_every_request_is_answered_ends_without_waiting_out_its_timeout():
    with stun_responder() as server:
        report, took = _probe(server, 20, timeout=30.0)
    assert report["received"] == 20 and report["lost"] == 0, report
    assert took < 15.0, f"waited {took:.1f} s of a 30 s timeout with every answer in"


def test_a_probe_that_ends_early_still_counts_the_duplicates_of_its_answers():
    with stun_responder(copies=2) as server:
        report, _ = _probe(server, 20, timeout=30.0)
    assert report["received"] == 20 and report["duplicates"] == 20, report


def test_a_probe_missing_an_answer_waits_its_timeout_for_it():
    with stun_responder(ignore=7) as server:
        report, took = _probe(server, 20, timeout=0.5)
    assert report["received"] == 19 and report["lost"] == 1, report
    assert took >= 0.5


def test_hairpin_probe_reports_where_its_packet_came_from_and_the_answer():
    with stun_responder() as server:
        report = probe_hairpin(server, timeout=1.0)
    assert report["hairpin"] is True and report["echoed"] is True, report
    assert report["source_seen"] == report["sender_mapped"] != report["target"]
    assert report["target"].startswith("127.0.0.1:") and report["sent"] == 1


def test_hairpin_probe_without_a_stun_answer_says_so():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    with silent:
        report = probe_hairpin(silent.getsockname(), timeout=0.2)
    assert report["hairpin"] is None and report["target"] is None
    assert "no STUN answer from 127.0.0.1:" in report["error"]
