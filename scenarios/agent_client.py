"""`AgentClient`: drives one running agent through its control API (docs/control-api.md).

Every call has a timeout, and every failure raises `AgentError` naming the agent, the
request and what the agent answered, so a scenario's failure message says what was
expected and what was seen. A request whose answer was lost (the connection dropped,
the agent was too busy to answer in time) is asked again when that is safe, so a
control call is not what decides a scenario: reads and waits always, `/send` by its
idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


def _ice(relay_only: bool | None, turn: bool | None) -> dict[str, bool]:
    options = {"relay_only": relay_only, "turn": turn}
    return {k: v for k, v in options.items() if v is not None}


class AgentError(AssertionError):
    """A control API request failed or a wait timed out."""


class _Refused(AgentError):
    """Nothing listens where the control API was (the request was not sent)."""


class _Unanswered(AgentError):
    """The request may have arrived, but its answer did not (dropped, or too late)."""


ATTEMPTS = 3
"""How often a request whose answer was lost is made, in all."""

_SAFE_TO_REPEAT = {("POST", "/wait"), ("POST", "/wait-state")}


class AgentClient:
    def __init__(
        self,
        name: str,
        base_url: str,
        session: aiohttp.ClientSession,
        request_timeout: float = 10.0,
        locate: Callable[[], Awaitable[str]] | None = None,
    ):
        """`locate` finds the control API's URL again: Docker moves a container's
        published port when the container changes networks."""
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._request_timeout = request_timeout
        self._locate = locate

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/healthz")

    async def state(self) -> dict[str, Any]:
        return await self._call("GET", "/state")

    async def connect(
        self,
        peer: str,
        *,
        relay_only: bool | None = None,
        turn: bool | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"peer": peer, "timeout": timeout, **_ice(relay_only, turn)}
        return await self._call("POST", "/connect", body, wait=timeout)

    async def link_options(
        self, peer: str, *, relay_only: bool | None = None, turn: bool | None = None
    ) -> dict[str, Any]:
        return await self._call("POST", "/link-options", {"peer": peer, **_ice(relay_only, turn)})

    async def send(self, peer: str, type: str, **fields: Any) -> dict[str, Any] | None:
        """Send one message; returns it in wire form, or None when typing was held back."""
        # The key makes asking again safe: the agent answers a repeated key from memory.
        key = uuid.uuid4().hex
        body = {"peer": peer, "type": type, **fields}
        result = await self._call("POST", "/send", body, idempotency_key=key)
        return result["message"] if result["sent"] else None

    async def events(self, since: int = 0, **match: str) -> list[dict[str, Any]]:
        return (await self._call("GET", "/events", params={"since": since, **match}))["events"]

    async def wait(
        self, kind: str, *, count: int = 1, since: int = 0, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait for `count` events of `kind` matching `match` (dotted keys: `message.id`)."""
        body = {"kind": kind, "match": match, "count": count, "since": since, "timeout": timeout}
        return (await self._call("POST", "/wait", body, wait=timeout))["events"]

    async def wait_state(self, peer: str, state: str, timeout: float = 10.0) -> None:
        await self._call(
            "POST", "/wait-state", {"peer": peer, "state": state, "timeout": timeout}, wait=timeout
        )

    async def history(self, peer: str, conversation: str) -> dict[str, Any]:
        return await self._call(
            "GET", "/history", params={"peer": peer, "conversation": conversation}
        )

    async def disconnect(self, peer: str) -> dict[str, Any]:
        return await self._call("POST", "/disconnect", {"peer": peer})

    async def shutdown(self) -> None:
        await self._call("POST", "/shutdown", {})

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        wait: float = 0.0,
        idempotency_key: str | None = None,
    ) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        repeatable = (
            method == "GET" or (method, path) in _SAFE_TO_REPEAT or idempotency_key is not None
        )
        attempt = 1
        while True:
            try:
                return await self._request(method, path, body, params, wait, headers)
            except _Refused:
                # Refused before anything was sent: safe to send again, where the API is
                # now (Docker moves a published port when a container changes networks).
                if self._locate is None or attempt == ATTEMPTS:
                    raise
            except _Unanswered:
                if not repeatable or attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(0.5 * attempt)
            attempt += 1
            if self._locate is not None:
                self.base_url = (await self._locate()).rstrip("/")

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        wait: float,
        headers: dict[str, str],
    ) -> Any:
        timeout = aiohttp.ClientTimeout(total=self._request_timeout + wait)
        what = f"{self.name}: {method} {path}"
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=body,
                headers=headers,
                timeout=timeout,
                params={k: str(v) for k, v in (params or {}).items()},
            ) as response:
                text = await response.text()
                try:
                    payload = json.loads(text)
                except ValueError:
                    raise AgentError(
                        f"{what} → {response.status}: not JSON: {text[:300]!r}"
                    ) from None
                if response.status != 200:
                    detail = payload.get("error", payload) if isinstance(payload, dict) else payload
                    raise AgentError(f"{what} → {response.status}: {detail}")
                return payload
        except aiohttp.ClientConnectorError as exc:
            raise _Refused(f"{what} failed: {exc!r}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, TimeoutError) as exc:
            raise _Unanswered(f"{what} failed: {exc!r}") from None
        except aiohttp.ClientError as exc:
            raise AgentError(f"{what} failed: {exc!r}") from None
