"""The control API over real HTTP, driving real agents: what scenario scripts rely on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from peerlab.peer.control import ControlServer
from peerlab.scenarios.agent_client import AgentClient

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(make_agent) -> AsyncIterator[tuple[aiohttp.ClientSession, str, str]]:
    """Control URLs of two agents, alice and bob."""
    servers = []
    for peer_id in ("alice", "bob"):
        server = ControlServer(await make_agent(peer_id), "127.0.0.1", 0)
        await server.start()
        servers.append(server)
    async with aiohttp.ClientSession() as session:
        yield session, *(f"http://127.0.0.1:{s.port}" for s in servers)
    for server in servers:
        with contextlib.suppress(Exception):
            await server.close()


async def _post(session, url, body, status=200):
    async with session.post(url, json=body) as response:
        data = await response.json()
        assert response.status == status, data
        return data


async def _get(session, url, status=200):
    async with session.get(url) as response:
        data = await response.json()
        assert response.status == status, data
        return data


async def test_drive_a_conversation_through_the_api(api):
    session, alice, bob = api
    assert (await _get(session, f"{alice}/healthz"))["registered"] is True
    link = await _post(session, f"{alice}/connect", {"peer": "bob"})
    assert link["state"] == "connected"
    assert link["candidate_pair"]["local"]["type"] == "host"

    text = await _post(
        session, f"{alice}/send", {"peer": "bob", "type": "text", "conversation": "c", "body": "hi"}
    )
    text_id = text["message"]["id"]
    await _post(
        session,
        f"{alice}/send",
        {"peer": "bob", "type": "edit", "conversation": "c", "target": text_id, "body": "hi!"},
    )
    await _post(
        session,
        f"{alice}/send",
        {
            "peer": "bob",
            "type": "reaction",
            "conversation": "c",
            "target": text_id,
            "emoji": "🎉",
            "action": "add",
        },
    )
    typing = await _post(
        session,
        f"{alice}/send",
        {"peer": "bob", "type": "typing", "conversation": "c", "state": "started"},
    )
    assert typing["sent"] is True

    acked = await _post(
        session,
        f"{alice}/wait",
        {"kind": "acked", "match": {"peer": "bob"}, "count": 3, "timeout": 10},
    )
    assert len(acked["events"]) == 3
    delivered = await _post(session, f"{bob}/wait", {"kind": "delivered", "count": 3})
    assert delivered["events"][0]["message"]["id"] == text_id

    history = await _get(session, f"{bob}/history?peer=alice&conversation=c")
    assert history["entries"] == [
        {
            "id": text_id,
            "sender": "alice",
            "body": "hi!",
            "edits": 1,
            "deleted": False,
            "reactions": {"🎉": ["alice"]},
        }
    ]
    assert history == {
        **await _get(session, f"{alice}/history?peer=bob&conversation=c"),
        "peer": "alice",
    }

    async with session.get(f"{bob}/events.jsonl?kind=delivered") as response:
        assert len((await response.text()).splitlines()) == 3

    closed = await _post(session, f"{alice}/disconnect", {"peer": "bob"})
    assert closed["state"] == "closed"
    await _post(session, f"{bob}/wait-state", {"peer": "alice", "state": "closed", "timeout": 5})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "text"}, "missing field 'peer'"),
        ({"peer": "bob", "type": "shout"}, "unknown message type 'shout'"),
        ({"peer": "bob", "type": "text", "conversation": "c"}, "bad fields for text"),
        ({"peer": "bob", "type": "text", "conversation": "c", "body": 5}, "field 'body'"),
        (
            {
                "peer": "bob",
                "type": "reaction",
                "conversation": "c",
                "target": "x",
                "emoji": "+",
                "action": "like",
            },
            "'like' is not a valid ReactionAction",
        ),
        ({"peer": "alice", "type": "text", "conversation": "c", "body": "me"}, "itself"),
    ],
)
async def test_bad_send_requests_get_a_clear_400(api, body, expected):
    session, alice, _ = api
    data = await _post(session, f"{alice}/send", body, status=400)
    assert expected in data["error"]
    assert (await _get(session, f"{alice}/healthz"))["status"] == "ok"


async def test_malformed_body_unknown_route_and_wait_timeout(api):
    session, alice, _ = api
    async with session.post(f"{alice}/send", data=b"{oops") as response:
        assert response.status == 400
        assert "not JSON" in (await response.json())["error"]
    async with session.get(f"{alice}/nope") as response:
        assert response.status == 404
    timed_out = await _post(
        session, f"{alice}/wait", {"kind": "delivered", "timeout": 0.2}, status=408
    )
    assert "saw 0" in timed_out["error"]
    await _post(session, f"{alice}/wait", {"kind": "x", "timeout": 9999}, status=400)


async def test_connect_to_an_invalid_or_absent_peer_says_why(api):
    session, alice, _ = api
    bad = await _post(session, f"{alice}/connect", {"peer": "no spaces"}, status=400)
    assert "'peer' must be a peer id the signaling server accepts" in bad["error"]
    absent = await _post(session, f"{alice}/connect", {"peer": "zed", "timeout": 0.5}, status=504)
    assert "it is not in the room; present: ['bob']" in absent["error"]


async def test_link_options_set_the_ice_policy_and_refuse_relay_without_turn(api):
    session, alice, _ = api
    options = await _post(session, f"{alice}/link-options", {"peer": "bob", "turn": False})
    assert options == {"peer": "bob", "relay_only": False, "turn": False}
    error = await _post(
        session, f"{alice}/link-options", {"peer": "bob", "relay_only": True}, status=400
    )
    assert error["error"] == "relay_only needs TURN: relay_only=true with turn=false"
    # The refused change left the link as it was.
    options = await _post(session, f"{alice}/link-options", {"peer": "bob"})
    assert options == {"peer": "bob", "relay_only": False, "turn": False}


async def test_a_repeated_idempotency_key_sends_once(api):
    session, alice, _ = api
    body = {"peer": "zed", "type": "text", "conversation": "c", "body": "once"}
    answers = []
    for key in ("k1", "k1", "k2"):
        async with session.post(
            f"{alice}/send", json=body, headers={"Idempotency-Key": key}
        ) as response:
            assert response.status == 200
            answers.append(await response.json())
    assert answers[0] == answers[1]
    assert answers[2]["message"]["id"] != answers[0]["message"]["id"]
    assert (await _get(session, f"{alice}/state"))["links"]["zed"]["unacked"] == 2
    async with session.post(
        f"{alice}/send", json=body, headers={"Idempotency-Key": "x" * 65}
    ) as response:
        assert response.status == 400
        assert "Idempotency-Key" in (await response.json())["error"]


async def _drop_first_answer(target_port: int) -> tuple[asyncio.Server, list[int]]:
    """A TCP relay to the agent that passes the first request on but closes the client's
    connection before the answer comes back: the request arrived, its answer did not."""
    connections: list[int] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        first = len(connections) == 1

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        if first:
            upstream_writer.write(await reader.read(65536))
            await upstream_writer.drain()
            await upstream_reader.read(65536)  # the answer, thrown away
            writer.close()
            upstream_writer.close()
            return
        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, connections


async def test_the_client_asks_again_when_an_answer_is_lost_and_sends_once(api):
    session, alice, _ = api
    server, connections = await _drop_first_answer(int(alice.rsplit(":", 1)[1]))
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = AgentClient("alice", f"http://127.0.0.1:{port}", session)
        message = await client.send("zed", "text", conversation="c", body="once")
    assert len(connections) == 2
    assert message is not None and message["body"] == "once"
    assert (await _get(session, f"{alice}/state"))["links"]["zed"]["unacked"] == 1
