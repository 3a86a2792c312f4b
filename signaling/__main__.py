"""Command line entry point: ``python -m peerlab.signaling``.

Most options can also come from the environment (see ``--help``); a bad value in either
is a usage error (exit status 2) naming the option and, when the value came from there,
the variable. Logs are JSON objects, one per line, on stderr. SIGTERM and SIGINT close
every connection with 1001 (going away) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from peerlab.signaling.env_options import env_option, number, port
from peerlab.signaling.server import ServerConfig, SignalingServer, log_event

T = TypeVar("T")

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


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    """An option type: a finite `kind` (int or float) above 0."""

    def parse(text: str) -> T:
        value = number(kind, text)
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be > 0, not {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m peerlab.signaling", description="PeerLab WebSocket signaling server."
    )
    env_option(parser, "--host", "SIGNALING_HOST", "0.0.0.0", help="address to listen on")
    env_option(parser, "--port", "SIGNALING_PORT", "8765", port, help="port, 0 for any")
    env_option(
        parser, "--secret", "PEERLAB_SECRET", help="shared secret for registration tokens; required"
    )
    parser.add_argument("--ping-interval", type=float, default=20.0, help="seconds")
    parser.add_argument("--ping-timeout", type=float, default=20.0, help="seconds")
    parser.add_argument(
        "--max-size", type=int, default=256 * 1024, help="largest accepted frame, bytes"
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
        metavar="URL",
        help="STUN/TURN URL given to peers; repeatable "
        "(env SIGNALING_ICE_SERVERS, comma-separated)",
    )
    env_option(
        parser,
        "--turn-secret",
        "TURN_SECRET",
        help="coturn static-auth-secret for TURN REST credentials",
    )
    parser.add_argument("--turn-ttl", type=int, default=3600, help="TURN credential lifetime, s")
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
    ice_servers = args.ice_servers if args.ice_servers else _env_list("SIGNALING_ICE_SERVERS")
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


async def run(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection with 1001."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with SignalingServer(config):
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    config, log_level = parse_config(argv)
    configure_logging(log_level)
    ensure_fd_limit(config)
    asyncio.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
