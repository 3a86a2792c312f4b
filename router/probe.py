"""Measure a UDP path with STUN: `python -m router.probe stun --server ADDR --count N ...`.

Run inside a peer container, it measures that peer's access link through its router: it
sends `count` Binding requests, one every `interval` seconds, from one UDP socket (so one
NAT mapping), waits `timeout` seconds after the last for late answers, and prints one JSON
line:

    {"sent": 20, "received": 17, "lost": 3, "duplicates": 1, "reordered": 0,
     "rtt_ms": {"p50": 101.2, "p95": 118.0, "min": 99.1, "max": 121.4},
     "mapped": "10.77.0.21:40000"}

`lost` counts requests without any answer (a round trip is lost when either direction
loses its packet), `duplicates` answers beyond the first for a request, `reordered` first
answers that arrived after the first answer of a later request. `rtt_ms` covers first
answers (values null when none came back); `mapped` is the address most answers reported.
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

from router import stun


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
            "p50": _percentile(rtts, 50),
            "p95": _percentile(rtts, 95),
            "min": rtts[0] if rtts else None,
            "max": rtts[-1] if rtts else None,
        },
        "mapped": mapped.most_common(1)[0][0] if mapped else None,
    }


def _percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile: a value that was measured, never an interpolation."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def probe_stun(
    server: tuple[str, int], count: int, interval: float, timeout: float
) -> list[tuple[int, float, str]]:
    """Send the requests on schedule, collect answers until `timeout` after the last."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    sock.connect(server)  # answers from anyone else are not ours
    prefix = os.urandom(8)  # transaction id = random prefix + request number
    sent_at: dict[int, float] = {}
    answers: list[tuple[int, float, str]] = []
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
            if now >= wake:
                return answers
        readable, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if readable:
            _receive(sock, prefix, sent_at, answers)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router.probe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    stun_parser = commands.add_parser("stun", help="round trips of STUN Binding requests")
    stun_parser.add_argument("--server", required=True, help="STUN server name or address")
    stun_parser.add_argument("--port", type=int, default=3478)
    stun_parser.add_argument("--count", type=int, default=20, help="requests to send")
    stun_parser.add_argument("--interval", type=float, default=0.1, help="seconds between")
    stun_parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait after the last request"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.interval < 0 or args.timeout < 0:
        parser.error("--count must be >= 1, --interval and --timeout >= 0")
    try:
        address = socket.gethostbyname(args.server)
    except OSError as error:
        parser.error(f"--server {args.server!r}: cannot resolve it: {error}")
    answers = probe_stun((address, args.port), args.count, args.interval, args.timeout)
    print(json.dumps(summarize(args.count, answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
