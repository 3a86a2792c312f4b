"""The signaling server bounds every client: a real server on 127.0.0.1, real clients.

Deadlines (handshake, register), connection caps (overall, per address, pending
handshakes), slow consumers bounded in bytes, rate-limited logging of the event
loop's errors, and the command line settings for all of them. Limits and
deadlines are small here so that the tests are fast; the pure logic is tested
without sockets in test_signaling_limits.py and test_signaling_ratelimit.py.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import http.client
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from peerlab.signaling.__main__ import parse_config
from peerlab.signaling.auth import make_token
from peerlab.signaling.server import ServerConfig, Session, SignalingServer

SECRET = "test-secret"
TIMEOUT = 5.0
REPO = Path(__file__).resolve().parent.parent
OFFER_SDP = os.urandom(30_000).hex()  # 60 KB, as in the attacker-style test


def config(**overrides: Any) -> ServerConfig:
    return ServerConfig(secret=SECRET, host="127.0.0.1", port=0, **overrides)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def register(url: str, peer: str, **options: Any) -> ClientConnection:
    ws = await connect(url, **options)
    token = make_token(SECRET, "lab", peer)
    await send(ws, {"type": "register", "room": "lab", "peer": peer, "token": token})
    registered = await recv(ws)
    assert registered["type"] == "registered", registered
    return ws


async def expect_quiet(ws: ClientConnection) -> None:
    """Nothing else was queued for ``ws``, and it is still served."""
    await send(ws, {"type": "ping"})
    assert await recv(ws) == {"type": "pong"}


async def expect_relay(sender: ClientConnection, target: ClientConnection, to: str) -> None:
    await send(sender, {"type": "bye", "to": to, "reason": "still served"})
    frame = await recv(target)
    assert (frame["type"], frame["reason"]) == ("bye", "still served"), frame


async def expect_closed(ws: ClientConnection) -> tuple[int | None, str | None, int]:
    """Read until the close; return its code, reason and how many frames came before."""
    frames = 0
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            frames += 1
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    return ws.close_code, ws.close_reason, frames


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (polling, bounded) for something the server does after a client has moved on."""
    deadline = time.monotonic() + TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.02)


async def refused_status(url: str, **options: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, **options)
    return info.value.response.status_code, info.value.response.body


def _http_get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, str]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def healthz(server: SignalingServer, source: str = "127.0.0.1") -> dict[str, Any]:
    status, body = await asyncio.to_thread(_http_get, server.port, "/healthz", source)
    assert status == 200, (status, body)
    return json.loads(body)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


# Register deadline.


async def test_a_connection_that_does_not_register_in_time_is_closed_with_4003():
    async with SignalingServer(config(register_timeout=0.5)) as server:
        alice = await register(server.url, "alice")
        idle = await connect(server.url)
        chatty = await connect(server.url)  # talks, but never registers
        started = time.monotonic()
        await send(chatty, {"type": "ping"})
        assert (await recv(chatty))["code"] == "not_registered"
        for ws in (idle, chatty):
            code, reason, _ = await expect_closed(ws)
            assert (code, reason) == (4003, "register timeout")
        assert 0.4 < time.monotonic() - started < TIMEOUT
        await expect_quiet(alice)  # registered from the start: never expires

        async def only_alice_left() -> bool:
            return (await healthz(server))["connections"] == 1

        await eventually(only_alice_left)


# Connection caps.


async def test_at_the_connection_cap_upgrades_get_503_and_registered_clients_are_served(caplog):
    caplog.set_level(logging.INFO, logger="signaling")
    async with SignalingServer(config(max_connections=20, register_timeout=60)) as server:
        alice = await register(server.url, "alice")
        bob = await register(server.url, "bob")
        assert (await recv(alice))["event"] == "joined"
        idle = [await connect(server.url) for _ in range(18)]  # never register
        for _ in range(10):
            assert await refused_status(server.url) == (503, b"server full\n")
        with pytest.raises(InvalidStatus):
            await register(server.url, "carol")
        health = await healthz(server)
        assert health == {"status": "ok", "rooms": 1, "peers": 2, "connections": 20}
        await expect_relay(alice, bob, "bob")
        await expect_relay(bob, alice, "alice")
        # A place freed is a place for a newcomer.
        await idle[0].close()

        async def carol_gets_in() -> bool:
            try:
                await register(server.url, "carol")
            except InvalidStatus:
                return False
            return True

        await eventually(carol_gets_in)
    refusals = [r for r in caplog.records if r.getMessage() == "connection_refused"]
    # Eleven refusals (and maybe a few more while carol waited): one line, throttled.
    assert len(refusals) == 1, refusals
    assert refusals[0].fields["reason"] == "server_full"


async def test_per_address_cap_gets_429_while_other_addresses_get_in():
    async with SignalingServer(config(max_connections_per_address=3)) as server:
        alice = await register(server.url, "alice")
        _idle = [await connect(server.url) for _ in range(2)]
        status, body = await refused_status(server.url)
        assert (status, body) == (429, b"too many connections from this address\n")
        # Another source address (all of 127/8 is loopback on Linux).
        dave = await register(server.url, "dave", local_addr=("127.0.0.2", 0))
        assert (await recv(alice))["peer"] == "dave"
        await expect_relay(alice, dave, "dave")
        await expect_relay(dave, alice, "alice")
        assert (await healthz(server))["connections"] == 4


async def test_silent_tcp_connections_are_capped_then_timed_out():
    settings = config(max_handshakes=4, max_connections_per_address=64, handshake_timeout=2.0)
    async with SignalingServer(settings) as server:
        alice = await register(server.url, "alice")
        bob = await register(server.url, "bob")
        started = time.monotonic()
        silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
        closes = [asyncio.create_task(read_to_end(reader)) for reader, _ in silent]
        # One over the cap: closed at once, without waiting for its request.
        done, pending = await asyncio.wait(closes, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        assert len(done) == 1 and time.monotonic() - started < 1.5
        await expect_relay(alice, bob, "bob")
        # The others: closed once their handshake deadline has passed.
        await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT)
        assert time.monotonic() - started >= 1.9
        assert (await healthz(server))["peers"] == 2
        for _, writer in silent:
            writer.close()


async def test_one_address_cannot_fill_the_pending_handshakes():
    settings = config(max_handshakes=10, max_connections_per_address=3, handshake_timeout=30)
    async with SignalingServer(settings) as server:
        silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
        closes = [asyncio.create_task(read_to_end(reader)) for reader, _ in silent]
        done, _ = await asyncio.wait(closes, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        assert len(done) == 1  # the fourth from 127.0.0.1
        # From elsewhere: /healthz and registration work.
        assert (await healthz(server, source="127.0.0.2"))["connections"] == 0
        await register(server.url, "erin", local_addr=("127.0.0.3", 0))
        for task in closes:
            task.cancel()
        for _, writer in silent:
            writer.close()


# Slow consumers: bounded in bytes.


async def non_reading_client(port: int, peer: str) -> ClientConnection:
    """A registered client that will not read: small receive buffer, no compression."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    url = f"ws://127.0.0.1:{port}/"
    return await register(url, peer, sock=sock, compression=None, max_queue=1)


async def test_a_client_that_stops_reading_is_dropped_on_queued_bytes_well_before_1024_frames():
    settings = config(outbox_bytes=256 * 1024, rate=10_000, burst=10_000)
    async with SignalingServer(settings) as server:
        alice = await register(server.url, "alice", compression=None)
        carol = await non_reading_client(server.port, "carol")
        assert (await recv(alice))["peer"] == "carol"
        offers = 200  # 12 MB; with only the frame bound (1024) carol would keep them all
        for _ in range(offers):
            await send(alice, {"type": "offer", "to": "carol", "sdp": OFFER_SDP, "session": "s"})
        await expect_quiet(alice)  # never blocked by carol
        code, reason, received = await expect_closed(carol)
        assert (code, reason) == (4008, "slow consumer")
        assert await recv(alice) == {"type": "presence", "event": "left", "peer": "carol"}
        # What carol got: the socket buffers' worth, not 256 KiB's worth of frames more.
        print(f"carol received {received} of {offers} offers before 4008")
        assert received < offers // 2
        # Nothing of carol is kept: no session, so none of its queue.
        gc.collect()
        alive = [obj for obj in gc.get_objects() if isinstance(obj, Session)]
        assert len(alive) == 1, alive  # alice's


MEMORY_SERVER = """
import asyncio, json, sys
from peerlab.signaling.server import ServerConfig, SignalingServer

async def main():
    config = ServerConfig(secret=sys.argv[1], host="127.0.0.1", port=0, rate=1e6, burst=10**6)
    async with SignalingServer(config) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


async def test_non_reading_clients_fed_60_kb_offers_cost_megabytes_not_hundreds():
    """Four registered clients that never read, 400 offers of 60 KB each (24 MB apiece).

    With only the 1024-frame bound the server held all of it (and up to 60 MB per
    client); now each costs at most its 1 MiB outbox plus write buffers, and it is
    freed when the clients go.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", MEMORY_SERVER, SECRET], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 10))
        before = memory_mb(process.pid)["VmRSS"]
        sinks = [await non_reading_client(port, f"sink{i}") for i in range(4)]
        feeder = await register(f"ws://127.0.0.1:{port}/", "feeder", compression=None)
        # The feeder reads its own frames (errors once the sinks are dropped) until a pong.
        handled = asyncio.create_task(_until_pong(feeder))
        for i in range(4 * 400):
            offer = {"type": "offer", "to": f"sink{i % 4}", "sdp": OFFER_SDP, "session": "s"}
            await send(feeder, offer)
        await send(feeder, {"type": "ping"})
        await asyncio.wait_for(handled, 3 * TIMEOUT)  # every offer handled
        peak = memory_mb(process.pid)["VmHWM"]
        for sink in sinks:
            sink.transport.abort()
        await feeder.close()

        print(f"server RSS {before:.1f} MB, peak {peak:.1f} MB")
        assert peak - before < 40, (before, peak)

        async def released() -> bool:
            return memory_mb(process.pid)["VmRSS"] - before < 12

        await eventually(released)
    finally:
        process.kill()
        process.wait()


async def _until_pong(ws: ClientConnection) -> None:
    async for message in ws:
        if json.loads(message) == {"type": "pong"}:
            return


# Logging of the event loop's errors.


async def test_loop_errors_are_logged_once_per_interval_with_a_count_and_no_traceback(caplog):
    now = [1000.0]
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    emfile = OSError(errno.EMFILE, "Too many open files")
    async with SignalingServer(config(log_interval=10), monotonic=lambda: now[0]):
        for _ in range(500):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": emfile}
            )
        now[0] += 10
        loop.call_exception_handler({"message": "socket.accept() failed", "exception": emfile})
        loop.call_exception_handler({"message": "bug", "exception": KeyError("x")})
        loop.call_exception_handler({"message": "bug", "exception": KeyError("y")})
    assert loop.get_exception_handler() is previous  # given back on close
    lines = [r for r in caplog.records if r.name in ("signaling", "asyncio")]
    summary = [(r.getMessage(), r.fields.get("error"), r.fields.get("suppressed")) for r in lines]
    summary = [entry for entry in summary if entry[0] in ("loop_error", "log_suppressed")]
    assert summary == [
        ("loop_error", "EMFILE", 0),
        ("loop_error", "EMFILE", 499),
        ("loop_error", "KeyError", 0),
        ("log_suppressed", None, 1),  # the second KeyError, reported at shutdown
    ]
    loop_lines = [r for r in lines if r.getMessage() == "loop_error"]
    assert loop_lines[0].exc_info is None and loop_lines[1].exc_info is None  # EMFILE
    assert loop_lines[2].exc_info is not None  # unexpected: the traceback is kept
    assert "socket.accept()" in loop_lines[0].fields["message"]


def _cli_server(*options: str, fd_limit: int) -> subprocess.Popen[str]:
    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALING_")}
    args = ["--host", "127.0.0.1", "--port", "0", *options]
    return subprocess.Popen(
        [sys.executable, "-m", "peerlab.signaling", "--secret", SECRET, *args],
        cwd=REPO,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_fds,
    )


async def _started(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    assert process.stderr is not None
    lines = []
    while True:
        line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 10)
        assert line, "the server exited before listening"
        lines.append(json.loads(line))
        if lines[-1]["event"] == "server_started":
            return lines[-1]["port"], lines


async def _stop(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    process.terminate()
    _, stderr = await asyncio.to_thread(process.communicate, timeout=10)
    return [json.loads(line) for line in stderr.splitlines()]


async def test_out_of_descriptors_the_server_logs_a_few_lines_not_a_flood_of_tracebacks():
    """The process's fd limit (64) below what its caps need: accept() fails with EMFILE.

    Before, every failed accept() was logged with a traceback, hundreds a second.
    """
    process = _cli_server("--max-handshakes", "500", "--max-connections", "500", fd_limit=64)
    sockets = []
    try:
        port, first = await _started(process)
        assert any(entry["event"] == "fd_limit_low" for entry in first)
        for _ in range(100):  # the kernel completes them; the server cannot accept them all
            sockets.append(socket.create_connection(("127.0.0.1", port)))
        await asyncio.sleep(2.5)  # let the storm of failed accept() calls run
        for sock in sockets:
            sock.close()
        sockets.clear()
        # Descriptors free again: the server serves as before.
        status, _ = await asyncio.to_thread(_http_get, port, "/healthz")
        assert status == 200
        entries = first + await _stop(process)
    finally:
        for sock in sockets:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    errors = [entry for entry in entries if entry["event"] in ("loop_error", "log_suppressed")]
    print(f"{len(entries)} log lines, of which {errors}")
    assert 1 <= len(errors) <= 4, errors
    assert all(entry.get("error", "EMFILE") == "EMFILE" for entry in errors), errors
    assert not any("exception" in entry for entry in entries)
    assert sum(entry["suppressed"] for entry in errors) > 0  # the storm happened, counted


async def test_within_its_caps_a_server_short_of_descriptors_keeps_serving():
    """The attacker-style test in small: idle connections past the cap, fd limit 256."""
    caps = ["--max-connections", "100", "--max-handshakes", "50"]
    caps += ["--max-connections-per-address", "200", "--register-timeout", "60"]
    process = _cli_server(*caps, fd_limit=256)
    clients: list[ClientConnection] = []
    try:
        port, _ = await _started(process)
        url = f"ws://127.0.0.1:{port}/"
        alice = await register(url, "alice")
        bob = await register(url, "bob")
        assert (await recv(alice))["peer"] == "bob"
        refused = 0
        for _ in range(300):
            try:
                clients.append(await connect(url, open_timeout=TIMEOUT))
            except InvalidStatus as exc:
                assert exc.response.status_code in (503, 429)
                refused += 1
        assert (len(clients), refused) == (98, 202)
        await expect_relay(alice, bob, "bob")
        status, body = await asyncio.to_thread(_http_get, port, "/healthz")
        assert status == 200 and json.loads(body)["connections"] == 100
        entries = await _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not [entry for entry in entries if entry["event"] == "loop_error"]
    assert len([entry for entry in entries if entry["event"] == "connection_refused"]) == 1


# Settings.


def test_every_bound_has_a_flag_and_an_environment_variable(monkeypatch):
    monkeypatch.setenv("PEERLAB_SECRET", SECRET)
    defaults = ServerConfig(secret=SECRET)
    assert parse_config([])[0] == defaults
    monkeypatch.setenv("SIGNALING_REGISTER_TIMEOUT", "2.5")
    monkeypatch.setenv("SIGNALING_MAX_CONNECTIONS", "20")
    monkeypatch.setenv("SIGNALING_OUTBOX_BYTES", "65536")
    settings, _ = parse_config(["--max-connections", "30", "--max-connections-per-address", "5"])
    assert (settings.register_timeout, settings.max_connections) == (2.5, 30)  # flag wins
    assert (settings.outbox_bytes, settings.max_connections_per_address) == (65536, 5)
    flags = {
        "--outbox-size": "outbox_size",
        "--handshake-timeout": "handshake_timeout",
        "--max-handshakes": "max_handshakes",
        "--max-queue": "max_queue",
        "--write-limit": "write_limit",
        "--log-interval": "log_interval",
    }
    for flag, field in flags.items():
        assert getattr(parse_config([flag, "7"])[0], field) == 7


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--max-connections", "0"], {}),
        (["--register-timeout", "-1"], {}),
        ([], {"SIGNALING_MAX_HANDSHAKES": "many"}),
    ],
)
def test_bad_bounds_are_usage_errors(monkeypatch, capsys, argv, env):
    monkeypatch.setenv("PEERLAB_SECRET", SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        parse_config(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err
