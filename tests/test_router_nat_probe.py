"""The lab's RFC 5780 probe (router/nat_probe.py) against an RFC 5780 responder on loopback,
and its judge (router/natdiscovery.py `judge`) on reports of every NAT type.

The responder listens on two addresses and two ports (127.0.0.1 and 127.0.0.2), answers
from the one a CHANGE-REQUEST asks for, and can drop the answers from chosen sources (a
router's filter, as seen from inside the LAN) or ignore the first copy of every request (a
lost packet). No NAT on loopback: the probe sees its own address mapped. The NAT types
themselves are proven on real routers by every scenario with a router, and checked
against coturn's own client by `nat_matrix`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from peerlab.router import nat_probe, stun
from peerlab.router.natdiscovery import judge

Address = tuple[str, int]


ROLES = ("primary", "other_port", "other_ip", "other")
"""The responder's four sockets: (A1, P1), (A1, P2), (A2, P1), (A2, P2)."""


@contextlib.contextmanager
def rfc5780_responder(
    *, drop_from: frozenset[str] = frozenset(), ignore_first: bool = False
) -> Iterator[Address]:
    """A STUN server on four sockets (ROLES); yields the primary (A1, P1). It answers a
    CHANGE-REQUEST (sent to the primary) from the socket asked for, anything else from
    the socket it came in on; answers to a CHANGE-REQUEST from the roles in `drop_from`
    are not sent."""
    sockets = dict(zip(ROLES, _four_sockets(), strict=True))
    other = sockets["other"].getsockname()
    roles = {(bool(i & 2), bool(i & 1)): role for i, role in enumerate(ROLES)}
    seen: set[bytes] = set()
    stop = threading.Event()

    def answer(received_on: str, data: bytes, client: Address) -> None:
        request = stun.decode(data)
        if ignore_first and request.transaction_id not in seen:
            seen.add(request.transaction_id)
            return
        change = request.attribute(stun.CHANGE_REQUEST)
        flags = struct.unpack("!I", change)[0] if change else 0
        role = roles[bool(flags & stun.CHANGE_IP), bool(flags & stun.CHANGE_PORT)]
        if not flags:
            role = received_on  # what the client sent to: a router lets its answer in
        elif role in drop_from:
            return
        attributes = (
            (stun.XOR_MAPPED_ADDRESS, stun.encode_xor_address(*client, request.transaction_id)),
            (stun.OTHER_ADDRESS, struct.pack("!BBH4s", 0, 1, other[1], socket.inet_aton(other[0]))),
        )
        reply = stun.StunMessage(stun.BINDING_SUCCESS, request.transaction_id, attributes)
        sockets[role].sendto(stun.encode(reply), client)

    def serve() -> None:
        names = {sock: role for role, sock in sockets.items()}
        while not stop.is_set():
            for sock in select.select(list(sockets.values()), [], [], 0.02)[0]:
                data, client = sock.recvfrom(2048)
                answer(names[sock], data, client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sockets["primary"].getsockname()
    finally:
        stop.set()
        thread.join()
        for sock in sockets.values():
            sock.close()


def _four_sockets() -> list[socket.socket]:
    """Bound as ROLES says: two ports free on both loopback addresses."""
    for _ in range(20):
        sockets: list[socket.socket] = []
        try:
            for host in ("127.0.0.1", "127.0.0.2"):
                for index in range(2):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sockets.append(sock)
                    port = sockets[index].getsockname()[1] if host == "127.0.0.2" else 0
                    sock.bind((host, port))
            return sockets
        except OSError:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no two ports free on both loopback addresses")


@pytest.fixture(autouse=True)
def short_windows(monkeypatch):
    monkeypatch.setattr(nat_probe, "SILENCE_WINDOW", 0.3)
    monkeypatch.setattr(nat_probe, "ANSWER_TIMEOUT", 0.5)


def test_every_answer_getting_through_is_no_nat_and_endpoint_independent_filtering():
    with rfc5780_responder() as server:
        report = nat_probe.discover(server)
    other_ip, other_port = report["other_address"].split(":")
    assert report["answered"] and report["local"] == "127.0.0.1" and other_ip == "127.0.0.2"
    assert report["filtering"] == {
        "change_ip_and_port": report["other_address"],
        "change_port": f"127.0.0.1:{other_port}",
    }
    assert len(set(report["mapping"].values())) == 1
    assert judge(report) == {
        "mapping": "endpoint-independent",
        "filtering": "endpoint-independent",
        "nat_type": "none",
    }


@pytest.mark.parametrize(
    ("dropped", "filtering"),
    [
        ({"other"}, "address-dependent"),
        ({"other", "other_port"}, "address-and-port-dependent"),
    ],
)
def test_answers_a_filter_drops_read_as_that_filtering(dropped, filtering):
    with rfc5780_responder(drop_from=frozenset(dropped)) as server:
        report = nat_probe.discover(server)
    assert judge(report)["filtering"] == filtering, report
    # The mapping test never asks for a change: its answers all get through.
    assert None not in report["mapping"].values()


def test_a_lost_request_is_sent_again_not_taken_for_a_filter():
    with rfc5780_responder(ignore_first=True) as server:
        report = nat_probe.discover(server)
    assert judge(report)["nat_type"] == "none", report
    assert None not in report["filtering"].values()


def test_no_answer_at_all_reads_as_udp_blocked():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    with silent:
        server = silent.getsockname()
        report = nat_probe.discover(server)
    assert report == {"server": f"127.0.0.1:{server[1]}", "answered": False, "local": "127.0.0.1"}
    assert judge(report)["nat_type"] == "udp-blocked"


def _report(filtering: tuple[str | None, str | None], mapping: tuple[str, str, str]) -> dict:
    return {
        "server": "10.77.0.11:3478",
        "answered": True,
        "local": "10.77.1.100",
        "other_address": "10.77.0.12:3479",
        "filtering": dict(zip(("change_ip_and_port", "change_port"), filtering, strict=True)),
        "mapping": dict(zip(("primary", "other_ip", "other"), mapping, strict=True)),
    }


OTHER, OTHER_PORT = "10.77.0.12:3479", "10.77.0.11:3479"
ONE_MAPPING = ("10.77.0.21:4000",) * 3
EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"
NEW_PER_ADDRESS = ("10.77.0.21:1", "10.77.0.21:2", "10.77.0.21:2")
NEW_PER_DESTINATION = ("10.77.0.21:1", "10.77.0.21:2", "10.77.0.21:3")


@pytest.mark.parametrize(
    ("filtering", "mapping", "expected"),
    [
        ((OTHER, OTHER_PORT), ONE_MAPPING, (EI, EI, "full-cone")),
        ((None, OTHER_PORT), ONE_MAPPING, (EI, AD, "address-restricted")),
        ((None, None), ONE_MAPPING, (EI, APD, "port-restricted")),
        ((None, None), NEW_PER_DESTINATION, (APD, APD, "symmetric")),
        ((None, None), NEW_PER_ADDRESS, (AD, APD, "symmetric")),
        ((OTHER, OTHER_PORT), ("10.77.1.100:4000",) * 3, (EI, EI, "none")),
    ],
)
def test_judge_names_every_nat_type(filtering, mapping, expected):
    verdict = judge(_report(filtering, mapping))
    assert (verdict["mapping"], verdict["filtering"], verdict["nat_type"]) == expected
    assert "problem" not in verdict


def test_an_answer_from_the_wrong_source_means_the_server_ignored_the_change_request():
    # A server that answers every CHANGE-REQUEST from its primary address would otherwise
    # make every router look like a full cone.
    verdict = judge(_report(("10.77.0.11:3478", None), ONE_MAPPING))
    assert verdict["nat_type"] == verdict["filtering"] == "unknown"
    assert verdict["problem"] == (
        "the server ignored a CHANGE-REQUEST: change_ip_and_port answered from "
        "10.77.0.11:3478, not 10.77.0.12:3479"
    )


def test_a_mapping_answer_missing_or_no_rfc5780_is_unknown_with_the_reason():
    verdict = judge(_report((None, None), ("10.77.0.21:1", None, "10.77.0.21:1")))
    assert verdict["nat_type"] == "unknown"
    assert verdict["problem"] == "no answer to the mapping test's other_ip request"
    plain = {"server": "s", "answered": True, "local": "l", "error": "no OTHER-ADDRESS"}
    assert judge(plain) == {"mapping": "unknown", "filtering": "unknown",
                            "nat_type": "unknown", "problem": "no OTHER-ADDRESS"}  # fmt: skip
