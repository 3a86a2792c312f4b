"""Stopping an agent: its links' closing and signaling's closing handshake both wait on
the network, so they run side by side (a stack torn down all at once stops its agents
into a dead network)."""

from __future__ import annotations

import asyncio

from peerlab.peer.agent import Agent, AgentConfig


class _Closing:
    """Records the order of the stop's steps; the links stay closing until signaling's
    close has begun (they would wait forever if the two ran one after the other)."""

    def __init__(self, steps: list[str]):
        self.steps = steps
        self.signaling_closing = asyncio.Event()

    async def close(self) -> None:  # the manager's: byes sent, links closing
        self.steps.append("byes")

    async def wait_closed(self) -> None:
        await self.signaling_closing.wait()
        self.steps.append("links closed")


class _Signaling:
    def __init__(self, closing: _Closing):
        self._closing = closing

    async def close(self) -> None:
        self._closing.steps.append("signaling closing")
        self._closing.signaling_closing.set()


async def test_an_agent_stops_its_links_and_signaling_side_by_side_after_the_byes():
    agent = Agent(AgentConfig("peer1", "room1", "ws://127.0.0.1:9/", "token"))
    steps: list[str] = []
    agent.manager = _Closing(steps)
    agent.signaling = _Signaling(agent.manager)
    await asyncio.wait_for(agent.stop(), timeout=5)
    assert steps == ["byes", "signaling closing", "links closed"], steps
    assert agent.stopped.is_set()
