"""The agent's control API: HTTP + JSON, for scenario scripts. Documented in docs/control-api.md.

Every request body and response is a JSON object, errors included: `{"error": "..."}`
(plus `code` where the cause has one) with 400 (bad request, or not valid HTTP), 404
(unknown route), 405 (wrong method), 408 (a wait timed out; the text says what was
expected and what was seen), 413 (body too large), 417 (an `Expect` other than
`100-continue`), 500 (a bug), 504 (a connection could not be established in time) or 507
(the peer's outbox is full). What aiohttp answers itself is made JSON by http_errors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError

from peerlab.peer.agent import Agent
from peerlab.peer.connection import ConnectionSetupError
from peerlab.peer.events import matches, message_to_json
from peerlab.peer.http_errors import JsonErrorRunner, error_response
from peerlab.peer.protocol import MessageType, ProtocolError, check_peer_id
from peerlab.peer.reliability import OutboxFull
from peerlab.peer.state import P2PConnectionState

MAX_WAIT = 600.0
MAX_REQUEST_BYTES = 1 << 20
IDEMPOTENCY_HEADER = "Idempotency-Key"
REMEMBERED_SENDS = 4096
"""How many `/send` answers are kept by idempotency key, so a client whose connection
dropped before the answer arrived can ask again without sending the message twice."""

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    pass


def _field(body: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    if name not in body:
        if default is ...:
            raise BadRequest(f"missing field {name!r}")
        return default
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise BadRequest(f"field {name!r} is too large") from None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"field {name!r} must be of type {kind.__name__}")
    return value


def _peer(body: dict[str, Any]) -> str:
    """The remote peer's id: refused unless the signaling server could register it, since
    a message to any other id would wait for it forever."""
    return check_peer_id("peer", _field(body, "peer", str))


def _at_least(body: dict[str, Any], name: str, minimum: int, default: int) -> int:
    value = _field(body, name, int, default)
    if value < minimum:
        raise BadRequest(f"field {name!r} must be at least {minimum}")
    return value


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= 64 and key.isascii() and key.isprintable()):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1 to 64 printable ASCII characters")
    return key


def _timeout(body: dict[str, Any], default: float) -> float:
    timeout = _field(body, "timeout", float, default)
    if not 0 < timeout <= MAX_WAIT:
        raise BadRequest(f"field 'timeout' must be in (0, {MAX_WAIT:g}] seconds")
    return timeout


class ControlServer:
    def __init__(self, agent: Agent, host: str = "127.0.0.1", port: int = 0):
        self.agent = agent
        self.host = host
        self.port = port
        self._sends: OrderedDict[str, dict[str, Any]] = OrderedDict()
        app = web.Application(middlewares=[self._errors], client_max_size=MAX_REQUEST_BYTES)
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/state", self.state),
                web.post("/connect", self.connect),
                web.post("/link-options", self.link_options),
                web.post("/send", self.send),
                web.get("/events", self.events),
                web.get("/events.jsonl", self.events_jsonl),
                # No HEAD: its answer may have no body, and a stream is nothing but body.
                web.get("/events/stream", self.events_stream, allow_head=False),
                web.post("/wait", self.wait),
                web.post("/wait-state", self.wait_state),
                web.get("/history", self.history),
                web.post("/disconnect", self.disconnect),
                web.post("/shutdown", self.shutdown),
            ]
        )
        # Closing cancels what is still running (an endless stream, a long /wait whose
        # client left) instead of waiting aiohttp's 60 s for it.
        self._runner = JsonErrorRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        await self._runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every error is answered in JSON, whatever raised it."""
        try:
            return await handler(request)
        except ProtocolError as exc:
            return error_response(400, str(exc), code=exc.code)
        except (BadRequest, ValueError) as exc:
            return error_response(400, str(exc))
        except TimeoutError as exc:
            return error_response(408, str(exc))
        except ConnectionSetupError as exc:
            return error_response(504, str(exc))
        except OutboxFull as exc:
            return error_response(507, str(exc), code="outbox_full")
        except web.HTTPException as exc:
            # The router's 404 and 405 and the 413 of an oversized body.
            headers = {k: v for k, v in exc.headers.items() if k != hdrs.CONTENT_TYPE}
            error = f"{request.method} {request.path}: {exc.text}"
            return error_response(exc.status, error, headers)
        except ConnectionError:
            raise  # the client went away: there is nobody to answer
        except Exception as exc:
            log.exception("control API: %s %s failed", request.method, request.path)
            self.agent.events.record("error", error=f"control API {request.path}: {exc!r}")
            return error_response(500, f"internal error: {exc!r}")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            raw = await request.read()
        except (web.RequestPayloadError, HttpProcessingError) as exc:
            # A body its chunked framing or Content-Encoding does not decode: the client's
            # error. aiohttp raises its parser's error, or wraps it in a RequestPayloadError.
            cause = exc.__cause__ if isinstance(exc, web.RequestPayloadError) else exc
            error = getattr(cause, "message", exc)
            raise BadRequest(f"request body cannot be decoded: {error}") from None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from None
        except RecursionError:
            raise BadRequest("request body is nested too deeply") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "peer": self.agent.peer_id,
                "registered": self.agent.signaling.connected,
            }
        )

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.agent.state())

    async def connect(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        remote = _peer(body)
        await self.agent.connect(
            remote,
            relay_only=_field(body, "relay_only", bool, None),
            turn=_field(body, "turn", bool, None),
            timeout=_timeout(body, 30.0),
        )
        return web.json_response(self.agent.state()["links"][remote])

    async def link_options(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        remote = _peer(body)
        # Set on both ends before either connects: the answering end applies its own.
        ice = self.agent.manager.set_ice_options(
            remote,
            relay_only=_field(body, "relay_only", bool, None),
            turn=_field(body, "turn", bool, None),
        )
        return web.json_response({"peer": remote, "relay_only": ice.relay_only, "turn": ice.turn})

    async def send(self, request: web.Request) -> web.Response:
        key = _idempotency_key(request)
        body = await self._body(request)
        # No await from here on: a retry with the same key finds this answer or none.
        if key is not None and key in self._sends:
            return web.json_response(self._sends[key])
        remote = _peer(body)
        type_name = _field(body, "type", str)
        try:
            message_type = MessageType(type_name)
        except ValueError:
            raise BadRequest(f"unknown message type {type_name!r}") from None
        fields = {k: v for k, v in body.items() if k not in ("peer", "type")}
        try:
            message = self.agent.send(remote, message_type, **fields)
        except TypeError as exc:
            raise BadRequest(f"bad fields for {message_type.value}: {exc}") from None
        if message is None:
            answer = {"sent": False, "reason": "throttled or not connected"}
        else:
            answer = {"sent": True, "message": message_to_json(message)}
        if key is not None:
            self._sends[key] = answer
            if len(self._sends) > REMEMBERED_SENDS:
                self._sends.popitem(last=False)
        return web.json_response(answer)

    async def events(self, request: web.Request) -> web.Response:
        since, match = self._query(request)
        events = self.agent.events.since(since, match)
        return web.json_response({"events": events, "last": self.agent.events.last_seq})

    async def events_jsonl(self, request: web.Request) -> web.Response:
        since, match = self._query(request)
        lines = "".join(
            json.dumps(e, ensure_ascii=False) + "\n" for e in self.agent.events.since(since, match)
        )
        return web.Response(text=lines, content_type="application/x-ndjson")

    async def events_stream(self, request: web.Request) -> web.StreamResponse:
        since, match = self._query(request)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        # The stream never ends on its own: the client closing it is its normal end, which
        # aiohttp reports (on the next write) as a reset connection.
        with contextlib.suppress(ConnectionResetError):
            async with contextlib.aclosing(self.agent.events.follow(since)) as events:
                async for event in events:
                    if matches(event, match):
                        line = json.dumps(event, ensure_ascii=False) + "\n"
                        await response.write(line.encode())
        return response

    async def wait(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        match = _field(body, "match", dict, {})
        kind = _field(body, "kind", str, None)
        if kind is not None:
            match = {**match, "kind": kind}
        count = _at_least(body, "count", 1, 1)
        since = _at_least(body, "since", 0, 0)
        events = await self.agent.events.wait_for(
            match, count=count, since=since, timeout=_timeout(body, 10.0)
        )
        return web.json_response({"events": events})

    async def wait_state(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        remote = _peer(body)
        state_name = _field(body, "state", str)
        try:
            wanted = P2PConnectionState(state_name)
        except ValueError:
            raise BadRequest(f"unknown state {state_name!r}") from None
        timeout = _timeout(body, 10.0)
        try:
            async with asyncio.timeout(timeout):
                while self.agent.link_state(remote) is not wanted:
                    await self.agent.events.wait_for(
                        {"kind": "state", "peer": remote},
                        since=self.agent.events.last_seq,
                        timeout=MAX_WAIT,
                    )
        except TimeoutError:
            raise TimeoutError(
                f"link to {remote} not {wanted.value} after {timeout:g}s; "
                f"it is {self.agent.link_state(remote).value}"
            ) from None
        return web.json_response({"peer": remote, "state": wanted.value})

    async def history(self, request: web.Request) -> web.Response:
        remote = request.query.get("peer")
        conversation = request.query.get("conversation")
        if not remote or not conversation:
            raise BadRequest("query parameters 'peer' and 'conversation' are required")
        return web.json_response(self.agent.history(remote, conversation))

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        remote = _peer(body)
        await self.agent.manager.disconnect(remote)
        return web.json_response({"peer": remote, "state": self.agent.link_state(remote).value})

    async def shutdown(self, request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_later(
            0.05, lambda: asyncio.ensure_future(self.agent.stop())
        )
        return web.json_response({"status": "stopping"})

    def _query(self, request: web.Request) -> tuple[int, dict[str, str]]:
        since = request.query.get("since", "0")
        if not since.isdecimal():
            raise BadRequest("query parameter 'since' must be a non-negative integer")
        match = {k: v for k, v in request.query.items() if k != "since"}
        return int(since), match
