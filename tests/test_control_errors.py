"""The control API's errors over real HTTP: every error is JSON with a documented status.

Each test drives a real agent's ControlServer on 127.0.0.1 and asserts on the status and
body it actually answers: what goes wrong must be a clear 4xx/5xx, never a hang or an HTML
page, and the agent must keep serving afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
import pytest
from yarl import URL

from peerlab.peer.agent import Agent
from peerlab.peer.control import MAX_REQUEST_BYTES, ControlServer
from peerlab.peer.manager import ManagerConfig
from peerlab.peer.message_channel import ChannelConfig
from peerlab.peer.protocol import MAX_FRAME_BYTES

pytestmark = pytest.mark.integration


class Api(NamedTuple):
    session: aiohttp.ClientSession
    alice: str
    bob: str
    alice_agent: Agent


@pytest.fixture
async def api(make_agent) -> AsyncIterator[Api]:
    """Control URLs of alice (whose outbox holds at most 2 messages) and bob."""
    tight = ManagerConfig(channel=ChannelConfig(outbox_max_messages=2))
    servers = []
    for peer_id, manager in (("alice", tight), ("bob", None)):
        server = ControlServer(await make_agent(peer_id, manager), "127.0.0.1", 0)
        await server.start()
        servers.append(server)
    async with aiohttp.ClientSession() as session:
        yield Api(session, *(f"http://127.0.0.1:{s.port}" for s in servers), servers[0].agent)
    for server in servers:
        with contextlib.suppress(Exception):
            await server.close()


async def _json(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.content_type == "application/json", await response.text()
    data = await response.json()
    assert response.status == status, data
    assert isinstance(data, dict) and isinstance(data["error"], str), data
    return data


async def _post(session, url, body, status=200) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        if status == 200:
            assert response.status == 200, await response.text()
            return await response.json()
        return await _json(response, status)


async def _still_serving(session, url) -> None:
    async with session.get(f"{url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def _get_state(session, url) -> dict[str, Any]:
    async with session.get(f"{url}/state") as response:
        assert response.status == 200
        return await response.json()


def _text(body: str = "hi", peer: str = "bob") -> dict[str, Any]:
    return {"peer": peer, "type": "text", "conversation": "c", "body": body}


# ---- every error is JSON ----


async def test_deeply_nested_json_is_a_400_not_a_500(api):
    session, alice, *_ = api
    nested = b'{"peer": "bob", "type": "text", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with session.post(f"{alice}/send", data=nested) as response:
        data = await _json(response, 400)
    assert data["error"] == "request body is nested too deeply"
    await _still_serving(session, alice)


async def test_unknown_route_and_wrong_method_are_json(api):
    session, alice, *_ = api
    async with session.get(f"{alice}/nope") as response:
        assert (await _json(response, 404))["error"] == "GET /nope: 404: Not Found"
    async with session.get(f"{alice}/send") as response:
        data = await _json(response, 405)
        assert response.headers["Allow"] == "POST"
    assert data["error"] == "GET /send: 405: Method Not Allowed"


async def test_a_body_over_the_limit_is_a_json_413(api):
    session, alice, *_ = api
    async with session.post(f"{alice}/send", data=b" " * (MAX_REQUEST_BYTES + 1)) as response:
        data = await _json(response, 413)
    assert "Maximum request body size 1048576 exceeded" in data["error"]
    await _still_serving(session, alice)


async def test_a_body_its_content_encoding_cannot_decode_is_a_400_not_a_500(api):
    session, alice, _, server_agent = api
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with session.post(f"{alice}/send", data=b"{}", headers=headers) as response:
        data = await _json(response, 400)
    assert data["error"].startswith("request body cannot be decoded: "), data
    assert server_agent.events.since(0, {"kind": "error"}) == []
    await _still_serving(session, alice)


async def test_an_unexpected_failure_is_a_json_500_and_an_error_event(api, monkeypatch):
    session, alice, _, server_agent = api

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(server_agent, "state", broken)
    async with session.get(f"{alice}/state") as response:
        data = await _json(response, 500)
    assert data["error"] == "internal error: RuntimeError('boom')"
    [event] = server_agent.events.since(0, {"kind": "error"})
    assert "RuntimeError('boom')" in event["error"]
    await _still_serving(session, alice)


LIMIT = 8190
"""aiohttp's longest request target (path and query) and header value, in bytes."""
BAD_EXPECT = (b"Host: x", b"Expect: x", b"Connection: close", b"Content-Length: 2")


def _http(first_line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join((first_line, *headers)) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        pytest.param(
            _http(b"GET /" + b"a" * LIMIT + b" HTTP/1.1", b"Host: x"),
            400,
            "Got more than 8190 bytes",
            id="request-line-over-the-limit",
        ),
        pytest.param(
            _http(b"GET /healthz HTTP/1.1", b"Host: x", b"X-Long: " + b"x" * (LIMIT + 1)),
            400,
            "Got more than 8190 bytes",
            id="header-over-the-limit",
        ),
        pytest.param(_http(b"HELLO WORLD"), 400, "method", id="garbage-request-line"),
        pytest.param(
            _http(b"POST /send HTTP/1.1", *BAD_EXPECT, body=b"{}"),
            417,
            "Unknown Expect: x",
            id="bad-expect",
        ),
        pytest.param(
            _http(b"POST /nope HTTP/1.1", *BAD_EXPECT, body=b"{}"),
            417,
            "Unknown Expect: x",
            id="bad-expect-on-an-unknown-route",
        ),
    ],
)
async def test_what_aiohttp_answers_itself_is_json_too(api, raw, status, error):
    # Answered before the app sees the request, so no middleware runs. Sent over a bare
    # socket: an HTTP client refuses to send most of these.
    session, alice, *_ = api
    url = URL(alice)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(raw)
        async with asyncio.timeout(5):
            answer = await reader.read()  # until the server closes the connection
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert int(status_line.split()[1]) == status, answer
    assert headers["Content-Type"] == "application/json; charset=utf-8", answer
    data = json.loads(body)
    assert list(data) == ["error"] and error in data["error"], data
    await _still_serving(session, alice)


# ---- /send: peer ids, frame size, outbox bound ----


@pytest.mark.parametrize("peer", ["a:b", "has space", "x" * 65, ""])
async def test_send_to_a_peer_id_the_server_would_refuse_is_a_400(api, peer):
    session, alice, *_ = api
    data = await _post(session, f"{alice}/send", _text(peer=peer), status=400)
    assert data["error"] == (
        "field 'peer' must be a peer id the signaling server accepts ([A-Za-z0-9_.-]{1,64})"
    )
    state = await _get_state(session, alice)
    assert peer not in state["links"]  # nothing was queued for it


async def test_connect_to_an_invalid_peer_id_fails_at_once(api):
    session, alice, *_ = api
    data = await _post(session, f"{alice}/connect", {"peer": "a:b", "timeout": 5}, status=400)
    assert "a peer id the signaling server accepts" in data["error"]


async def test_send_of_a_frame_over_the_limit_is_a_400_too_big_and_nothing_is_queued(api):
    session, alice, *_ = api
    body = "\x01" * (MAX_FRAME_BYTES // 6)  # 10 922 bytes, escaped to 65 532
    data = await _post(session, f"{alice}/send", _text(body), status=400)
    assert data["code"] == "too_big"
    assert "over the 65536-byte limit" in data["error"]
    state = await _get_state(session, alice)
    assert state["links"]["bob"]["unacked"] == 0
    sent = await _post(session, f"{alice}/send", _text("fits"))
    assert sent["message"]["seq"] == 0


async def test_a_full_outbox_is_a_507_and_what_was_queued_is_delivered(api):
    session, alice, bob, _ = api
    queued = [(await _post(session, f"{alice}/send", _text(f"#{i}")))["message"] for i in range(2)]
    data = await _post(session, f"{alice}/send", _text("#2"), status=507)
    assert data["code"] == "outbox_full"
    assert "2 unacked messages" in data["error"]
    assert (await _get_state(session, alice))["links"]["bob"]["unacked"] == 2

    await _post(session, f"{alice}/connect", {"peer": "bob"})
    delivered = await _post(session, f"{bob}/wait", {"kind": "delivered", "count": 2})
    assert [e["message"]["id"] for e in delivered["events"]] == [m["id"] for m in queued]
    await _post(session, f"{alice}/wait", {"kind": "acked", "count": 2})
    sent = await _post(session, f"{alice}/send", _text("#2"))
    assert sent["message"]["seq"] == 2


# ---- /wait and /events: count and since ----


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"count": 0}, "field 'count' must be at least 1"),
        ({"count": -3}, "field 'count' must be at least 1"),
        ({"since": -1}, "field 'since' must be at least 0"),
    ],
)
async def test_wait_refuses_a_count_below_one_or_a_negative_since(api, fields, expected):
    session, alice, *_ = api
    body = {"kind": "started", "timeout": 0.5, **fields}
    assert (await _post(session, f"{alice}/wait", body, status=400))["error"] == expected


@pytest.mark.parametrize("since", ["-1", "x", "1.5"])
async def test_events_refuse_a_since_that_is_not_a_non_negative_integer(api, since):
    session, alice, *_ = api
    async with session.get(f"{alice}/events?since={since}") as response:
        data = await _json(response, 400)
    assert data["error"] == "query parameter 'since' must be a non-negative integer"


# ---- found by the fuzz campaigns (docs/fuzz.md) ----


@pytest.mark.parametrize(
    ("route", "body", "expected"),
    [
        ("/wait-state", {"peer": "bob", "timeout": 0.01}, "missing field 'state'"),
        ("/send", {"peer": "bob", "conversation": "c"}, "missing field 'type'"),
        ("/wait-state", {"peer": "bob", "state": "connected", "timeout": 10**400}, "too large"),
    ],
)
async def test_a_missing_field_or_an_overflowing_number_is_a_400(api, route, body, expected):
    session, alice, *_ = api
    data = await _post(session, f"{alice}{route}", body, 400)
    assert expected in data["error"], data
    await _still_serving(session, alice)


async def test_the_event_stream_has_no_head(api):
    session, alice, *_ = api
    async with session.head(f"{alice}/events/stream") as response:
        assert response.status == 405
    # The connection is still good for the next request.
    await _still_serving(session, alice)


async def test_closing_does_not_wait_for_a_stream_whose_client_left(make_agent):
    # aiohttp waits up to 60 s for handlers still running at shutdown: an endless stream
    # whose client left would hold SIGTERM that long.
    server = ControlServer(await make_agent("carol"), "127.0.0.1", 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/events/stream"
    async with aiohttp.ClientSession() as session, session.get(url, params={"kind": "acked"}):
        pass
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.close()
    assert loop.time() - started < 5
