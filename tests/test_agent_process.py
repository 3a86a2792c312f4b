"""`python -m peerlab.peer` as a real process: the control API line on stdout, and a clean
exit (status 0, no traceback) on SIGTERM, SIGINT or POST /shutdown — also while the
signaling server cannot be reached."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 8.0
# The agent's own settings: a developer's environment must not reach the agent under test.
AGENT_VARIABLES = (
    "PEER_ID",
    "PEER_ROOM",
    "SIGNALING_URL",
    "PEERLAB_SECRET",
    "PEER_TOKEN",
    "CONTROL_HOST",
    "CONTROL_PORT",
    "EVENT_LOG",
    "STORE",
)


def free_port() -> int:
    """A TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AgentProcess:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.announcement: dict = {}

    async def read_announcement(self) -> str:
        """The first stdout line, parsed into `announcement`; returns the raw line."""
        line = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        assert line, f"agent exited before listening: {await self.process.stderr.read()!r}"
        self.announcement = json.loads(line)
        return line.decode()

    async def health(self) -> dict:
        url = f"{self.announcement['control_url']}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            return await response.json()

    async def finish(self) -> tuple[int, str, str]:
        """Wait for the exit: (status, rest of stdout, stderr)."""
        stdout, stderr = await asyncio.wait_for(self.process.communicate(), TIMEOUT)
        return self.process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
async def unreachable_agent() -> AsyncIterator[AgentProcess]:
    """An agent whose signaling URL has nobody listening: it keeps trying to register."""
    env = {k: v for k, v in os.environ.items() if k not in AGENT_VARIABLES}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peerlab.peer",
        "--id",
        "alice",
        "--secret",
        "s",
        "--signaling",
        f"ws://127.0.0.1:{free_port()}",
        "--control-port",
        "0",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield AgentProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_control_port_is_announced_on_stdout_in_one_json_line(unreachable_agent):
    line = await unreachable_agent.read_announcement()
    port = unreachable_agent.announcement["control_port"]
    assert line == (
        json.dumps(
            {"peer": "alice", "control_port": port, "control_url": f"http://127.0.0.1:{port}"}
        )
        + "\n"
    )
    assert port > 0
    assert (await unreachable_agent.health())["peer"] == "alice"
    unreachable_agent.process.send_signal(signal.SIGTERM)
    status, rest, stderr = await unreachable_agent.finish()
    assert (status, rest) == (0, ""), stderr  # nothing else is ever written to stdout
    assert f"peer alice: control API on http://127.0.0.1:{port}" in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_while_signaling_is_unreachable_exits_cleanly(unreachable_agent, signum):
    await unreachable_agent.read_announcement()
    # Still inside start(), waiting to register (for up to 10 s).
    assert (await unreachable_agent.health())["registered"] is False
    unreachable_agent.process.send_signal(signum)
    status, _, stderr = await unreachable_agent.finish()
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert "CancelledError" not in stderr


async def test_shutdown_while_signaling_is_unreachable_exits_cleanly(unreachable_agent):
    await unreachable_agent.read_announcement()
    url = f"{unreachable_agent.announcement['control_url']}/shutdown"
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        assert (await response.json()) == {"status": "stopping"}
    status, _, stderr = await unreachable_agent.finish()
    assert status == 0, stderr
    assert "Traceback" not in stderr


async def _run_agent(*args: str) -> tuple[int, str]:
    """Run the agent to its exit; (status, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in AGENT_VARIABLES}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerlab.peer", "--id", "alice", "--secret", "s", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    return process.returncode, stderr.decode()


async def test_a_control_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = await _run_agent("--control-port", str(port))
    assert status == 1 and "Traceback" not in stderr, stderr
    assert (
        f"peer alice: the control API cannot listen on 127.0.0.1:{port} "
        "(--control-host/CONTROL_HOST, --control-port/CONTROL_PORT): " in stderr
    )


async def test_a_signaling_url_the_client_refuses_is_a_usage_error():
    # Refused before anything starts, with the option named (tests/test_cli_env.py: all).
    status, stderr = await _run_agent("--control-port", "0", "--signaling", "notaurl")
    assert status == 2 and "Traceback" not in stderr, stderr
    assert "error: argument --signaling: expected a ws:// or wss:// URL: notaurl" in stderr


async def test_a_store_that_cannot_be_trusted_stops_the_agent_with_the_recovery(tmp_path):
    store = tmp_path / "alice.db"
    store.write_bytes(b"this is not a database " * 100)
    status, stderr = await _run_agent("--control-port", "0", "--store", str(store))
    assert status == 1 and "Traceback" not in stderr, stderr
    assert f"store {store} cannot be trusted" in stderr
    assert "mv $f $f.broken" in stderr  # the documented recovery (docs/store.md)
