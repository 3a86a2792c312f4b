"""`python -m peerlab.peer`: run one PeerLab agent until SIGTERM/SIGINT or POST /shutdown.

Every flag has an environment variable (shown in --help), so a container is configured
by its environment alone; a bad value in either is a usage error (exit status 2) naming
the flag and, when the value came from there, the variable. Once the control API listens,
the agent writes one JSON line on stdout saying where (`announce`), and nothing else there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import re
import signal
import sys
from pathlib import Path
from typing import TypeVar

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.control import ControlServer
from peerlab.peer.events import EventLogError
from peerlab.peer.manager import ManagerConfig
from peerlab.peer.message_channel import ChannelConfig
from peerlab.peer.signaling_client import SignalingRejected
from peerlab.peer.store import StoreError, parse_sync
from peerlab.signaling.auth import make_token
from peerlab.signaling.env_options import env_option, host, number, port, utf8
from peerlab.signaling.frames import IDENTIFIER

T = TypeVar("T")

# Read as the router reads its booleans (docs/router.md).
_FLAGS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}

# The form of `make_token` (docs/signaling-protocol.md §3): a token of any other form can
# never be accepted, and the agent would retry registering with it for good.
_TOKEN = re.compile(r"[0-9a-f]{64}")

# Where the control API listens, as a bind failure names it.
_CONTROL_SETTINGS = "--control-host/CONTROL_HOST, --control-port/CONTROL_PORT"


def _count(text: str) -> int:
    value = number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = number(float, text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, not {text!r}")
    return value


def _window(text: str) -> float:
    """Seconds, 0 included (no throttling)."""
    value = number(float, text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, not {text!r}")
    return value


def _default(config: type, name: str) -> str:
    """A config dataclass field's default, as an option's (string) default: the dataclass
    is the one place each default is written."""
    (default,) = [f.default for f in dataclasses.fields(config) if f.name == name]
    if isinstance(default, bool):
        return "1" if default else "0"
    return str(default)


def _flag(text: str) -> bool:
    try:
        return _FLAGS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(_FLAGS)}, not {text!r}"
        ) from None


def _identifier(text: str) -> str:
    """A peer id or room: what the signaling server registers (anything else is refused
    there with `bad_field`, and the agent would retry for good)."""
    if not IDENTIFIER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected {IDENTIFIER.pattern}, not {text!r}")
    return text


def _signaling_url(text: str) -> str:
    """A ws:// or wss:// URL with a host, as the signaling client reads it."""
    try:
        uri = parse_uri(text)
    except (InvalidURI, ValueError) as exc:  # ValueError: a port that is not one
        raise argparse.ArgumentTypeError(f"expected a ws:// or wss:// URL: {exc}") from None
    host(uri.host)
    return text


def _token(text: str) -> str:
    """A registration token as `make_token` writes it."""
    if not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError("expected 64 lowercase hex digits (an HMAC-SHA256)")
    return text


def _owner(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"expected UID:GID (numbers), not {text!r}")
    return int(uid), int(gid)


def _store_sync(text: str) -> float | None:
    try:
        return parse_sync(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m peerlab.peer",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    env_option(p, "--id", "PEER_ID", None, _identifier, help="peer id")
    env_option(p, "--room", "PEER_ROOM", "lab", _identifier, help="room")
    env_option(
        p,
        "--signaling",
        "SIGNALING_URL",
        "ws://127.0.0.1:8765",
        _signaling_url,
        help="signaling server URL",
    )
    env_option(
        p,
        "--secret",
        "PEERLAB_SECRET",
        None,
        utf8,
        secret=True,
        help="shared secret the token is derived from",
    )
    env_option(
        p,
        "--token",
        "PEER_TOKEN",
        None,
        _token,
        secret=True,
        help="registration token, instead of --secret",
    )
    env_option(p, "--control-host", "CONTROL_HOST", "127.0.0.1", host, help="control API address")
    env_option(
        p, "--control-port", "CONTROL_PORT", "8080", port, help="control API port, 0 for any"
    )
    env_option(
        p,
        "--event-log",
        "EVENT_LOG",
        help="append events as JSONL to this file ({peer} is replaced by the peer id); "
        "an existing log is resumed after a restart",
    )
    env_option(
        p,
        "--store",
        "STORE",
        help="durable store of unacked messages and delivery state, a SQLite file ({peer} "
        "is replaced by the peer id; docs/store.md); without it, all in memory",
    )
    env_option(
        p,
        "--file-owner",
        "PEERLAB_FILE_OWNER",
        None,
        _owner,
        metavar="UID:GID",
        help="hand the event log and the store (both readable by their owner only) to this "
        "user, e.g. the host user reading a container's files",
    )
    env_option(
        p,
        "--store-sync",
        "STORE_SYNC",
        "always",
        _store_sync,
        help="'always': commit each accepted message and delivery; N: at most every N ms",
    )
    env_option(
        p,
        "--relay-only",
        "RELAY_ONLY",
        _default(ManagerConfig, "relay_only"),
        _flag,
        nargs="?",
        const=True,
        metavar="1|0",
        help="use only TURN relay candidates (the flag alone: 1)",
    )
    env_option(
        p,
        "--retransmit-after",
        "RETRANSMIT_AFTER",
        _default(ChannelConfig, "retransmit_after"),
        _seconds,
        help="seconds before an unacked message is resent",
    )
    env_option(
        p,
        "--outbox-max-messages",
        "OUTBOX_MAX_MESSAGES",
        _default(ChannelConfig, "outbox_max_messages"),
        _count,
        help="most unacked messages held per peer; a send beyond is refused",
    )
    env_option(
        p,
        "--outbox-max-bytes",
        "OUTBOX_MAX_BYTES",
        _default(ChannelConfig, "outbox_max_bytes"),
        _count,
        help="most bytes of unacked frames held per peer; a send beyond is refused",
    )
    env_option(
        p,
        "--typing-window",
        "TYPING_WINDOW",
        _default(ChannelConfig, "typing_window"),
        _window,
        help="at most one typing indicator per conversation per this many seconds (0: any)",
    )
    env_option(
        p,
        "--heartbeat-interval",
        "HEARTBEAT_INTERVAL",
        _default(ChannelConfig, "heartbeat_interval"),
        _seconds,
        help="heartbeat when idle this long",
    )
    env_option(
        p,
        "--heartbeat-timeout",
        "HEARTBEAT_TIMEOUT",
        _default(ChannelConfig, "heartbeat_timeout"),
        _seconds,
        help="report a link disconnected after this long without a frame; "
        "detection takes at most timeout + interval",
    )
    env_option(
        p,
        "--failed-after",
        "FAILED_AFTER",
        _default(ManagerConfig, "failed_after"),
        _seconds,
        help="rebuild a disconnected link after this long",
    )
    env_option(
        p,
        "--signaling-ping",
        "SIGNALING_PING",
        _default(AgentConfig, "signaling_ping"),
        _seconds,
        help="signaling keepalive ping interval and timeout (s): a connection that died "
        "silently is noticed within twice this",
    )
    env_option(
        p,
        "--connect-timeout",
        "CONNECT_TIMEOUT",
        _default(ManagerConfig, "connect_timeout"),
        _seconds,
        help="longest one connection attempt may take",
    )
    args = p.parse_args(argv)
    if not args.id:
        p.error("a peer id is required (--id or PEER_ID)")
    if not args.token and not args.secret:
        p.error("--secret (PEERLAB_SECRET) or --token (PEER_TOKEN) is required")
    return args


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        peer_id=args.id,
        room=args.room,
        signaling_url=args.signaling,
        token=args.token or make_token(args.secret, args.room, args.id),
        event_log=Path(args.event_log.replace("{peer}", args.id)) if args.event_log else None,
        store=Path(args.store.replace("{peer}", args.id)) if args.store else None,
        store_sync_ms=args.store_sync,
        file_owner=args.file_owner,
        signaling_ping=args.signaling_ping,
        manager=ManagerConfig(
            connect_timeout=args.connect_timeout,
            failed_after=args.failed_after,
            relay_only=args.relay_only,
            channel=ChannelConfig(
                retransmit_after=args.retransmit_after,
                outbox_max_messages=args.outbox_max_messages,
                outbox_max_bytes=args.outbox_max_bytes,
                typing_window=args.typing_window,
                heartbeat_interval=args.heartbeat_interval,
                heartbeat_timeout=args.heartbeat_timeout,
            ),
        ),
    )


async def run(args: argparse.Namespace) -> None:
    agent = Agent(config_from_args(args))
    control = ControlServer(agent, args.control_host, args.control_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(agent.stop()))
    try:
        await control.start()
    except OSError as exc:
        await agent.stop()
        sys.exit(
            f"peer {args.id}: the control API cannot listen on "
            f"{args.control_host}:{args.control_port} ({_CONTROL_SETTINGS}): "
            f"{exc.strerror or exc}"
        )
    announce(args.id, args.control_host, control.port)
    try:
        await agent.start()
        await agent.stopped.wait()
    finally:
        await agent.stop()
        with contextlib.suppress(Exception):
            await control.close()


def announce(peer_id: str, host: str, port: int) -> None:
    """Say where the control API listens: one JSON line on stdout, for programs (the only
    thing the agent ever writes there: with --control-port 0 it is how they learn the
    port), and one line on stderr for people."""
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    line = json.dumps({"peer": peer_id, "control_port": port, "control_url": url})
    print(line, flush=True)
    print(f"peer {peer_id}: control API on {url}", file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    try:
        asyncio.run(run(args))
    except (EventLogError, StoreError, SignalingRejected) as exc:
        # A log or store the agent must not use (a symlink, a directory, a damaged store),
        # or a registration the server refuses (a wrong token or URL), is a setup
        # mistake: refuse to start with the reason, not a traceback.
        sys.exit(f"peer {args.id}: {exc}")


if __name__ == "__main__":
    main()
