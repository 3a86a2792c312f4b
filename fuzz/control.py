"""The control API campaign: mutated requests to a real agent's `ControlServer` over HTTP.

The agent is a real `Agent` whose signaling URL is a bound port that never listens (every
attempt to register is refused), started as `python -m peerlab.peer` starts one: control
API first, then the agent, which keeps trying to register in the background. Requests
(fuzz/control_cases.py) go one at a time, one connection each, over HTTP on 127.0.0.1.
Invariants (docs/control-api.md; fuzz/control_http.py checks each answer):
- every answer has a documented status (500 is documented as a bug: a finding), is JSON
  (errors `{"error": "...", "code"?: "..."}`, a 405 with `Allow`; JSON lines for
  /events.jsonl and /events/stream), and the answer to a HEAD request has no body;
- `/connect`, `/wait` and `/wait-state` may wait as long as their `timeout` says: one
  still waiting after `QUICK` finishes in the background, abandoned after a second
  (outcome `waiting`); any other request must be answered within `TIMEOUT`;
- after the head of a live event stream, the campaign hangs up and provokes an event,
  which the stream's handler then tries to send to nobody;
- `/healthz` keeps answering, nothing is logged at ERROR or with a traceback (an entry
  is reported with the case whose request had just finished), and the control server
  closes within `CLOSE_LIMIT`, handlers left behind by gone clients included.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
from yarl import URL

from fuzz.campaign import Budget, Cases, Report, case_rng, counts
from fuzz.control_cases import AGENT, ControlCase, make_case
from fuzz.control_http import TIMEOUT, WAITING, judge, request
from fuzz.errorlog import ErrorLog
from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.control import ControlServer

TARGET = "control"
QUICK = 0.05
"""How long a case's request holds up the next case before finishing in the background."""
HEALTH_EVERY = 250
CLOSE_LIMIT = 1.0
"""`ControlServer.close()` must be done within this; aiohttp itself waits up to 60 s."""
TYPING = {"peer": "bob", "type": "typing", "conversation": "c", "state": "started"}
"""Sent to provoke an event (typing_dropped or typing_throttled) after a stream's head."""


class Campaign:
    """Runs cases against one agent's control API and records what they came to."""

    def __init__(
        self, report: Report, http: aiohttp.ClientSession, base: URL, replaying: bool
    ) -> None:
        self.report = report
        self.http = http
        self.base = base
        self.replaying = replaying
        self.health = [0, 0]  # answered, asked
        self.left_behind: list[tuple[int, str]] = []
        """(case, input) of requests whose client left while the handler still ran."""

    async def case(self, index: int, case: ControlCase) -> None:
        report = self.report
        report.cases += 1
        try:
            answer = await request(self.base, self.http, case, self.provoke)
        except TimeoutError:
            if URL(case.target).path in WAITING:
                report.outcomes["waiting"] += 1
                self.left_behind.append((index, case.literal()))
            else:
                report.outcomes["no answer"] += 1
                report.find(index, f"no answer within {TIMEOUT:g}s", case.literal())
            return
        except aiohttp.ClientError as exc:
            report.outcomes["failed"] += 1
            report.find(index, f"the request failed: {exc!r}", case.literal())
            return
        report.outcomes[str(answer.status)] += 1
        if answer.live:
            self.left_behind.append((index, case.literal()))
        problem = judge(case, answer)
        if problem is not None:
            report.find(index, problem, case.literal())
        if self.replaying:
            report.trace.append(f"answer: {answer.status} {answer.content_type} {answer.body!r}")

    async def provoke(self) -> None:
        async with self.http.post(self.base / "send", json=TYPING) as response:
            await response.read()
        await asyncio.sleep(0.01)  # the stream's handler wakes up and writes

    async def healthz(self, index: int) -> None:
        self.health[1] += 1
        try:
            async with self.http.get(self.base / "healthz") as response:
                data = await response.json()
                if response.status == 200 and data.get("status") == "ok":
                    self.health[0] += 1
                    return
                problem = f"/healthz answered {response.status} {data!r}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"/healthz failed: {exc!r}"
        self.report.find(index, problem, "GET /healthz")

    def closed_late(self, last: int) -> None:
        """Report a control server that did not close in time, with the cases to blame."""
        index, literal = self.left_behind[0] if self.left_behind else (last, "")
        cases = ", ".join(str(i) for i, _ in self.left_behind[:10])
        self.report.find(
            index,
            f"ControlServer.close() had not returned after {CLOSE_LIMIT:g}s: aiohttp waits "
            "(up to 60 s) for handlers whose client has gone; cases that left one (a live "
            f"stream, an abandoned wait): {cases or 'none'}",
            literal,
        )


async def campaign(seed: int, budget: Budget, only: int | None) -> Report:
    report = Report(TARGET, seed)
    with socket.socket() as nowhere, ErrorLog() as errors:
        nowhere.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        url = f"ws://127.0.0.1:{nowhere.getsockname()[1]}/"
        agent = Agent(AgentConfig(AGENT, "lab", url, "0" * 64))
        control = ControlServer(agent, "127.0.0.1", 0)
        await control.start()
        starting = asyncio.create_task(agent.start())
        # A connection per request: no case leaves anything on a connection for the next.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as http:
            run = Campaign(report, http, URL(f"http://127.0.0.1:{control.port}"), only is not None)
            last = only or 0
            try:
                last = await _run(run, errors, seed, budget, only)
            finally:
                await agent.stop()
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                try:
                    await asyncio.wait_for(control.close(), CLOSE_LIMIT)
                except TimeoutError:
                    run.closed_late(last)
        for problem in errors.take():
            report.find(last, problem, "(while stopping the agent)")
    return report


async def _run(run: Campaign, errors: ErrorLog, seed: int, budget: Budget, only: int | None) -> int:
    """Run the cases; returns the index of the last one."""
    report = run.report
    pending: set[asyncio.Task[None]] = set()
    index = 0
    for index in Cases(report, budget, only):
        case = make_case(case_rng(TARGET, seed, index))
        if run.replaying:
            report.trace.append(f"input: {case.literal()}")
        task = asyncio.create_task(run.case(index, case))
        done, _ = await asyncio.wait({task}, timeout=None if run.replaying else QUICK)
        if not done:
            pending.add(task)
            task.add_done_callback(pending.discard)
        for problem in errors.take():
            report.find(index, problem, case.literal())
        if index % HEALTH_EVERY == 0:
            await run.healthz(index)
    await asyncio.gather(*pending)  # each ends within WAIT_LIMIT
    await run.healthz(index)
    for problem in errors.take():
        report.find(index, problem, "(after the last case)")
    statuses = report.outcomes.copy()
    waiting = statuses.pop("waiting", 0)
    report.details += [
        f"by status {counts(statuses)}",
        f"waiting={waiting}",
        f"healthz={run.health[0]}/{run.health[1]}",
    ]
    return index


def run(seed: int, budget: Budget, only: int | None = None) -> Report:
    return asyncio.run(campaign(seed, budget, only))
