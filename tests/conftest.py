"""Shared fixtures: a real signaling server on port 0 and real agents connected to it; the
container tests' order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.manager import ManagerConfig
from peerlab.signaling.auth import make_token
from peerlab.signaling.server import ServerConfig, SignalingServer

SECRET = "test-secret"
ROOM = "room1"

AgentFactory = Callable[..., Awaitable[Agent]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Container tests longest first, by their marker's `stack_s` (the seconds of stack
    they hold, as measured in `make test`); the rest keep their order. `make suite-check`'s
    workers then take the long ones first, beside the scenarios: in file order, a 35 s
    lab started 155 s into the container round and held its end alone."""

    def stack_seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("containers")
        return marker.kwargs.get("stack_s", 0.0) if marker else 0.0

    items.sort(key=stack_seconds, reverse=True)


@pytest.fixture
async def signaling_server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer(ServerConfig(secret=SECRET, host="127.0.0.1", port=0)) as server:
        yield server


@pytest.fixture
async def make_agent(signaling_server: SignalingServer) -> AsyncIterator[AgentFactory]:
    """Start agents registered with the test server; every one is stopped afterwards."""
    agents: list[Agent] = []

    async def start(peer_id: str, manager: ManagerConfig | None = None) -> Agent:
        agent = Agent(
            AgentConfig(
                peer_id,
                ROOM,
                signaling_server.url,
                make_token(SECRET, ROOM, peer_id),
                manager=manager or ManagerConfig(),
            )
        )
        agents.append(agent)
        await agent.start()
        return agent

    yield start
    for agent in agents:
        with contextlib.suppress(Exception):
            await agent.stop()
