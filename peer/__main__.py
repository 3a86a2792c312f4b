"""`python -m peerlab.peer`: run one PeerLab agent until SIGTERM/SIGINT or POST /shutdown.

Every flag has an environment variable (shown in --help), so a container is configured
by its environment alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.control import ControlServer
from peerlab.peer.events import EventLogError
from peerlab.peer.manager import ManagerConfig
from peerlab.peer.message_channel import ChannelConfig
from peerlab.peer.reliability import MAX_UNACKED_BYTES, MAX_UNACKED_MESSAGES
from peerlab.peer.store import StoreError, parse_sync
from peerlab.signaling.auth import make_token


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Defaults are the environment's strings: argparse converts them with each option's
    # `type`, so a bad value in the environment gets the same clear error as on the CLI.
    p = argparse.ArgumentParser(
        prog="python -m peerlab.peer",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--id", default=_env("PEER_ID"), help="peer id [PEER_ID]")
    p.add_argument("--room", default=_env("PEER_ROOM", "lab"), help="room [PEER_ROOM]")
    p.add_argument(
        "--signaling",
        default=_env("SIGNALING_URL", "ws://127.0.0.1:8765"),
        help="signaling server URL [SIGNALING_URL]",
    )
    p.add_argument(
        "--secret",
        default=_env("PEERLAB_SECRET"),
        help="shared secret the token is derived from [PEERLAB_SECRET]",
    )
    p.add_argument(
        "--token",
        default=_env("PEER_TOKEN"),
        help="registration token, instead of --secret [PEER_TOKEN]",
    )
    p.add_argument(
        "--control-host",
        default=_env("CONTROL_HOST", "127.0.0.1"),
        help="control API address [CONTROL_HOST]",
    )
    p.add_argument(
        "--control-port",
        type=int,
        default=_env("CONTROL_PORT", "8080"),
        help="control API port, 0 for any [CONTROL_PORT]",
    )
    p.add_argument(
        "--event-log",
        default=_env("EVENT_LOG"),
        help="append events as JSONL to this file ({peer} is replaced by the peer id); "
        "an existing log is resumed after a restart [EVENT_LOG]",
    )
    p.add_argument(
        "--store",
        default=_env("STORE"),
        help="durable store of unacked messages and delivery state, a SQLite file ({peer} "
        "is replaced by the peer id; docs/store.md); without it, all in memory [STORE]",
    )
    p.add_argument(
        "--file-owner",
        type=_owner,
        default=_env("PEERLAB_FILE_OWNER") or None,
        metavar="UID:GID",
        help="hand the event log and the store (both readable by their owner only) to this "
        "user, e.g. the host user reading a container's files [PEERLAB_FILE_OWNER]",
    )
    p.add_argument(
        "--store-sync",
        type=_store_sync,
        default=_env("STORE_SYNC", "always"),
        help="'always': commit each accepted message and delivery; N: at most every N ms "
        "[STORE_SYNC]",
    )
    p.add_argument(
        "--relay-only",
        action="store_true",
        default=_env("RELAY_ONLY", "0") == "1",
        help="use only TURN relay candidates [RELAY_ONLY=1]",
    )
    p.add_argument(
        "--retransmit-after",
        type=float,
        default=_env("RETRANSMIT_AFTER", "1.0"),
        help="seconds before an unacked message is resent [RETRANSMIT_AFTER]",
    )
    p.add_argument(
        "--outbox-max-messages",
        type=_positive_int,
        default=_env("OUTBOX_MAX_MESSAGES", str(MAX_UNACKED_MESSAGES)),
        help="most unacked messages held per peer; a send beyond is refused [OUTBOX_MAX_MESSAGES]",
    )
    p.add_argument(
        "--outbox-max-bytes",
        type=_positive_int,
        default=_env("OUTBOX_MAX_BYTES", str(MAX_UNACKED_BYTES)),
        help="most bytes of unacked frames held per peer; a send beyond is refused "
        "[OUTBOX_MAX_BYTES]",
    )
    p.add_argument(
        "--typing-window",
        type=float,
        default=_env("TYPING_WINDOW", "3.0"),
        help="at most one typing indicator per conversation per this many seconds [TYPING_WINDOW]",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=_env("HEARTBEAT_INTERVAL", "0.5"),
        help="heartbeat when idle this long [HEARTBEAT_INTERVAL]",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=_env("HEARTBEAT_TIMEOUT", "2.5"),
        help="report a link disconnected after this long without a frame; "
        "detection takes at most timeout + interval [HEARTBEAT_TIMEOUT]",
    )
    p.add_argument(
        "--failed-after",
        type=float,
        default=_env("FAILED_AFTER", "5.0"),
        help="rebuild a disconnected link after this long [FAILED_AFTER]",
    )
    p.add_argument(
        "--signaling-ping",
        type=float,
        default=_env("SIGNALING_PING", "20"),
        help="signaling keepalive ping interval and timeout (s): a connection that died "
        "silently is noticed within twice this [SIGNALING_PING]",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=_env("CONNECT_TIMEOUT", "15.0"),
        help="longest one connection attempt may take [CONNECT_TIMEOUT]",
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
    await control.start()
    print(
        f"peer {args.id}: control API on http://{args.control_host}:{control.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await agent.start()
        await agent.stopped.wait()
    finally:
        await agent.stop()
        with contextlib.suppress(Exception):
            await control.close()


def main() -> None:
    args = parse_args()
    try:
        asyncio.run(run(args))
    except (EventLogError, StoreError) as exc:
        # A log or store the agent must not use (a symlink, a directory, a damaged store)
        # is a setup mistake: refuse to start with the reason, not a traceback.
        sys.exit(f"peer {args.id}: {exc}")


if __name__ == "__main__":
    main()
