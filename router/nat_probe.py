"""RFC 5780 NAT behaviour discovery, run inside a peer's network namespace against
coturn's two addresses (`python -m peerlab.router.probe nat`). It measures; the harness
judges (router/natdiscovery.py `judge`).

Filtering first, from one socket: a Binding request to the server's primary address (its
answer names the server's OTHER-ADDRESS), then, together, one asking for the answer to
come from the other address and port (CHANGE-REQUEST ip+port) and one from the other port
only. An answer that gets through the router shows that its filter lets that source in.
Mapping next, from a fresh socket, three requests together: to the primary address, to
the other address with the primary port, and to the other address and port; the
addresses the server saw tell whether the router keeps one mapping for every
destination. Filtering must come first: the mapping test sends to the other address,
which an address-restricted router lets in from then on (docs/router.md).

Every request is sent again every RETRY_INTERVAL until it is answered or its window ends,
so a lost or late packet is not taken for a filter: a CHANGE-REQUEST counts as filtered
after SILENCE_WINDOW without an answer. The lab's round trips are below a millisecond;
coturn's own client, `turnutils_natdiscovery`, waits 3 s for a single packet instead,
which made every NAT proof take 7 s or more (docs/router.md).
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Any

from peerlab.router import stun

RETRY_INTERVAL = 0.1
ANSWER_TIMEOUT = 1.0
"""Seconds for a request the server answers whatever the NAT does (ten tries): none in this
time means UDP is blocked (or the server is gone)."""
SILENCE_WINDOW = 1.0
"""Seconds without an answer after which a CHANGE-REQUEST counts as filtered."""

Address = tuple[str, int]
Answer = tuple[stun.StunMessage, Address]
"""A Binding success response and the address it came from."""


def discover(server: Address) -> dict[str, Any]:
    """The measurements, as one JSON-able report:

    {"server": "10.77.0.11:3478", "answered": true, "local": "10.77.1.100",
     "other_address": "10.77.0.12:3479",
     "filtering": {"change_ip_and_port": null, "change_port": "10.77.0.11:3479"},
     "mapping": {"primary": "10.77.0.21:40000", "other_ip": "10.77.0.21:40000",
                 "other": "10.77.0.21:40000"}}

    `filtering` names, per CHANGE-REQUEST, the source its answer came from (null: none got
    through); `mapping`, per destination, the address the server saw (null: no answer).
    "answered" is false, with nothing else measured, when the first request got no
    answer; "error" says why the server cannot do RFC 5780.
    """
    local_ip = _local_ip(server)
    report: dict[str, Any] = {"server": _text(server), "answered": False, "local": local_ip}
    with _bound(local_ip) as sock:
        first = exchange(sock, {"primary": (server, 0)}, ANSWER_TIMEOUT).get("primary")
        if first is None:
            return report
        report["answered"] = True
        other = stun.other_address(first[0])
        if other is None:
            report["error"] = "the server's answer names no OTHER-ADDRESS: it does no RFC 5780"
            return report
        report["other_address"] = _text(other)
        changes = {
            "change_ip_and_port": (server, stun.CHANGE_IP | stun.CHANGE_PORT),
            "change_port": (server, stun.CHANGE_PORT),
        }
        answers = exchange(sock, changes, SILENCE_WINDOW)
        report["filtering"] = {name: _source(answers.get(name)) for name in changes}
    with _bound(local_ip) as sock:
        destinations = {"primary": server, "other_ip": (other[0], server[1]), "other": other}
        answers = exchange(sock, {k: (d, 0) for k, d in destinations.items()}, ANSWER_TIMEOUT)
        report["mapping"] = {name: _mapped(answers.get(name)) for name in destinations}
    return report


def exchange(
    sock: socket.socket, requests: dict[str, tuple[Address, int]], window: float
) -> dict[str, Answer]:
    """Send each request (destination, CHANGE-REQUEST flags) again every RETRY_INTERVAL
    until it is answered or `window` seconds have passed; the first answer to each, by
    name."""
    ids = {name: os.urandom(12) for name in requests}
    by_id = {transaction: name for name, transaction in ids.items()}
    answers: dict[str, Answer] = {}
    deadline = time.monotonic() + window
    next_send = 0.0
    while len(answers) < len(requests) and (now := time.monotonic()) < deadline:
        if now >= next_send:
            for name, (destination, change) in requests.items():
                if name not in answers:
                    sock.sendto(stun.binding_request(ids[name], change), destination)
            next_send = now + RETRY_INTERVAL
        if not select.select([sock], [], [], max(0.0, min(deadline, next_send) - now))[0]:
            continue
        try:
            data, source = sock.recvfrom(2048)
            message = stun.decode(data)
        except (ConnectionRefusedError, stun.StunError):
            continue  # ICMP unreachable is no answer; garbage is not ours
        name = by_id.get(message.transaction_id)
        if name is not None and name not in answers and message.type == stun.BINDING_SUCCESS:
            answers[name] = (message, source)
    return answers


def _local_ip(server: Address) -> str:
    """The address this host sends from towards `server` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(server)
        return sock.getsockname()[0]


def _bound(local_ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local_ip, 0))
    return sock


def _text(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _source(answer: Answer | None) -> str | None:
    return None if answer is None else _text(answer[1])


def _mapped(answer: Answer | None) -> str | None:
    if answer is None:
        return None
    try:
        return _text(stun.mapped_address(answer[0]))
    except stun.StunError:
        return None
