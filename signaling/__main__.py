"""Command line entry point: ``python -m peerlab.signaling``.

Every option can also come from the environment (see ``--help``). Logs are JSON
objects, one per line, on stderr. SIGTERM and SIGINT close every connection with
1001 (going away) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from peerlab.signaling.server import ServerConfig, SignalingServer, log_event

# Descriptors the process needs besides its connections: the listening sockets,
# the event loop's, stdio, the resolver's.
FD_RESERVE = 64


class LimitOption(NamedTuple):
    """A bound of the server's clients (docs/signaling-protocol.md §6); must be positive."""

    option: str
    variable: str
    type: type
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


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m peerlab.signaling", description="PeerLab WebSocket signaling server."
    )
    parser.add_argument(
        "--host", default=env("SIGNALING_HOST", "0.0.0.0"), help="env SIGNALING_HOST"
    )
    parser.add_argument(
        "--port", type=int, default=int(env("SIGNALING_PORT", "8765")), help="env SIGNALING_PORT"
    )
    parser.add_argument(
        "--secret",
        default=env("PEERLAB_SECRET"),
        help="shared secret for registration tokens (env PEERLAB_SECRET; required)",
    )
    parser.add_argument("--ping-interval", type=float, default=20.0, help="seconds")
    parser.add_argument("--ping-timeout", type=float, default=20.0, help="seconds")
    parser.add_argument(
        "--max-size", type=int, default=256 * 1024, help="largest accepted frame, bytes"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="frames/s per connection")
    parser.add_argument("--burst", type=int, default=200, help="frames per connection burst")
    parser.add_argument(
        "--ice-server",
        dest="ice_servers",
        action="append",
        metavar="URL",
        help="STUN/TURN URL given to peers; repeatable "
        "(env SIGNALING_ICE_SERVERS, comma-separated)",
    )
    parser.add_argument(
        "--turn-secret",
        default=env("TURN_SECRET"),
        help="coturn static-auth-secret for TURN REST credentials (env TURN_SECRET)",
    )
    parser.add_argument("--turn-ttl", type=int, default=3600, help="TURN credential lifetime, s")
    defaults = ServerConfig(secret="")
    for limit in LIMIT_OPTIONS:
        # A string default goes through ``type`` too: a bad variable is a clean usage error.
        parser.add_argument(
            limit.option,
            dest=limit.field,
            type=limit.type,
            default=env(limit.variable, str(getattr(defaults, limit.field))),
            help=f"{limit.help} (env {limit.variable}; default %(default)s)",
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
    if args.rate <= 0 or args.burst < 1:
        parser.error("--rate must be > 0 and --burst >= 1")
    for limit in LIMIT_OPTIONS:
        if getattr(args, limit.field) <= 0:
            parser.error(f"{limit.option} must be > 0")
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
