"""The signaling server end to end: a real server on port 0, real websockets clients.

Synchronization is by waiting for frames (with timeouts), never by sleeping. To
check that nothing else was queued for a client, tests send a ping and expect the
pong as the very next frame: the server handles one connection's frames in order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from peerlab.signaling.auth import make_token
from peerlab.signaling.server import ServerConfig, SignalingServer

SECRET = "test-secret"
TIMEOUT = 5.0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer(ServerConfig(secret=SECRET, host="127.0.0.1", port=0)) as srv:
        yield srv


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def expect_error(ws: ClientConnection, code: str, ref: str | None) -> dict[str, Any]:
    frame = await recv(ws)
    assert frame["type"] == "error", frame
    assert (frame["code"], frame["ref"]) == (code, ref), frame
    assert isinstance(frame["message"], str) and frame["message"]
    return frame


async def expect_quiet(ws: ClientConnection) -> None:
    """Assert nothing else was queued for ``ws`` and that it is still served."""
    await send(ws, {"type": "ping"})
    assert await recv(ws) == {"type": "pong"}


async def expect_closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:  # frames sent before the close are allowed
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    return ws.close_code, ws.close_reason


async def join(
    server: SignalingServer, room: str, peer: str, token: str | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(server.url)
    token = make_token(SECRET, room, peer) if token is None else token
    await send(ws, {"type": "register", "room": room, "peer": peer, "token": token})
    registered = await recv(ws)
    return ws, registered


async def join_ok(server: SignalingServer, room: str, peer: str) -> ClientConnection:
    ws, registered = await join(server, room, peer)
    assert registered["type"] == "registered", registered
    return ws


async def pair(server: SignalingServer, room: str = "lab") -> tuple[ClientConnection, ...]:
    alice = await join_ok(server, room, "alice")
    bob = await join_ok(server, room, "bob")
    assert await recv(alice) == {"type": "presence", "event": "joined", "peer": "bob"}
    return alice, bob


# Registration and presence.


async def test_register_lists_other_peers_and_announces_joined(server):
    alice, bob = await pair(server)
    carol, registered = await join(server, "lab", "carol")
    assert registered == {
        "type": "registered",
        "room": "lab",
        "peer": "carol",
        "peers": ["alice", "bob"],
        "ice_servers": [],
    }
    for ws in (alice, bob):
        assert await recv(ws) == {"type": "presence", "event": "joined", "peer": "carol"}
        await expect_quiet(ws)
    await expect_quiet(carol)


async def test_left_presence_when_a_connection_ends(server):
    alice, bob = await pair(server)
    await bob.close()
    assert await recv(alice) == {"type": "presence", "event": "left", "peer": "bob"}
    await expect_quiet(alice)
    _, registered = await join(server, "lab", "dave")
    assert registered["peers"] == ["alice"]


async def test_second_registration_replaces_the_old_connection(server):
    alice, bob_old = await pair(server)
    bob_new, registered = await join(server, "lab", "bob")
    assert registered["type"] == "registered"
    assert registered["peers"] == ["alice"]
    assert await expect_closed(bob_old) == (4002, "replaced")
    # A fresh "joined" for the new instance, and no "left" for the old one.
    assert await recv(alice) == {"type": "presence", "event": "joined", "peer": "bob"}
    await expect_quiet(alice)
    # Relays reach the new connection.
    await send(alice, {"type": "bye", "to": "bob"})
    assert await recv(bob_new) == {"type": "bye", "from": "alice"}
    # When the new instance leaves, "left" is announced once.
    await bob_new.close()
    assert await recv(alice) == {"type": "presence", "event": "left", "peer": "bob"}
    await expect_quiet(alice)


async def test_wrong_token_gets_auth_failed_then_close_4001(server):
    alice = await join_ok(server, "lab", "alice")
    ws, frame = await join(server, "lab", "mallory", token=make_token(SECRET, "lab", "alice"))
    assert frame["type"] == "error"
    assert (frame["code"], frame["ref"]) == ("auth_failed", "register")
    assert await expect_closed(ws) == (4001, "auth_failed")
    # Nobody heard of mallory.
    await expect_quiet(alice)
    assert server.stats()["peers"] == 1


async def test_frames_before_register_get_not_registered_then_register_works(server):
    ws = await connect(server.url)
    await send(ws, {"type": "offer", "to": "bob", "sdp": "v=0", "session": "s"})
    await expect_error(ws, "not_registered", "offer")
    await send(ws, {"type": "ping"})
    await expect_error(ws, "not_registered", "ping")
    token = make_token(SECRET, "lab", "alice")
    await send(ws, {"type": "register", "room": "lab", "peer": "alice", "token": token})
    assert (await recv(ws))["type"] == "registered"
    await send(ws, {"type": "register", "room": "lab", "peer": "alice", "token": token})
    await expect_error(ws, "already_registered", "register")
    await expect_quiet(ws)


# Relay.


async def test_relay_offer_answer_candidate_bye_with_from(server):
    alice, bob = await pair(server)
    sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"
    await send(alice, {"type": "offer", "to": "bob", "sdp": sdp, "session": "s1"})
    assert await recv(bob) == {"type": "offer", "sdp": sdp, "session": "s1", "from": "alice"}
    await send(bob, {"type": "answer", "to": "alice", "sdp": sdp, "session": "s1"})
    assert await recv(alice) == {"type": "answer", "sdp": sdp, "session": "s1", "from": "bob"}
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"}
    candidate |= {"sdpMid": "0", "sdpMLineIndex": 0}
    await send(alice, {"type": "candidate", "to": "bob", "candidate": candidate, "session": "s1"})
    assert await recv(bob) == {
        "type": "candidate",
        "candidate": candidate,
        "session": "s1",
        "from": "alice",
    }
    await send(alice, {"type": "candidate", "to": "bob", "candidate": None, "session": "s1"})
    assert await recv(bob) == {
        "type": "candidate",
        "candidate": None,
        "session": "s1",
        "from": "alice",
    }
    # A client-supplied "from" equal to its own id is accepted (and set anyway).
    await send(bob, {"type": "bye", "to": "alice", "from": "bob", "session": "s1", "reason": "x"})
    assert await recv(alice) == {"type": "bye", "session": "s1", "reason": "x", "from": "bob"}
    await expect_quiet(alice)
    await expect_quiet(bob)


async def test_spoofed_from_is_rejected_and_not_relayed(server):
    alice, bob = await pair(server)
    carol = await join_ok(server, "lab", "carol")
    for ws in (alice, bob):
        assert (await recv(ws))["peer"] == "carol"
    await send(alice, {"type": "offer", "to": "bob", "from": "carol", "sdp": "v", "session": "s"})
    error = await expect_error(alice, "bad_field", "offer")
    assert "'from'" in error["message"]
    await expect_quiet(bob)  # nothing was relayed
    await expect_quiet(carol)


async def test_rooms_are_isolated(server):
    alice, bob = await pair(server, room="room-a")
    eve, registered = await join(server, "room-b", "eve")
    assert registered["peers"] == []
    await send(eve, {"type": "offer", "to": "alice", "sdp": "v=0", "session": "s"})
    error = await expect_error(eve, "unknown_peer", "offer")
    assert "alice" in error["message"]
    # Same peer id in another room is a different peer, not a replacement.
    other_alice, registered = await join(server, "room-b", "alice")
    assert registered["peers"] == ["eve"]
    assert await recv(eve) == {"type": "presence", "event": "joined", "peer": "alice"}
    await send(bob, {"type": "bye", "to": "alice"})
    assert await recv(alice) == {"type": "bye", "from": "bob"}
    await expect_quiet(other_alice)
    await expect_quiet(alice)
    assert server.stats() == {"status": "ok", "rooms": 2, "peers": 4, "connections": 4}


@pytest.mark.parametrize(
    ("message", "code", "ref"),
    [
        ("not json", "bad_json", None),
        (b"\x00\x01binary", "bad_json", None),
        ("[1,2,3]", "bad_json", None),
        ('{"to":"bob"}', "missing_field", None),
        ('{"type":42}', "bad_field", None),
        ('{"type":"hello"}', "unknown_type", "hello"),
        ('{"type":"offer","to":"bob","session":"s"}', "missing_field", "offer"),
        ('{"type":"offer","to":"b o b","sdp":"v","session":"s"}', "bad_field", "offer"),
        ('{"type":"candidate","to":"bob","candidate":"x","session":"s"}', "bad_field", "candidate"),
        ('{"type":"bye","to":"nobody"}', "unknown_peer", "bye"),
        (
            json.dumps({"type": "offer", "to": "bob", "sdp": "v" * 70_000, "session": "s"}),
            "too_big",
            "offer",
        ),
        # Not relayed since the attacker-style review: not JSON, not text, not ours.
        ('{"type":"candidate","to":"bob","candidate":{"x":NaN},"session":"s"}', "bad_json", None),
        (
            '{"type":"candidate","to":"bob","candidate":{"x":-Infinity},"session":"s"}',
            "bad_json",
            None,
        ),
        ('{"type":"candidate","to":"bob","candidate":{"x":1e999},"session":"s"}', "bad_json", None),
        (
            '{"type":"candidate","to":"bob","candidate":{"x":' + "9" * 5000 + '},"session":"s"}',
            "bad_json",
            None,
        ),
        ('{"type":"offer","to":"bob","sdp":"v=0\\ud800","session":"s"}', "bad_field", "offer"),
        ('{"type":"bye","to":"bob","reason":"\\udc00"}', "bad_field", "bye"),
        ('{"type":"offer","to":"bob","sdp":"v=0","session":"s","x":1}', "unknown_field", "offer"),
        ('{"type":"offer","to":"alice","sdp":"v=0","session":"s"}', "bad_field", "offer"),
        ('{"type":"answer","to":"alice","sdp":"v=0","session":"s"}', "bad_field", "answer"),
        ('{"type":"bye","to":"alice"}', "bad_field", "bye"),
    ],
)
async def test_bad_input_gets_its_error_and_the_connection_keeps_working(
    server, message, code, ref
):
    alice, bob = await pair(server)
    await alice.send(message)
    await expect_error(alice, code, ref)
    await expect_quiet(bob)  # nothing relayed
    await send(alice, {"type": "bye", "to": "bob"})
    assert await recv(bob) == {"type": "bye", "from": "alice"}
    await expect_quiet(alice)


async def test_oversized_frame_closes_1009_and_others_keep_working(server):
    alice, bob = await pair(server)
    big = await join_ok(server, "lab", "big")
    for ws in (alice, bob):
        assert (await recv(ws))["peer"] == "big"
    padding = "x" * (256 * 1024)
    await big.send(json.dumps({"type": "bye", "to": "alice", "reason": padding}))
    code, _ = await expect_closed(big)
    assert code == 1009
    for ws in (alice, bob):
        assert await recv(ws) == {"type": "presence", "event": "left", "peer": "big"}
    await send(alice, {"type": "offer", "to": "bob", "sdp": "v=0", "session": "s"})
    assert (await recv(bob))["from"] == "alice"


FLOOD_FRAMES = 5000


def _register_sync(ws: Any, peer: str) -> None:
    token = make_token(SECRET, "lab", peer)
    ws.send(json.dumps({"type": "register", "room": "lab", "peer": peer, "token": token}))
    assert json.loads(ws.recv(TIMEOUT))["type"] == "registered"


def _read_until(ws: Any, is_marker: Any, resend: Any) -> list[dict[str, Any]]:
    """The frames ``ws`` receives before the marker; ``resend`` it when it seems dropped."""
    frames = []
    deadline = time.monotonic() + TIMEOUT
    resend()
    while time.monotonic() < deadline:
        try:
            frame = json.loads(ws.recv(0.2))
        except TimeoutError:  # the marker itself was rate limited: resend
            resend()
            continue
        if is_marker(frame):
            return frames
        frames.append(frame)
    raise AssertionError("the marker never came back")


def _flood(
    url: str, flooded: threading.Event, leave: threading.Event, report: dict[str, Any]
) -> None:
    """Send FLOOD_FRAMES bye frames to a sink as fast as possible, in a thread of our own.

    The sink (a second connection) receives each accepted frame with its sequence
    number, so the frames that passed the rate limit are counted exactly.
    """
    started = time.monotonic()  # before the server creates our token bucket
    with sync_connect(url, max_size=None) as sink, sync_connect(url, max_size=None) as ws:
        _register_sync(sink, "sink")
        _register_sync(ws, "flooder")
        sink.recv(TIMEOUT)  # presence: flooder joined
        sent = 0
        while sent < FLOOD_FRAMES:
            ws.send(json.dumps({"type": "bye", "to": "sink", "reason": str(sent)}))
            sent += 1
        # Drain the sink until our end marker comes: then every earlier relay is in.
        relayed = _read_until(
            sink,
            lambda frame: frame.get("reason") == "end",
            lambda: ws.send(json.dumps({"type": "bye", "to": "sink", "reason": "end"})),
        )
        assert {frame["type"] for frame in relayed} == {"bye"}
        # And the flooder's own connection until a pong: its errors come before.
        errors = _read_until(
            ws, lambda frame: frame == {"type": "pong"}, lambda: ws.send('{"type":"ping"}')
        )
        assert {frame["code"] for frame in errors} == {"rate_limited"}, errors
        report.update(sent=sent, relayed=len(relayed), errors=len(errors))
        report["elapsed"] = time.monotonic() - started
        flooded.set()
        # Stay registered until the others are done: our `left` must not cut into them.
        leave.wait(TIMEOUT)


async def test_a_flooding_client_is_rate_limited_while_others_are_served():
    # The sink reads only once the flood is over: room for every frame it may get.
    config = ServerConfig(secret=SECRET, host="127.0.0.1", port=0, outbox_size=FLOOD_FRAMES)
    async with SignalingServer(config) as server:
        await _flood_while_others_talk(server)


async def _flood_while_others_talk(server: SignalingServer) -> None:
    alice, bob = await pair(server)
    flooded, leave = threading.Event(), threading.Event()
    report: dict[str, Any] = {}
    flooder = asyncio.create_task(asyncio.to_thread(_flood, server.url, flooded, leave, report))
    for peer in (alice, bob):
        for newcomer in ("sink", "flooder"):
            assert await recv(peer) == {"type": "presence", "event": "joined", "peer": newcomer}
    round_trips = []
    i = 0
    # Keep the other two talking for as long as the flood lasts (and at least 100 times):
    # how fast the flooder's thread runs depends on the machine.
    while i < 100 or not flooded.is_set():
        i += 1
        started = time.monotonic()
        await send(alice, {"type": "offer", "to": "bob", "sdp": f"v={i}", "session": "s"})
        assert (await recv(bob))["sdp"] == f"v={i}"
        await send(bob, {"type": "answer", "to": "alice", "sdp": f"v={i}", "session": "s"})
        assert (await recv(alice))["sdp"] == f"v={i}"
        round_trips.append(time.monotonic() - started)
        await asyncio.sleep(0.02)  # stay under alice's and bob's own rate limit (100/s)
    leave.set()
    await asyncio.wait_for(flooder, 3 * TIMEOUT)
    median, worst = statistics.median(round_trips), max(round_trips)
    print(f"flood: {report}, round trip median {median * 1e3:.1f} ms, worst {worst * 1e3:.1f} ms")
    assert report["sent"] == FLOOD_FRAMES, report
    # Token bucket: burst 200, then 100/s; register and the end marker took a token each.
    assert report["relayed"] + 2 <= 200 + 100 * report["elapsed"], report
    assert report["relayed"] < report["sent"]
    # At most one rate_limited error per second: no amplification.
    assert 1 <= report["errors"] <= report["elapsed"] + 1, report
    # Generous bounds: the flooder thread competes with the server for the GIL.
    assert median < 0.1, f"offer/answer round trip median {median:.3f}s under flood"
    assert worst < 2.0, f"offer/answer round trip took {worst:.3f}s under flood"
    for peer in (alice, bob):  # the flooder was never disconnected, it left by itself
        left = [await recv(peer), await recv(peer)]
        assert sorted(frame["peer"] for frame in left) == ["flooder", "sink"], left
        assert {frame["event"] for frame in left} == {"left"}
        await expect_quiet(peer)


# ICE servers.


async def test_ice_servers_with_turn_rest_credentials():
    config = ServerConfig(
        secret=SECRET,
        host="127.0.0.1",
        port=0,
        ice_servers=("stun:coturn:3478", "turn:coturn:3478?transport=udp", "turns:coturn:5349"),
        turn_secret="coturn-secret",
        turn_ttl=600,
    )
    async with SignalingServer(config, wall_clock=lambda: 1_700_000_000.5) as srv:
        _, registered = await join(srv, "lab", "alice")
    username = "1700000600:alice"
    digest = hmac.new(b"coturn-secret", username.encode(), hashlib.sha1).digest()
    credential = base64.b64encode(digest).decode()
    assert registered["ice_servers"] == [
        {"urls": ["stun:coturn:3478"]},
        {
            "urls": ["turn:coturn:3478?transport=udp"],
            "username": username,
            "credential": credential,
        },
        {"urls": ["turns:coturn:5349"], "username": username, "credential": credential},
    ]


# HTTP and lifecycle.


def _http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def test_healthz(server):
    await pair(server)
    base = f"http://127.0.0.1:{server.port}"
    status, content_type, body = await asyncio.to_thread(_http_get, base + "/healthz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "rooms": 1, "peers": 2, "connections": 2}
    status, _, _ = await asyncio.to_thread(_http_get, base + "/healthz?verbose=1")
    assert status == 200
    # Other paths without an upgrade are ordinary websockets handling: 426.
    status, _, _ = await asyncio.to_thread(_http_get, base + "/")
    assert status == 426


async def test_close_sends_1001_to_every_client():
    srv = SignalingServer(ServerConfig(secret=SECRET, host="127.0.0.1", port=0))
    await srv.start()
    alice, bob = await pair(srv)
    await asyncio.wait_for(srv.close(), TIMEOUT)
    for ws in (alice, bob):
        code, _ = await expect_closed(ws)
        assert code == 1001


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PEERLAB_SECRET"}
    environment |= env or {}
    return subprocess.Popen(
        [sys.executable, "-m", "peerlab.signaling", *args],
        cwd=REPO,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_requires_a_secret():
    process = _cli("--port", "0")
    _, stderr = process.communicate(timeout=TIMEOUT * 2)
    assert process.returncode == 2
    assert "PEERLAB_SECRET" in stderr


async def test_cli_serves_logs_json_and_exits_0_on_sigterm():
    process = _cli("--host", "127.0.0.1", "--port", "0", env={"PEERLAB_SECRET": SECRET})
    try:
        assert process.stderr is not None
        port = None
        while port is None:
            line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 10)
            assert line, "server exited before listening"
            entry = json.loads(line)  # every log line is a JSON object
            if entry["event"] == "server_started":
                port = entry["port"]
        ws = await connect(f"ws://127.0.0.1:{port}/")
        token = make_token(SECRET, "lab", "alice")
        await send(ws, {"type": "register", "room": "lab", "peer": "alice", "token": token})
        assert (await recv(ws))["type"] == "registered"
        process.send_signal(signal.SIGTERM)
        code, _ = await expect_closed(ws)
        assert code == 1001
        returncode = await asyncio.wait_for(asyncio.to_thread(process.wait), 10)
        assert returncode == 0
        for line in process.stderr.read().splitlines():
            assert "event" in json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_client_that_stops_reading_is_dropped_with_4008_without_stalling_others():
    config = ServerConfig(
        secret=SECRET, host="127.0.0.1", port=0, outbox_size=8, rate=10_000, burst=10_000
    )
    async with SignalingServer(config) as srv:
        alice, bob = await pair(srv)
        # carol stops reading; uncompressed so that socket buffers fill up quickly.
        carol = await connect(srv.url, compression=None, max_queue=1)
        token = make_token(SECRET, "lab", "carol")
        await send(carol, {"type": "register", "room": "lab", "peer": "carol", "token": token})
        for ws in (alice, bob):
            assert await recv(ws) == {"type": "presence", "event": "joined", "peer": "carol"}
        sdp = os.urandom(30_000).hex()  # 60 KB
        for _ in range(600):  # 36 MB: more than loopback socket buffers hold
            await send(alice, {"type": "offer", "to": "carol", "sdp": sdp, "session": "s"})
        await expect_quiet(alice)  # alice was never blocked by carol
        await send(alice, {"type": "bye", "to": "bob"})
        assert await recv(bob) == {"type": "bye", "from": "alice"}
        code, reason = await expect_closed(carol)
        assert (code, reason) == (4008, "slow consumer")
        for ws in (alice, bob):
            assert await recv(ws) == {"type": "presence", "event": "left", "peer": "carol"}
