"""`Lab`: what a scenario script gets — the running stack, its agents, its NAT routers
(their NAT types proven at start), Toxiproxy, the fault vocabulary (`lab.faults`), Docker
actions, progress reporting and delivery checks — and the guarantee that it is torn down.

    async with Lab.open("two_peers", peers=2, seed=1) as lab:
        await lab.connect("peer1", "peer2")
        ...

On exit (normal, failure or Ctrl-C) the lab saves the run's evidence into its results
folder (every agent's event log, every container's log, Toxiproxy's and the routers'
state; the fault history is written as it happens), removes its host NOTRACK rules and
every container, network and volume of its Compose project.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from peerlab.scenarios import stack_slots
from peerlab.scenarios.agent_client import AgentClient, AgentError
from peerlab.scenarios.checks import DeliveryReport, assert_delivered, delivery_report
from peerlab.scenarios.faults import Faults
from peerlab.scenarios.history import History
from peerlab.scenarios.host_conntrack import HostConntrackExemption
from peerlab.scenarios.nat_check import verify_nats
from peerlab.scenarios.nat_matrix import without_turn
from peerlab.scenarios.readiness import Probe, wait_ready
from peerlab.scenarios.router_client import RouterClient
from peerlab.scenarios.stack import (
    CONTROL_PORT,
    INFRA_SERVICES,
    TOXIPROXY_PORT,
    Containers,
    Stack,
    peer_names,
)
from peerlab.scenarios.subnets import release_prefix
from peerlab.scenarios.topology import ROUTER_CONTROL_PORT, parse_topology
from peerlab.scenarios.toxiproxy import Toxiproxy


class Progress:
    """Live progress lines on stderr: elapsed time, scenario, step."""

    def __init__(self, scenario: str, stream: Any = sys.stderr):
        self.scenario = scenario
        self._stream = stream
        self._started = time.monotonic()

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:7.1f}s] {self.scenario}: {text}", file=self._stream, flush=True)


@dataclass
class Counters:
    sent: int = 0
    links: set[tuple[str, str]] = field(default_factory=set)
    acked_by_pair: dict[tuple[str, str], int] = field(default_factory=dict)
    """(sender, receiver) → messages acked, as last counted for that pair."""

    @property
    def acked(self) -> int:
        return sum(self.acked_by_pair.values())


class Lab:
    def __init__(
        self,
        scenario: str,
        run_dir: Path,
        peers: int,
        seed: int,
        project: str,
        env: dict[str, str] | None = None,
        topology: Mapping[str, Any] | None = None,
        body_s: float = 0.0,
    ):
        self.scenario = scenario
        self.body_s = body_s
        """The scenario's estimate of its body, in seconds: stacks start longest first."""
        self.run_dir = run_dir
        self.peers = peer_names(peers)
        self.random = random.Random(seed)
        self.seed = seed
        # Checked before anything starts: a bad topology costs no container.
        self.topology = parse_topology(topology, self.peers)
        self.containers = Containers(project)
        prefix = self.containers.claim_prefix(random.Random())
        self.stack = Stack(
            project, run_dir, peers, env, prefix=prefix, topology=self.topology, seed=seed
        )
        self.routers: dict[str, RouterClient] = {}
        self.host_conntrack = HostConntrackExemption(self.containers)
        self.history = History(run_dir / "history.jsonl")
        self.faults = Faults(self)
        self.progress = Progress(scenario)
        self.counters = Counters()
        self.phases: dict[str, float] = {}
        """Seconds spent waiting for a stack slot, starting the stack (up, healthy, NATs
        proven) and tearing it down."""
        self.agents: dict[str, AgentClient] = {}
        self.toxiproxy: Toxiproxy
        self._session: aiohttp.ClientSession | None = None
        self._slot = stack_slots.StackSlot(None)

    @classmethod
    def open(
        cls,
        scenario: str,
        run_dir: Path,
        *,
        peers: int,
        seed: int,
        env: dict[str, str] | None = None,
        topology: Mapping[str, Any] | None = None,
        body_s: float = 0.0,
    ) -> Lab:
        """A lab whose Compose project name is unique to this run and scenario, and on
        the Docker host: runs of the same scenario started in the same second by two
        processes (results folders of their own) differ by the random tail."""
        # Compose project names allow lowercase letters, digits, "-" and "_" only.
        unique = f"peerlab-{run_dir.parent.name}-{run_dir.name}-{secrets.token_hex(2)}"
        project = re.sub(r"[^a-z0-9-]", "-", unique.lower())
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(scenario, run_dir, peers, seed, project, env, topology, body_s)

    async def __aenter__(self) -> Lab:
        # No cap on connections (aiohttp's default is 100 per session): a request waiting
        # for a free one spends its own timeout there. 240 concurrent chats of a 16-peer
        # mesh waited up to 11 s for a slot, and /send timed out while the agents
        # answered within 1.5 s (README, "Scale").
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        queued = time.monotonic()
        try:
            # Not part of the scenario's time: waiting for other runs' stacks to go, or
            # to finish starting.
            weight = stack_slots.stack_weight(len(self.peers), len(self.topology.lans), self.body_s)
            self._slot = await stack_slots.acquire(self.progress, weight)
            turn = await stack_slots.start_turn(self.progress, weight)
            self.phases["queued"] = time.monotonic() - queued
        except BaseException:  # nothing started yet: give back what was taken
            self._slot.release()
            release_prefix(self.stack.prefix)
            self.containers.close()
            await self._session.close()
            raise
        started = time.monotonic()
        try:
            try:
                await self.start(self.peers)
            finally:
                turn.release()
            self.toxiproxy = Toxiproxy(
                f"http://{await self.containers.published('toxiproxy', TOXIPROXY_PORT)}",
                self._session,
            )
            if self.topology.lans:
                await self._prove_nats()
        except BaseException:
            await self._teardown()
            raise
        self.phases["start"] = time.monotonic() - started
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # Shielded: Ctrl-C during the scenario must not also cancel the cleanup.
        await asyncio.shield(self._teardown())

    # ---- stack ----

    async def start(self, peers: Sequence[str]) -> None:
        """Bring up the infrastructure and routers (once) and these peers; wait until all
        are ready: Toxiproxy's API and STUN answer, each router's API answers, each agent
        is registered with the signaling server."""
        self.progress(f"starting {', '.join(peers)} (compose project {self.stack.project})")
        started = time.monotonic()
        await self.stack.up([*INFRA_SERVICES, *self.topology.routers, *peers])
        if self.topology.lans and not self.host_conntrack.installed:
            networks = ["lab", *(lan.network for lan in self.topology.lans)]
            bridges = await self.host_conntrack.install(networks)
            self.progress(f"host connection tracking off for the lab's bridges {bridges}")
        await asyncio.gather(*(self._add_agent(name) for name in peers))
        for lan in self.topology.lans:
            if lan.name not in self.routers:
                url = f"http://{await self.containers.published(lan.router, ROUTER_CONTROL_PORT)}"
                self.routers[lan.name] = RouterClient(lan.router, url, self._session)
        probes = {
            "toxiproxy": self._answers("toxiproxy", TOXIPROXY_PORT, "/version"),
            "stun": self._stun_answers,
            **{
                lan.router: self._answers(lan.router, ROUTER_CONTROL_PORT)
                for lan in self.topology.lans
            },
            **{name: self._registered(name) for name in peers},
        }
        await wait_ready(probes, self.containers.state, timeout=120)
        self.progress(f"stack ready in {time.monotonic() - started:.1f}s")

    def _answers(self, service: str, port: int, path: str = "/healthz") -> Probe:
        async def probe() -> str | None:
            url = f"http://{await self.containers.published(service, port)}{path}"
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
                return None if reply.status == 200 else f"answers {reply.status}"

        return probe

    async def _stun_answers(self) -> str | None:
        await self.containers.exec("stun", ["turnutils_stunclient", f"{self.stack.prefix}.0.11"])
        return None

    def _registered(self, peer: str) -> Probe:
        answers = self._answers(peer, CONTROL_PORT)

        async def probe() -> str | None:
            if (missing := await answers()) is not None:
                return missing
            health = await self.agents[peer].health()
            return None if health["registered"] else "its agent is not registered yet"

        return probe

    async def kill(self, peer: str) -> None:
        """SIGKILL a peer's container (a crash), recorded in the history as a nemesis
        `kill`: the checker allows a dead sender's unacked messages to be lost."""
        self.history.record("nemesis", "invoke", "kill", {"peer": peer})
        await self.containers.kill(peer)
        self.history.record("nemesis", "ok", "kill", {"peer": peer})
        self.progress(f"{peer} killed")

    async def restart(self, peer: str) -> None:
        """Start a killed peer's container again and wait until its agent answers."""
        self.history.record("nemesis", "invoke", "restart", {"peer": peer})
        await self.containers.start(peer)
        await self.start([peer])  # its control port is a new one
        self.history.record("nemesis", "ok", "restart", {"peer": peer})
        self.progress(f"{peer} started again")

    async def _prove_nats(self) -> None:
        started = time.monotonic()
        self.history.record("nemesis", "invoke", "nat-check", self.topology.placement)
        lines = await verify_nats(self.containers, self.topology, self.stack.prefix)
        self.history.record("nemesis", "ok", "nat-check", lines)
        for line in lines:
            self.progress(f"proof: {line}")
        self.progress(f"NAT types proven in {time.monotonic() - started:.1f}s")

    async def _add_agent(self, name: str) -> None:
        """A client of the agent's control API, which finds the API again when Docker
        moves its published port (the container restarted or changed networks)."""

        async def locate() -> str:
            return f"http://{await self.containers.published(name, CONTROL_PORT)}"

        self.agents[name] = AgentClient(name, await locate(), self._session, locate=locate)

    async def wait_registered(self, peer: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                health = await self.agents[peer].health()
                if health["registered"]:
                    return
                last = f"health {health}"
            except AgentError as exc:
                last = str(exc)
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"{peer} not registered with signaling after {timeout:g}s (last: {last})"
        )

    # ---- acting through agents ----

    async def connect(self, a: str, b: str, **options: Any) -> dict[str, Any]:
        """Connect a to b (options: relay_only, turn, timeout, as AgentClient.connect),
        recorded in the run's history as a workload operation of process `a`. `turn=False`
        is the link's, at both ends: b offers no relay candidate either (a's own option
        alone still let b's relay carry the link, around any cut of the direct path). A
        link without TURN between NATs that cannot connect directly (the NAT matrix's
        theory, which it checks every run) fails at once, saying so, instead of after the
        agent's connect timeout."""
        if not options.get("turn", True) and (why := without_turn(self.topology, a, b)):
            raise AgentError(f"{a} ↔ {b} asked without TURN, but {why}")
        value = {"to": b, **options}
        self.history.record(a, "invoke", "connect", value)
        try:
            if options.get("turn") is False:
                await self.agents[b].link_options(a, turn=False)
            link = await self.agents[a].connect(b, **options)
        except Exception as exc:
            self.history.record(a, "fail", "connect", value, error=str(exc))
            raise
        self.counters.links.add(tuple(sorted((a, b))))
        pair = link.get("candidate_pair") or {}
        kinds = "→".join(pair.get(end, {}).get("type", "?") for end in ("local", "remote"))
        self.history.record(a, "ok", "connect", {**value, "candidates": kinds})
        self.progress(f"{a} ↔ {b} connected ({kinds} candidates)")
        return link

    async def send(self, a: str, b: str, type: str, **fields: Any) -> dict[str, Any] | None:
        """a sends b a message (None: a typing indicator held back); recorded in the run's
        history as a workload operation of process `a`: invoke, then ok (with the
        message's id), info (not sent) or fail."""
        value = {"to": b, "type": type}
        self.history.record(a, "invoke", "send", value)
        try:
            message = await self.agents[a].send(b, type, **fields)
        except Exception as exc:
            self.history.record(a, "fail", "send", value, error=str(exc))
            raise
        if message is None:
            self.history.record(a, "info", "send", value)
            return None
        self.history.record(a, "ok", "send", {**value, "id": message["id"]})
        if type != "typing":
            self.counters.sent += 1
        return message

    async def send_every_type(self, a: str, b: str, conversation: str) -> list[dict[str, Any]]:
        """text, a second text, edit, reaction, delete and typing from a to b."""
        first = await self.send(a, b, "text", conversation=conversation, body=f"hello {b} from {a}")
        second = await self.send(a, b, "text", conversation=conversation, body="oops")
        reliable = [
            first,
            second,
            await self.send(
                a,
                b,
                "edit",
                conversation=conversation,
                target=first["id"],
                body=f"hello {b}, {a} here (edited)",
            ),
            await self.send(
                a,
                b,
                "reaction",
                conversation=conversation,
                target=first["id"],
                emoji="👍",
                action="add",
            ),
            await self.send(a, b, "delete", conversation=conversation, target=second["id"]),
        ]
        await self.send(a, b, "typing", conversation=conversation, state="started")
        return reliable

    async def send_texts(
        self, a: str, b: str, conversation: str, count: int, pause: float = 0.0
    ) -> list[dict[str, Any]]:
        sent = []
        for i in range(count):
            sent.append(
                await self.send(a, b, "text", conversation=conversation, body=f"{a}→{b} #{i}")
            )
            if pause:
                await asyncio.sleep(pause)
        return sent

    @contextlib.asynccontextmanager
    async def keep_sending(
        self, pairs: Sequence[tuple[str, str]], conversation: str, interval: float = 0.1
    ) -> AsyncIterator[None]:
        """Each (sender, receiver) sends a text every `interval` while the block runs; a
        sender's failure fails the scenario when the block ends."""
        stop = asyncio.Event()

        async def chatter(a: str, b: str) -> None:
            i = 0
            while not stop.is_set():
                await self.send(a, b, "text", conversation=conversation, body=f"{a}→{b} #{i}")
                i += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

        tasks = [asyncio.create_task(chatter(a, b)) for a, b in pairs]
        try:
            yield
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- checking ----

    async def wait_all_acked(self, pairs: Sequence[tuple[str, str]], timeout: float = 30.0) -> None:
        """Wait until every reliable message each sender sent its receiver is acked."""
        deadline = time.monotonic() + timeout
        while True:
            reports = await self.delivery_reports(pairs)
            if all(not r.unacked for r in reports) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        for r in reports:
            self.counters.acked_by_pair[(r.sender, r.receiver)] = len(r.sent) - len(r.unacked)

    async def assert_delivered(
        self, pairs: Sequence[tuple[str, str]], timeout: float = 30.0
    ) -> list[DeliveryReport]:
        """Every message sent along each (sender, receiver) pair acked, delivered exactly
        once and in order; the AssertionError names each message that was not."""
        await self.wait_all_acked(pairs, timeout)
        reports = await self.delivery_reports(pairs)
        assert_delivered(reports)
        total = sum(len(r.sent) for r in reports)
        self.progress(
            f"{total} messages over {len(pairs)} directions: all acked, delivered once, in order"
        )
        return reports

    async def delivery_reports(self, pairs: Sequence[tuple[str, str]]) -> list[DeliveryReport]:
        events = {
            name: await self.agents[name].events() for name in {p for pair in pairs for p in pair}
        }
        return [delivery_report(events[s], events[r], s, r) for s, r in pairs]

    async def assert_same_history(self, a: str, b: str, conversation: str) -> dict[str, Any]:
        here = await self.agents[a].history(b, conversation)
        there = await self.agents[b].history(a, conversation)
        assert here["entries"] == there["entries"], (
            f"history of {conversation!r} differs:\n  {a}: {here['entries']}\n"
            f"  {b}: {there['entries']}"
        )
        assert not here["anomalies"] and not there["anomalies"], (
            f"anomalies in {conversation!r}: {a}: {here['anomalies']}, {b}: {there['anomalies']}"
        )
        return here

    # ---- evidence and teardown ----

    async def _collect(self) -> None:
        """Everything at once: at teardown, the time this takes is the user's."""
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        services = [*INFRA_SERVICES, *self.topology.routers, *self.agents]
        for service, text in zip(
            services, await asyncio.gather(*map(self.containers.logs, services)), strict=True
        ):
            (logs / f"{service}.log").write_text(text)
        agents = await asyncio.gather(*(_state_or_error(a) for a in self.agents.values()))
        (self.run_dir / "agents.json").write_text(
            json.dumps(dict(zip(self.agents, agents, strict=True)), indent=2)
        )
        try:
            proxies = await self.toxiproxy.proxies()
        except Exception as exc:  # evidence collection must not mask the real failure
            proxies = {"error": str(exc)}
        (self.run_dir / "toxiproxy.json").write_text(json.dumps(proxies, indent=2))
        if self.routers:
            routers = await asyncio.gather(*(_state_or_error(r) for r in self.routers.values()))
            (self.run_dir / "routers.json").write_text(
                json.dumps(dict(zip(self.routers, routers, strict=True)), indent=2)
            )

    async def _teardown(self) -> None:
        started = time.monotonic()
        try:
            if self.agents:
                await self._collect()
        except Exception as exc:
            self.progress(f"could not collect all evidence: {exc}")
        finally:
            try:
                # Side by side: the host rules name bridges, not containers. Marked, so
                # that no stack starts meanwhile (stack_slots.start_turn); a mark that
                # cannot be made must not keep the stack up.
                try:
                    mark = stack_slots.teardown_mark(self.stack.project)
                except OSError:
                    mark = stack_slots.StackSlot(None)
                try:
                    results = await asyncio.gather(
                        self.host_conntrack.remove(), self.stack.down(), return_exceptions=True
                    )
                finally:
                    mark.release()
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
                leftovers = await asyncio.to_thread(self.containers.leftovers)
            finally:
                release_prefix(self.stack.prefix)
                self._slot.release()
                # Also when `down` failed: an open HTTP session would be reported at exit.
                self.containers.close()
                if self._session is not None:
                    await self._session.close()
                self.phases["teardown"] = time.monotonic() - started
            if leftovers:
                raise AssertionError(f"teardown left behind: {', '.join(leftovers)}")
            self.progress("stack removed")


async def _state_or_error(client: AgentClient | RouterClient) -> dict[str, Any]:
    """A client's /state, or the error that stood in the way (a killed agent has none)."""
    try:
        return await client.state()
    except Exception as exc:  # evidence collection must not mask the real failure
        return {"error": str(exc)}
