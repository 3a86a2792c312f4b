"""The signaling campaign: a fuzzing client against a real `SignalingServer` on 127.0.0.1.

Each case sends one message (fuzz/signaling_cases.py), either from the registered client
`mallory` or from a connection that has not registered, then a frame of a unique unknown
type whose `unknown_type` error marks the end of the case's answers: the server handles
one connection's frames in order. Meanwhile a well-behaved pair keeps exchanging offers
(fuzz/signaling_pair.py). Invariants (docs/signaling-protocol.md):
- a message gets exactly one answer: an error frame with a documented code (binary frames:
  `bad_json`), `pong`, or `registered`; or, from `mallory`, none because it was relayed,
  and then the peer it names receives it (`to` removed, `from` set);
- the only connections a message may close are one over `max_size` (1009) and one whose
  register got `auth_failed` (4001); any other close code is a finding;
- nothing is logged at ERROR or with a traceback, `/healthz` keeps answering, and every
  frame of the pair is relayed.
The server runs with its defaults except the rate limit, raised so that no fuzz message
is dropped unread (the limiter has its own tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from fuzz.campaign import Budget, Cases, Report, case_rng, counts
from fuzz.errorlog import ErrorLog
from fuzz.signaling_cases import FUZZER, MAX_SIZE, PAIR, SECRET, SYNC, SignalingCase, make_case
from fuzz.signaling_pair import TIMEOUT, Pair, register
from peerlab.signaling.server import CLOSE_AUTH_FAILED, ServerConfig, SignalingServer

TARGET = "signaling"
CONFIG = ServerConfig(secret=SECRET, host="127.0.0.1", port=0, rate=1e9, burst=10**9)
HEALTH_EVERY = 500
FRESH_FOR = 5.0
"""An unregistered connection is replaced after this long, well before the server's
10 s register timeout would close it in the middle of a case (4003)."""

ERROR_CODES = frozenset(
    {
        "bad_json",
        "missing_field",
        "bad_field",
        "unknown_type",
        "unknown_field",
        "not_registered",
        "already_registered",
        "auth_failed",
        "unknown_peer",
        "rate_limited",
        "too_big",
    }
)
"""The error codes of docs/signaling-protocol.md §5."""


@dataclass
class Exchange:
    """What came back for one message before the end-of-case marker."""

    answers: list[Any] = field(default_factory=list)
    closed: tuple[int | None, str | None] | None = None
    timed_out: bool = False


Relay = tuple[str, dict[str, Any]]
"""(peer, frame): what a message the server accepted silently must reach."""


def judge(case: SignalingCase, ex: Exchange) -> tuple[str, str | None, Relay | None]:
    """(outcome, problem, expected relay) for one case."""
    if ex.timed_out:
        return "timeout", f"no end of answers within {TIMEOUT:g}s; got {ex.answers!r}", None
    if ex.closed is not None:
        return (*_judge_close(case, ex), None)
    if case.size > MAX_SIZE:
        return "answered", f"a {case.size}-byte message (over {MAX_SIZE}) did not close 1009", None
    if len(ex.answers) > 1:
        return "answers", f"{len(ex.answers)} answers to one message: {ex.answers!r}", None
    if ex.answers and not isinstance(ex.answers[0], dict):
        return "answered", f"an answer that is not a JSON object: {ex.answers[0]!r}", None
    if ex.answers:
        return (*_judge_answer(case, ex.answers[0]), None)
    return _judge_silence(case)


def _judge_close(case: SignalingCase, ex: Exchange) -> tuple[str, str | None]:
    assert ex.closed is not None
    code, reason = ex.closed
    outcome = f"closed {code}"
    if code == 1009 and case.size > MAX_SIZE and not ex.answers:
        return outcome, None
    if code == 1007 and not case.binary and not _is_utf8(case.payload) and not ex.answers:
        return outcome, None
    if code == CLOSE_AUTH_FAILED and [a.get("code") for a in ex.answers] == ["auth_failed"]:
        return outcome, None
    return outcome, (
        f"connection closed with code {code} ({reason!r}) after answers {ex.answers!r}; "
        "docs/signaling-protocol.md §6-7 close a connection for a message only with 1007 "
        "(a text frame not UTF-8), 1009 (over max_size) or 4001 (after auth_failed)"
    )


def _is_utf8(payload: str | bytes) -> bool:
    if isinstance(payload, str):
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _judge_answer(case: SignalingCase, answer: dict[str, Any]) -> tuple[str, str | None]:
    kind = answer.get("type")
    if kind != "error":
        fine = kind == "pong" or (kind == "registered" and not case.registered)
        problem = None if fine and not case.binary else f"unexpected answer {answer!r}"
        return str(kind), problem
    code = answer.get("code")
    outcome = f"error {code}"
    if code not in ERROR_CODES:
        return outcome, f"error code not in docs/signaling-protocol.md §5: {answer!r}"
    if not isinstance(answer.get("message"), str) or not answer["message"]:
        return outcome, f"error frame without a message: {answer!r}"
    if answer.get("ref") is not None and not isinstance(answer["ref"], str):
        return outcome, f"error frame whose ref is neither a string nor null: {answer!r}"
    if case.binary and code != "bad_json":
        return outcome, f"a binary frame must get bad_json, got {answer!r}"
    if code == ("not_registered" if case.registered else "already_registered"):
        return outcome, f"{code} does not fit the connection's state: {answer!r}"
    if code == "auth_failed":
        return outcome, "auth_failed, but the connection stayed open (docs: closed with 4001)"
    return outcome, None


def _judge_silence(case: SignalingCase) -> tuple[str, str | None, Relay | None]:
    if case.binary:
        return "silent", "no answer to a binary frame (docs: bad_json)", None
    if not case.registered:
        return "silent", "no answer to a message sent before register", None
    try:
        frame = json.loads(case.payload)
    except ValueError:
        frame = None
    if not isinstance(frame, dict) or frame.get("to") not in PAIR:
        return "silent", "no answer to a message that names no peer to relay it to", None
    relayed = {k: v for k, v in frame.items() if k not in ("to", "from")}
    return "relayed", None, (frame["to"], {**relayed, "from": FUZZER})


class Fuzzer:
    """The fuzzing client's two connections: `mallory` (registered) and an unregistered one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._registered: ClientConnection | None = None
        self._fresh: ClientConnection | None = None
        self._fresh_at = 0.0

    async def exchange(self, case: SignalingCase, sync: str) -> Exchange:
        ws = await (self._mallory() if case.registered else self._unregistered())
        ex = Exchange()
        try:
            await ws.send(case.payload, text=not case.binary)
            await ws.send(json.dumps({"type": sync}))
            async with asyncio.timeout(TIMEOUT):
                while True:
                    frame = json.loads(await ws.recv())
                    kind = frame.get("type") if isinstance(frame, dict) else None
                    if kind == "presence":
                        continue  # others joining and leaving the room: not an answer
                    if kind == "error" and frame.get("ref") == sync:
                        break
                    ex.answers.append(frame)
        except ConnectionClosed:
            ex.closed = (ws.close_code, ws.close_reason)
        except TimeoutError:
            ex.timed_out = True
        registered = any(isinstance(a, dict) and a.get("type") == "registered" for a in ex.answers)
        if ws is self._fresh and (ex.closed or registered):
            await ws.close()  # it is no longer an unregistered connection
        return ex

    async def close(self) -> None:
        for ws in (self._registered, self._fresh):
            if ws is not None:
                await ws.close()

    async def _mallory(self) -> ClientConnection:
        if self._registered is None or self._registered.close_code is not None:
            self._registered = await register(self.url, FUZZER)
        return self._registered

    async def _unregistered(self) -> ClientConnection:
        ws = self._fresh
        if ws is None or ws.close_code is not None or time.monotonic() - self._fresh_at > FRESH_FOR:
            if ws is not None:
                await ws.close()
            self._fresh = ws = await connect(self.url, max_size=None)
            self._fresh_at = time.monotonic()
        return ws


class Campaign:
    """Runs cases against one server while the pair signals, and records what they came to."""

    def __init__(self, report: Report, server: SignalingServer, http: aiohttp.ClientSession):
        self.report = report
        self.server = server
        self.http = http
        self.pair = Pair()
        self.fuzzer = Fuzzer(server.url)
        self.health = [0, 0]  # answered, asked
        self.expected: dict[str, list[tuple[int, str, dict[str, Any]]]] = {p: [] for p in PAIR}
        """Per peer of the pair: (case, input, frame) of each message relayed to it, in order."""

    async def case(self, index: int, case: SignalingCase, replaying: bool) -> None:
        report = self.report
        report.cases += 1
        try:
            ex = await self.fuzzer.exchange(case, f"{SYNC}{index}")
        except (OSError, TimeoutError, RuntimeError, WebSocketException) as exc:
            report.outcomes["no connection"] += 1
            report.find(index, f"the fuzzing client could not connect: {exc!r}", case.literal())
            return
        outcome, problem, relay = judge(case, ex)
        report.outcomes[outcome] += 1
        if problem is not None:
            report.find(index, problem, case.literal())
        if relay is not None:
            self.expected[relay[0]].append((index, case.literal(), relay[1]))
        if replaying:
            report.trace += [
                f"input: {case.literal()}",
                f"answers: {ex.answers!r}, closed: {ex.closed!r}",
            ]

    async def healthz(self, index: int) -> None:
        """`/healthz` must answer 200 `{"status": "ok", ...}`."""
        self.health[1] += 1
        url = f"http://127.0.0.1:{self.server.port}/healthz"
        try:
            async with self.http.get(url) as response:
                body = await response.json(content_type=None)
                if response.status == 200 and isinstance(body, dict) and body.get("status") == "ok":
                    self.health[0] += 1
                    return
                problem = f"/healthz answered {response.status} {body!r}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"/healthz failed: {exc!r}"
        self.report.find(index, problem, "GET /healthz")

    async def check_relays(self, last: int) -> None:
        """Every message accepted silently reached its peer, unchanged but for `from`."""
        pair, expected, report = self.pair, self.expected, self.report
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                while any(len(pair.from_fuzzer[p]) < len(expected[p]) for p in PAIR):
                    await asyncio.sleep(0.01)
        for peer in PAIR:
            got = pair.from_fuzzer[peer]
            for i, (case, literal, frame) in enumerate(expected[peer]):
                if i >= len(got):
                    problem = f"accepted without an answer, never relayed to {peer}"
                    report.find(case, problem, literal)
                elif got[i] != frame:
                    report.find(case, f"relayed to {peer} as {got[i]!r}, not {frame!r}", literal)
            for frame in got[len(expected[peer]) :]:
                problem = f"{peer} received {frame!r} from {FUZZER}, who sent no such frame"
                report.find(last, problem, "")


async def campaign(seed: int, budget: Budget, only: int | None) -> Report:
    report = Report(TARGET, seed)
    with ErrorLog() as errors:
        async with (
            SignalingServer(CONFIG) as server,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
        ):
            run = Campaign(report, server, http)
            await run.pair.start(server.url)
            index = 0
            for index in Cases(report, budget, only):
                case = make_case(case_rng(TARGET, seed, index))
                await run.case(index, case, replaying=only is not None)
                for problem in errors.take() + run.pair.take_problems():
                    report.find(index, problem, case.literal())
                if index % HEALTH_EVERY == 0:
                    await run.healthz(index)
            await run.healthz(index)
            await run.pair.stop()
            await run.check_relays(index)
            await run.fuzzer.close()
        for problem in errors.take() + run.pair.take_problems():
            report.find(index, problem, "(after the last case)")
    pair = run.pair
    if pair.relayed != pair.sent:
        report.find(index, f"the pair sent {pair.sent} frames, {pair.relayed} relayed", "")
    report.details += [
        f"by outcome {counts(report.outcomes)}",
        f"pair relayed={pair.relayed}/{pair.sent}",
        f"healthz={run.health[0]}/{run.health[1]}",
    ]
    return report


def run(seed: int, budget: Budget, only: int | None = None) -> Report:
    return asyncio.run(campaign(seed, budget, only))
