"""Measure a UDP path with STUN: `python -m peerlab.router.probe stun --server ADDR --count N ...`,
test hairpinning: `python -m peerlab.router.probe hairpin --server ADDR`, or discover the
NAT's behaviour (RFC 5780, router/nat_probe.py) and test hairpinning, side by side:
`python -m peerlab.router.probe nat --server ADDR`, which prints
`{"nat": <nat_probe.discover's report>, "hairpin": <the hairpin report>}`.

Run in a peer's network namespace, it measures that peer's access link through its router: it
sends `count` Binding requests, one every `interval` seconds, from one UDP socket (so one
NAT mapping), waits for late answers up to `timeout` seconds after the last (once every
request has its answer, only twice the slowest round trip seen, for duplicates), and prints
one JSON line:

    {"sent": 20, "received": 17, "lost": 3, "duplicates": 1, "reordered": 0,
     "rtt_ms": {"p50": 101.2, "p95": 118.0, "min": 99.1, "max": 121.4},
     "mapped": "10.77.0.21:40000"}

`lost` counts requests without any answer (a round trip is lost when either direction
loses its packet), `duplicates` answers beyond the first for a request, `reordered` first
answers that arrived after the first answer of a later request. `rtt_ms` covers first
answers (values null when none came back); `mapped` is the address most answers reported.

`hairpin` opens two UDP sockets, learns the external address of each from the STUN server
(so the router has a mapping for each), then sends from the second to the first one's
external address, every 0.1 s until `timeout`; the first answers whatever reaches it.
It prints one JSON line:

    {"hairpin": true, "echoed": true, "target": "10.77.0.21:40000",
     "source_seen": "10.77.0.21:40001", "sender_mapped": "10.77.0.21:40001", "sent": 1}

`hairpin`: the packet reached the first socket through the router; `source_seen`: the
address it came from (the sender's external one when the router hairpins as RFC 4787
REQ-9 asks; its LAN address would mean the router forgot to translate the source);
`echoed`: the answer made it back. Without a STUN answer it prints `"hairpin": null` and
an `error`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from peerlab.router import nat_probe, stun


def summarize(sent: int, answers: list[tuple[int, float, str]]) -> dict:
    """The report for `sent` requests given the answers in arrival order, each as
    (request number, round trip in ms, mapped "ip:port")."""
    first: dict[int, float] = {}
    duplicates = reordered = 0
    highest = -1
    mapped: Counter[str] = Counter()
    for number, rtt_ms, address in answers:
        if number in first:
            duplicates += 1
            continue
        first[number] = rtt_ms
        mapped[address] += 1
        if number < highest:
            reordered += 1
        highest = max(highest, number)
    rtts = sorted(first.values())
    return {
        "sent": sent,
        "received": len(first),
        "lost": sent - len(first),
        "duplicates": duplicates,
        "reordered": reordered,
        "rtt_ms": {
            "p50": percentile(rtts, 50),
            "p95": percentile(rtts, 95),
            "min": rtts[0] if rtts else None,
            "max": rtts[-1] if rtts else None,
        },
        "mapped": mapped.most_common(1)[0][0] if mapped else None,
    }


def percentile(ordered: Sequence[float], percent: float) -> float | None:
    """Nearest-rank percentile of sorted values (None for none): a value that was
    measured, never an interpolation. The harness's reports use it too."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


SETTLE_RTTS = 2.0
SETTLE_MIN_S = 0.05
"""Once every request has been answered, the probe waits SETTLE_RTTS times the slowest
round trip it saw (at least SETTLE_MIN_S) for duplicates, then ends: a copy leaves the
shaper right after its original. Waiting out the whole timeout instead added a second to
every probe of an intact path: the baselines and untouched-peer checks of every fault
proof."""


def probe_stun(
    server: tuple[str, int], count: int, interval: float, timeout: float
) -> list[tuple[int, float, str]]:
    """Send the requests on schedule, collect answers until `timeout` after the last, or
    until every request is answered and its duplicates have had time to come."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    sock.connect(server)  # answers from anyone else are not ours
    prefix = os.urandom(8)  # transaction id = random prefix + request number
    sent_at: dict[int, float] = {}
    answers: list[tuple[int, float, str]] = []
    answered: set[int] = set()
    slowest_s = 0.0
    all_answered_at: float | None = None
    start = time.monotonic()
    number = 0
    while True:
        now = time.monotonic()
        while number < count and now >= start + number * interval:
            request = stun.binding_request(prefix + number.to_bytes(4, "big"))
            sent_at[number] = time.monotonic()
            sock.send(request)
            number += 1
        if number < count:
            wake = start + number * interval
        else:
            wake = sent_at[count - 1] + timeout
            if all_answered_at is not None:
                wake = min(wake, all_answered_at + max(SETTLE_MIN_S, SETTLE_RTTS * slowest_s))
            if now >= wake:
                return answers
        readable, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if readable:
            seen = len(answers)
            _receive(sock, prefix, sent_at, answers)
            for answer_number, rtt_ms, _ in answers[seen:]:
                answered.add(answer_number)
                slowest_s = max(slowest_s, rtt_ms / 1000)
            if all_answered_at is None and len(answered) == count:
                all_answered_at = time.monotonic()


def _receive(sock, prefix: bytes, sent_at: dict[int, float], answers: list) -> None:
    while True:
        try:
            data = sock.recv(2048)
        except (BlockingIOError, ConnectionRefusedError):
            return  # nothing more now; ICMP unreachable is simply no answer
        received = time.monotonic()
        try:
            message = stun.decode(data)
            host, port = stun.mapped_address(message)
        except stun.StunError as error:
            print(f"probe: ignoring an answer: {error}", file=sys.stderr)
            continue
        if message.transaction_id[:8] != prefix:
            continue
        number = int.from_bytes(message.transaction_id[8:], "big")
        if number in sent_at:
            rtt_ms = round((received - sent_at[number]) * 1000, 3)
            answers.append((number, rtt_ms, f"{host}:{port}"))


HAIRPIN_INTERVAL = 0.1
STUN_ATTEMPTS = 5


def _stun_mapped(sock: socket.socket, server: tuple[str, int], timeout: float) -> str | None:
    """This socket's external "ip:port" as the STUN server sees it (a few tries)."""
    transaction = os.urandom(12)
    for _ in range(STUN_ATTEMPTS):
        sock.sendto(stun.binding_request(transaction), server)
        deadline = time.monotonic() + timeout / STUN_ATTEMPTS
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, source = sock.recvfrom(2048)
            if source != server:
                continue
            try:
                message = stun.decode(data)
                if message.transaction_id == transaction:
                    host, port = stun.mapped_address(message)
                    return f"{host}:{port}"
            except stun.StunError:
                continue
    return None


def probe_hairpin(server: tuple[str, int], timeout: float) -> dict:
    target_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (target_sock, sender_sock):
        sock.bind(("0.0.0.0", 0))
    target = _stun_mapped(target_sock, server, timeout)
    sender = _stun_mapped(sender_sock, server, timeout)
    report: dict = {"hairpin": None, "echoed": False, "target": target, "source_seen": None,
                    "sender_mapped": sender, "sent": 0}  # fmt: skip
    if target is None:
        report["error"] = f"no STUN answer from {server[0]}:{server[1]}: no mapping to aim at"
        return report
    host, port = target.rsplit(":", 1)
    payload = b"peerlab-hairpin " + os.urandom(8).hex().encode()
    report["hairpin"] = False
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while (now := time.monotonic()) < deadline:
        if now >= next_send and report["source_seen"] is None:
            sender_sock.sendto(payload, (host, int(port)))
            report["sent"] += 1
            next_send = now + HAIRPIN_INTERVAL
        wake = deadline if report["source_seen"] else min(deadline, next_send)
        for sock in select.select([target_sock, sender_sock], [], [], max(0.0, wake - now))[0]:
            try:
                data, source = sock.recvfrom(2048)
            except ConnectionRefusedError:
                continue
            if data != payload:
                continue
            if sock is target_sock:
                report["hairpin"] = True
                report["source_seen"] = f"{source[0]}:{source[1]}"
                target_sock.sendto(payload, source)
            else:
                report["echoed"] = True
                return report
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peerlab.router.probe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    stun_parser = commands.add_parser("stun", help="round trips of STUN Binding requests")
    stun_parser.add_argument("--server", required=True, help="STUN server name or address")
    stun_parser.add_argument("--port", type=int, default=3478)
    stun_parser.add_argument("--count", type=int, default=20, help="requests to send")
    stun_parser.add_argument("--interval", type=float, default=0.1, help="seconds between")
    stun_parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait after the last request"
    )
    hairpin_parser = commands.add_parser(
        "hairpin", help="does the router deliver to its own external address (hairpinning)?"
    )
    hairpin_parser.add_argument("--server", required=True, help="STUN server name or address")
    hairpin_parser.add_argument("--port", type=int, default=3478)
    hairpin_parser.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to try for (and for STUN)"
    )
    nat_parser = commands.add_parser(
        "nat", help="RFC 5780 mapping and filtering behaviour, and the hairpin test beside it"
    )
    nat_parser.add_argument("--server", required=True, help="RFC 5780 STUN server")
    nat_parser.add_argument("--port", type=int, default=3478)
    args = parser.parse_args(argv)
    try:
        address = socket.gethostbyname(args.server)
    except OSError as error:
        parser.error(f"--server {args.server!r}: cannot resolve it: {error}")
    if args.command == "nat":
        server = (address, args.port)
        # Side by side: each waits out a window of silence, and their sockets are apart.
        with ThreadPoolExecutor(2) as pool:
            nat = pool.submit(nat_probe.discover, server)
            hairpin = pool.submit(probe_hairpin, server, 1.0)
            print(json.dumps({"nat": nat.result(), "hairpin": hairpin.result()}))
        return 0
    if args.command == "hairpin":
        if args.timeout <= 0:
            parser.error("--timeout must be > 0")
        print(json.dumps(probe_hairpin((address, args.port), args.timeout)))
        return 0
    if args.count < 1 or args.interval < 0 or args.timeout < 0:
        parser.error("--count must be >= 1, --interval and --timeout >= 0")
    answers = probe_stun((address, args.port), args.count, args.interval, args.timeout)
    print(json.dumps(summarize(args.count, answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
