"""One request of the control API campaign, and what its answer must look like.

`request` sends a `ControlCase` over real HTTP (a HEAD request over a bare socket, to see
whether anything follows the head of its answer) and reads the answer, only the head of a
live event stream; `judge` checks the answer against docs/control-api.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from fuzz.control_cases import ControlCase

STATUSES = frozenset({200, 400, 404, 405, 408, 413, 417, 504, 507})
"""The statuses of docs/control-api.md, but 500 (a bug)."""
WAITING = frozenset({"/connect", "/wait", "/wait-state"})
"""Routes that may take as long as their request's `timeout` (up to 600 s)."""
WAIT_LIMIT = 1.0
"""A request to a waiting route is abandoned after this long (outcome `waiting`)."""
TIMEOUT = 5.0
"""Any other request must be answered within this."""
AFTER_HEAD = 0.2
"""How long a HEAD request's connection is watched for bytes after the answer's head."""
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: bytes | None
    """None for a live event stream, which never ends: only its head is read."""
    after_head: bytes = b""
    """What came after the head of the answer to a HEAD request (RFC 9110: nothing)."""

    @property
    def live(self) -> bool:
        """A live event stream: chunked JSON lines that never end."""
        return (
            self.status == 200
            and self.content_type == NDJSON
            and "Content-Length" not in self.headers
        )


Provoke = Callable[[], Awaitable[None]]
"""Records an event in the agent, which a live stream's handler then tries to send."""


async def request(
    base: URL, http: aiohttp.ClientSession, case: ControlCase, provoke: Provoke
) -> Answer:
    """Send `case`; after the head of a live stream, hang up and provoke an event."""
    if case.method == "HEAD":
        return await _head(base, case, provoke)
    waits = URL(case.target).path in WAITING
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    async with http.request(
        case.method,
        URL(f"{base}{case.target}", encoded=True),
        data=case.body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=WAIT_LIMIT if waits else TIMEOUT),
    ) as response:
        answer = Answer(response.status, response.content_type, response.headers, None)
        if not answer.live:
            answer = replace(answer, body=await response.read())
    if answer.live:
        await provoke()
    return answer


async def _head(base: URL, case: ControlCase, provoke: Provoke) -> Answer:
    """A HEAD request over a bare socket, to see whether anything follows the answer's head."""
    reader, writer = await asyncio.open_connection(base.host, base.port)
    try:
        body = case.body or b""
        lines = [f"HEAD {case.target} HTTP/1.1", f"Host: {base.host}", "Connection: close"]
        lines.append(f"Content-Length: {len(body)}")
        if case.content_type:
            lines.append(f"Content-Type: {case.content_type}")
        writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = CIMultiDict(line.split(": ", 1) for line in header_lines if ": " in line)
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        answer = Answer(int(status_line.split()[1]), content_type, headers, b"")
        if answer.live:
            await provoke()
        try:
            # Connection: close: a complete answer is followed by the end of the connection.
            after = await asyncio.wait_for(reader.read(4096), AFTER_HEAD)
        except TimeoutError:
            after = b""
        return replace(answer, after_head=after)
    finally:
        writer.close()


def judge(case: ControlCase, answer: Answer) -> str | None:
    """The problem with this answer, if any."""
    status, body = answer.status, answer.body
    if status not in STATUSES:
        why = "a bug, by docs/control-api.md" if status == 500 else "not in docs/control-api.md"
        return f"status {status} ({why}): {(body or b'')[:300]!r}"
    if case.method == "HEAD":
        if answer.after_head:
            return (
                f"the answer to a HEAD request has a body (RFC 9110): {answer.after_head[:300]!r}"
            )
        return None
    if status == 200 and answer.content_type == NDJSON:
        try:
            for line in (body or b"").splitlines():
                json.loads(line)
        except ValueError:
            return f"a line of the JSON lines answer is not JSON: {body[:300]!r}"
        return None
    if answer.content_type != "application/json":
        return f"a {status} answered in {answer.content_type!r}, not JSON: {(body or b'')[:300]!r}"
    try:
        data = json.loads(body or b"")
    except ValueError:
        return f"a {status} whose body is not JSON: {(body or b'')[:300]!r}"
    if not isinstance(data, dict):
        return f"a {status} whose body is not a JSON object: {data!r}"
    if status != 200 and (
        not isinstance(data.get("error"), str)
        or not isinstance(data.get("code", ""), str)
        or set(data) - {"error", "code"}
    ):
        return f"an error answer that is not {{'error': str, 'code'?: str}}: {data!r}"
    if status == 405 and "Allow" not in answer.headers:
        return f"a 405 without an Allow header: {data!r}"
    return None
