"""Command line entry point: ``python -m peerlab.signaling``.

Most options can also come from the environment (see ``--help``); a bad value in either
is a usage error (exit status 2) naming the option and, when the value came from there,
the variable. Logs are JSON objects, one per line, on stderr. SIGTERM and SIGINT close
every connection with 1001 (going away) and exit 0; a server that cannot listen logs
`listen_failed` and exits 1 (docs/signaling-protocol.md §9).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from peerlab.signaling.env_options import env_option, host, number, port, utf8
from peerlab.signaling.server import ServerConfig, SignalingServer, log_event

T = TypeVar("T")

ICE_SERVERS_VARIABLE = "SIGNALING_ICE_SERVERS"

# A STUN or TURN URL (RFC 7064, RFC 7065) as the reference agent's WebRTC stack, aiortc,
# reads it: a lowercase scheme, a host (no IPv6 literal), an optional port, and for TURN
# an optional transport. aiortc fails on any other, so a peer handed one could not connect.
_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>[^:?]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)

# Where the server listens, as a bind failure names it.
_LISTEN_SETTINGS = "--host/SIGNALING_HOST, --port/SIGNALING_PORT"

# Descriptors the process needs besides its connections: the listening sockets,
# the event loop's, stdio, the resolver's.
FD_RESERVE = 64


class LimitOption(NamedTuple):
    """A bound of the server's clients (docs/signaling-protocol.md §6); must be positive."""

    option: str
    variable: str
    type: type[int] | type[float]
    field: str  # of ServerConfig, which gives the default
    help: str


LIMIT_OPTIONS = (
    LimitOption("--outbox-size", "SIGNALING_OUTBOX_SIZE", int, "outbox_size", "frames queued"),
    LimitOption("--outbox-bytes", "SIGNALING_OUTBOX_BYTES", int, "outbox_bytes", "bytes queued"),
    LimitOption(
        "--handshake-timeout",
        "SIGNALING_HANDSHAKE_TIMEOUT",
        float,
        "handshake_timeout",
        "seconds from TCP connection to WebSocket upgrade",
    ),
    LimitOption(
        "--register-timeout",
        "SIGNALING_REGISTER_TIMEOUT",
        float,
        "register_timeout",
        "seconds from upgrade to a successful register (else close 4003)",
    ),
    LimitOption(
        "--max-connections",
        "SIGNALING_MAX_CONNECTIONS",
        int,
        "max_connections",
        "open WebSocket connections (more: HTTP 503)",
    ),
    LimitOption(
        "--max-connections-per-address",
        "SIGNALING_MAX_CONNECTIONS_PER_ADDRESS",
        int,
        "max_connections_per_address",
        "open, and pending, connections per source address (more: HTTP 429)",
    ),
    LimitOption(
        "--max-handshakes",
        "SIGNALING_MAX_HANDSHAKES",
        int,
        "max_handshakes",
        "TCP connections not answered yet (more: closed at once)",
    ),
    LimitOption("--max-queue", "SIGNALING_MAX_QUEUE", int, "max_queue", "received frames buffered"),
    LimitOption("--write-limit", "SIGNALING_WRITE_LIMIT", int, "write_limit", "write buffer bytes"),
    LimitOption(
        "--log-interval",
        "SIGNALING_LOG_INTERVAL",
        float,
        "log_interval",
        "seconds between two lines of one repeated warning",
    ),
)

# Attributes every LogRecord has; anything else came through ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if value is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        # websockets logs one info line per connection: a connection flood would
        # flood the log too. Our own events say what matters.
        logging.getLogger("websockets").setLevel(logging.WARNING)


def _positive(kind: Callable[[str], T], *, or_zero: bool = False) -> Callable[[str], T]:
    """An option type: a finite `kind` (int or float) above 0, or also 0 with `or_zero`."""
    least = ">= 0" if or_zero else "> 0"

    def parse(text: str) -> T:
        value = number(kind, text)
        if not (math.isfinite(value) and (value > 0 or (or_zero and value == 0))):
            raise argparse.ArgumentTypeError(f"must be {least}, not {text!r}")
        return value

    return parse


def _ice_url(text: str) -> str:
    """An option type: a STUN or TURN URL a peer can use (`_ICE_URL`)."""
    match = _ICE_URL.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            "expected stun:, stuns:, turn: or turns: HOST[:PORT], TURN's with an optional "
            f"?transport=udp|tcp, not {text!r}"
        )
    host(match["host"])
    if match["port"] is not None and not 0 < int(match["port"]) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1..65535 in {text!r}")
    if match["transport"] is not None and match["scheme"].startswith("stun"):
        raise argparse.ArgumentTypeError(f"a STUN URL has no transport: {text!r}")
    return text


def _env_ice_servers(parser: argparse.ArgumentParser) -> list[str]:
    """The URLs of SIGNALING_ICE_SERVERS (comma-separated), each checked as --ice-server's."""
    text = os.environ.get(ICE_SERVERS_VARIABLE, "")
    try:
        return [_ice_url(item.strip()) for item in text.split(",") if item.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{ICE_SERVERS_VARIABLE}={text!r}: {exc}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m peerlab.signaling", description="PeerLab WebSocket signaling server."
    )
    env_option(parser, "--host", "SIGNALING_HOST", "0.0.0.0", host, help="address to listen on")
    env_option(parser, "--port", "SIGNALING_PORT", "8765", port, help="port, 0 for any")
    env_option(
        parser,
        "--secret",
        "PEERLAB_SECRET",
        None,
        utf8,
        secret=True,
        help="shared secret for registration tokens; required",
    )
    parser.add_argument(
        "--ping-interval", type=_positive(float, or_zero=True), default=20.0, help="seconds"
    )
    parser.add_argument(
        "--ping-timeout", type=_positive(float, or_zero=True), default=20.0, help="seconds"
    )
    parser.add_argument(
        "--max-size", type=_positive(int), default=256 * 1024, help="largest accepted frame, bytes"
    )
    parser.add_argument(
        "--rate", type=_positive(float), default=100.0, help="frames/s per connection"
    )
    parser.add_argument(
        "--burst", type=_positive(int), default=200, help="frames per connection burst"
    )
    parser.add_argument(
        "--ice-server",
        dest="ice_servers",
        action="append",
        type=_ice_url,
        metavar="URL",
        help="STUN/TURN URL given to peers; repeatable "
        f"(env {ICE_SERVERS_VARIABLE}, comma-separated)",
    )
    env_option(
        parser,
        "--turn-secret",
        "TURN_SECRET",
        None,
        utf8,
        secret=True,
        help="coturn static-auth-secret for TURN REST credentials",
    )
    parser.add_argument(
        "--turn-ttl", type=_positive(int), default=3600, help="TURN credential lifetime, s"
    )
    defaults = ServerConfig(secret="")
    for limit in LIMIT_OPTIONS:
        env_option(
            parser,
            limit.option,
            limit.variable,
            str(getattr(defaults, limit.field)),
            _positive(limit.type),
            dest=limit.field,
            help=limit.help,
        )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[ServerConfig, str]:
    """Return the server configuration and the log level; exit 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("a secret is required: pass --secret or set PEERLAB_SECRET")
    ice_servers = args.ice_servers or _env_ice_servers(parser)
    config = ServerConfig(
        secret=args.secret,
        host=args.host,
        port=args.port,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout or None,
        max_size=args.max_size,
        rate=args.rate,
        burst=args.burst,
        ice_servers=tuple(ice_servers),
        turn_secret=args.turn_secret or None,
        turn_ttl=args.turn_ttl,
        **{limit.field: getattr(args, limit.field) for limit in LIMIT_OPTIONS},
    )
    return config, args.log_level


def ensure_fd_limit(config: ServerConfig) -> None:
    """Raise the soft descriptor limit to what the connection caps need, if it is lower.

    Past the limit, ``accept()`` fails for everyone, /healthz included: the caps
    must be what refuses clients, not the kernel.
    """
    needed = config.max_connections + config.max_handshakes + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log_event(logging.WARNING, "fd_limit_low", limit=target, needed=needed)


async def run(config: ServerConfig) -> int:
    """Serve until SIGTERM or SIGINT, then close every connection with 1001: exit status 0.
    A server that cannot listen (the port is taken, the host is not this machine's or does
    not resolve) logs `listen_failed` and returns exit status 1."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = SignalingServer(config)
    try:
        await server.start()
    except OSError as exc:
        log_event(
            logging.ERROR,
            "listen_failed",
            host=config.host,
            port=config.port,
            error=exc.strerror or str(exc),
            settings=_LISTEN_SETTINGS,
        )
        return 1
    try:
        await stop.wait()
    finally:
        await server.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    config, log_level = parse_config(argv)
    configure_logging(log_level)
    ensure_fd_limit(config)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
